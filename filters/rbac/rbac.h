// The RBAC filter (envoy.filters.http.rbac): allows or denies each request by
// Envoy's RBAC policies (rbac_engine.h) over its headers, its path, the
// downstream connection's addresses, SNI and TLS peer certificate. `rules`
// enforce: a denied request is answered 403 "RBAC: access denied", details
// rbac_access_denied_matched_policy[<policy>|none] (no response flag, as in
// Envoy). `shadow_rules`
// only count. A route (virtual host, route configuration) may carry an
// RBACPerRoute under the filter's name: its `rbac` replaces the filter's
// rules for that route, and one without `rbac` turns the filter off there.
// Stats: http.<stat_prefix>.rbac.[<rules_stat_prefix>]{allowed,denied} and
// http.<stat_prefix>.rbac.[<shadow_rules_stat_prefix>]{shadow_allowed,
// shadow_denied}; a LOG action counts its requests as allowed (skiff sets no
// dynamic metadata).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "filters/filter.h"
#include "filters/rbac/rbac_engine.h"
#include "filters/registry.h"
#include "proxy/router/route_table.h"

namespace envoy::extensions::filters::http::rbac::v3 {
class RBAC;
}

namespace skiff::filters {

inline constexpr const char* kRbacTypeUrl =
    "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
inline constexpr const char* kRbacPerRouteTypeUrl =
    "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute";

// The filter's rules, or a route's. No engine: nothing enforced (or
// shadowed).
struct RbacRules : router::PerFilterConfig {
  std::optional<rbac::RbacEngine> engine;
  std::optional<rbac::RbacEngine> shadow;
  uint8_t needs = 0;  // Both engines' RbacEngine::needs.
};

// An RBAC message's rules; path names it in errors.
Result<std::shared_ptr<const RbacRules>> compileRbacRules(
    const envoy::extensions::filters::http::rbac::v3::RBAC& proto, const std::string& path);

// A counter's name as Envoy joins a stat prefix and a name: with a '.'
// unless the prefix ends with one ("rbac." + "allowed", "rbac.p_" + ".allowed").
std::string rbacStatName(const std::string& prefix, const char* name);

Result<std::shared_ptr<const HttpFilterFactory>> createRbacFilterFactory(
    const google::protobuf::Any& typed_config, const FilterFactoryContext& context);
// For kRbacPerRouteTypeUrl (RBACPerRoute).
Result<std::shared_ptr<const router::PerFilterConfig>> createRbacPerRouteConfig(
    const google::protobuf::Any& config, const std::string& path);

}  // namespace skiff::filters
