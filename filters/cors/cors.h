// The CORS filter (envoy.filters.http.cors). Its own config (Cors) is empty:
// the policy is a CorsPolicy in typed_per_filter_config under the filter's
// name, on the route, its virtual host or its route configuration, merged
// field by field with the most specific level first, as Envoy does. A
// preflight (OPTIONS with Origin and Access-Control-Request-Method) is
// answered by skiff (200, details cors_response); any other request with an
// allowed Origin goes on, and its response gets the Access-Control-Allow-*
// headers.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "filters/common/fractional_percent.h"
#include "filters/filter.h"
#include "filters/registry.h"
#include "proxy/router/header_matcher.h"
#include "proxy/router/route_table.h"

namespace skiff::filters {

inline constexpr const char* kCorsTypeUrl =
    "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors";
inline constexpr const char* kCorsPolicyTypeUrl =
    "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy";

// One CorsPolicy, compiled. A field that is not set (empty, or an unset
// wrapper) leaves the decision to a less specific level.
struct CorsPolicySettings : router::PerFilterConfig {
  std::vector<router::StringMatch> allow_origins;  // allow_origin_string_match
  std::string allow_methods;
  std::string allow_headers;
  std::string expose_headers;
  std::string max_age;
  std::optional<bool> allow_credentials;
  std::optional<bool> allow_private_network_access;
  std::optional<bool> forward_not_matching_preflights;
  // filter_enabled (unset: enabled) and shadow_enabled (unset: off), each a
  // default_value (skiff has no runtime). Only the most specific level's
  // count, as in Envoy.
  std::optional<FractionalPercent> filter_enabled;
  std::optional<FractionalPercent> shadow_enabled;
};

// The registry's creators: kCorsTypeUrl for http_filters, kCorsPolicyTypeUrl
// (a per-route type of the filter's own) for typed_per_filter_config.
Result<std::shared_ptr<const HttpFilterFactory>> createCorsFilterFactory(
    const google::protobuf::Any& typed_config, const FilterFactoryContext& context);
Result<std::shared_ptr<const router::PerFilterConfig>> createCorsPerRouteConfig(
    const google::protobuf::Any& config, const std::string& path);

}  // namespace skiff::filters
