// The local rate limit filter (envoy.filters.http.local_ratelimit): a token
// bucket per filter configuration, shared by every worker (token_bucket.h),
// takes one token per request; a request that finds none is answered with
// `status` (429) and `local_rate_limited`, flag RL, when the filter is
// enforced, or passes with request_headers_to_add_when_not_enforced when it
// is not. A route (virtual host, route configuration) may carry its own
// LocalRateLimit in typed_per_filter_config under the filter's name: it then
// replaces the filter's, with its own bucket and stats.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "filters/common/fractional_percent.h"
#include "filters/filter.h"
#include "filters/local_ratelimit/token_bucket.h"
#include "filters/per_worker.h"
#include "filters/registry.h"
#include "proxy/router/route_table.h"
#include "proxy/stats/stats.h"

namespace envoy::extensions::filters::http::local_ratelimit::v3 {
class LocalRateLimit;
}

namespace skiff::filters {

inline constexpr const char* kLocalRateLimitTypeUrl =
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";

// Envoy's <stat_prefix>.http_local_rate_limit.* counters (named by the
// filter's own stat_prefix, not the connection manager's), one block per
// config per worker.
struct LocalRateLimitStats {
  LocalRateLimitStats(stats::Store& s, const std::string& p);
  stats::Counter& enabled;
  stats::Counter& enforced;
  stats::Counter& rate_limited;
  stats::Counter& ok;
};

// One LocalRateLimit, compiled. Shared by every worker; only the bucket
// changes, atomically.
struct LocalRateLimitSettings : router::PerFilterConfig {
  std::string stats_prefix;  // "<stat_prefix>.http_local_rate_limit."
  uint32_t status = 429;
  // Unset (Envoy): the filter is not enabled, or not enforced.
  std::optional<FractionalPercent> filter_enabled;
  std::optional<FractionalPercent> filter_enforced;
  router::HeaderEdits response_headers_to_add;
  router::HeaderEdits request_headers_to_add_when_not_enforced;
  bool x_ratelimit_headers = false;  // enable_x_ratelimit_headers: DRAFT_VERSION_03
  // rate_limited_as_resource_exhausted: a gRPC request is refused with
  // RESOURCE_EXHAUSTED (8) instead of the status's mapping (429: UNAVAILABLE).
  bool rate_limited_as_resource_exhausted = false;
  // token_bucket; null: every request passes (a top-level config may leave
  // the limits to routes).
  std::unique_ptr<AtomicTokenBucket> bucket;
  // Per worker, made when the worker installs the config (the filter's, or
  // a route table holding this one).
  PerWorker<LocalRateLimitStats> worker_stats;

  void installOn(Worker& worker) const override { statsOn(worker); }
  LocalRateLimitStats& statsOn(Worker& worker) const;
};

// per_route: a route's config must have a token_bucket (as in Envoy).
Result<std::shared_ptr<const LocalRateLimitSettings>> compileLocalRateLimit(
    const envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit& proto,
    const std::string& path, bool per_route);

Result<std::shared_ptr<const HttpFilterFactory>> createLocalRateLimitFilterFactory(
    const google::protobuf::Any& typed_config, const FilterFactoryContext& context);
Result<std::shared_ptr<const router::PerFilterConfig>> createLocalRateLimitPerRouteConfig(
    const google::protobuf::Any& config, const std::string& path);

}  // namespace skiff::filters
