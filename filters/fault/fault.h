// The fault injection filter (envoy.filters.http.fault): delays and aborts
// requests, for a fraction of them, optionally only those bound to one
// cluster, from listed downstream nodes, or matching headers. The settings
// come from the filter's HTTPFault, or whole from a route's (virtual host's,
// route configuration's) typed_per_filter_config HTTPFault under the
// filter's name.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "filters/common/fractional_percent.h"
#include "filters/filter.h"
#include "filters/registry.h"
#include "proxy/router/header_matcher.h"
#include "proxy/router/route_table.h"

namespace envoy::extensions::filters::http::fault::v3 {
class HTTPFault;
}

namespace skiff::filters {

inline constexpr const char* kFaultTypeUrl =
    "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";

// One HTTPFault, compiled. Immutable; shared by every worker.
struct FaultSettings : router::PerFilterConfig {
  enum class AbortKind : uint8_t { kNone, kHttp, kGrpc, kHeader };
  enum class DelayKind : uint8_t { kNone, kFixed, kHeader };

  AbortKind abort = AbortKind::kNone;
  uint32_t abort_http_status = 0;  // kHttp
  uint32_t abort_grpc_status = 0;  // kGrpc
  FractionalPercent abort_percentage;
  DelayKind delay = DelayKind::kNone;
  std::chrono::milliseconds fixed_delay{0};  // kFixed
  FractionalPercent delay_percentage;
  std::string upstream_cluster;               // Empty: any.
  std::vector<router::HeaderMatch> headers;   // All must match.
  std::vector<std::string> downstream_nodes;  // Empty: any.
  std::optional<uint64_t> max_active_faults;  // None: unlimited.
  bool disable_downstream_cluster_stats = false;

  // What to inject for one request, by its headers and two random numbers
  // (one per decision, as Envoy draws one per runtime check): the delay, if
  // any (kHeader: x-envoy-fault-delay-request, in ms, under
  // x-envoy-fault-delay-request-percentage), and the abort.
  std::optional<std::chrono::milliseconds> delayFor(const HeaderMap& request,
                                                    uint64_t random) const;
  struct Abort {
    uint32_t http_status = 0;  // 200 when grpc_status is set.
    int grpc_status = -1;      // -1: mapped from http_status for gRPC requests.
  };
  // kHeader: x-envoy-fault-abort-request (an HTTP status in [200, 600)), else
  // x-envoy-fault-abort-grpc-request, under
  // x-envoy-fault-abort-request-percentage.
  std::optional<Abort> abortFor(const HeaderMap& request, uint64_t random) const;
};

// Compiles an HTTPFault; path names it in errors. Fields skiff lacks
// (response_rate_limit, filter_metadata) are refused before this by the
// field check; the *_runtime keys are accepted and never read (skiff has no
// runtime).
Result<std::shared_ptr<const FaultSettings>> compileFaultSettings(
    const envoy::extensions::filters::http::fault::v3::HTTPFault& proto, const std::string& path);

// The registry's creators for kFaultTypeUrl.
Result<std::shared_ptr<const HttpFilterFactory>> createFaultFilterFactory(
    const google::protobuf::Any& typed_config, const FilterFactoryContext& context);
Result<std::shared_ptr<const router::PerFilterConfig>> createFaultPerRouteConfig(
    const google::protobuf::Any& config, const std::string& path);

}  // namespace skiff::filters
