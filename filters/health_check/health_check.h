// The health check filter (envoy.filters.http.health_check): a request whose
// headers match the filter's `headers` is a health check. Without
// pass_through_mode skiff answers it: 200, or 503 while the server fails
// health checks (admin POST /healthcheck/fail) or while a cluster of
// cluster_min_healthy_percentages has too few healthy hosts on this worker.
// In pass-through mode it goes upstream, unless the server fails health
// checks (503). A health check's response says which cluster answered
// (x-envoy-upstream-healthchecked-cluster: the bootstrap's node.cluster);
// every other response carries x-envoy-immediate-health-check-fail: true
// while the server fails health checks.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "filters/filter.h"
#include "filters/registry.h"
#include "proxy/access_log/response_code_details.h"
#include "proxy/router/header_matcher.h"

namespace envoy::extensions::filters::http::health_check::v3 {
class HealthCheck;
}

namespace skiff::filters {

inline constexpr const char* kHealthCheckTypeUrl =
    "type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck";

// One HealthCheck, compiled. Immutable; shared by every worker.
struct HealthCheckSettings {
  bool pass_through = false;
  std::vector<router::HeaderMatch> headers;  // All must match (none: every request).
  // cluster_min_healthy_percentages, truncated to whole percents as Envoy
  // does, sorted by name: the first cluster short of its percentage names
  // the answer's details.
  std::vector<std::pair<std::string, uint64_t>> cluster_min_healthy;
};

// Compiles a HealthCheck; path names it in errors. cache_time is refused by
// the field check before this.
Result<HealthCheckSettings> compileHealthCheckSettings(
    const envoy::extensions::filters::http::health_check::v3::HealthCheck& proto,
    const std::string& path);

// A cluster's hosts as one worker sees them.
struct ClusterMembership {
  uint64_t total = 0;
  uint64_t healthy = 0;  // Not ejected (skiff has no degraded hosts).
};

// Envoy's judgement of cluster_min_healthy_percentages: the details of the
// answer (health_check_ok when no cluster is listed; a failure's when one
// is missing, empty while more than 0% is wanted, or short of its
// percentage). membership(name) gives a cluster's hosts, or nullopt when
// there is no such cluster.
template <class Membership>
std::string_view judgeClusters(const HealthCheckSettings& settings, Membership&& membership) {
  std::string_view details = access_log::details::kHealthCheckOk;
  for (const auto& [name, min_percent] : settings.cluster_min_healthy) {
    details = access_log::details::kHealthCheckClusterHealthy;
    const std::optional<ClusterMembership> m = membership(name);
    if (!m) return access_log::details::kHealthCheckNoCluster;
    if (m->total == 0) {
      if (min_percent == 0) continue;
      return access_log::details::kHealthCheckClusterEmpty;
    }
    if (100 * m->healthy < m->total * min_percent) {
      return access_log::details::kHealthCheckClusterUnhealthy;
    }
  }
  return details;
}

// The registry's creator for kHealthCheckTypeUrl.
Result<std::shared_ptr<const HttpFilterFactory>> createHealthCheckFilterFactory(
    const google::protobuf::Any& typed_config, const FilterFactoryContext& context);

}  // namespace skiff::filters
