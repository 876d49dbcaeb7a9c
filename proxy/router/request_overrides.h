// The x-envoy-* request headers with which a trusted (internal) caller steers
// Envoy's router for one request: its timeouts and its retries (the router's
// "HTTP headers consumed from downstreams"). The connection manager strips
// them from any request that is not internal, and marks a request that kept
// one (HeaderMap::hasRouterOverrides); the router then takes them here, which
// also removes them, as Envoy's router does, so that they never reach the
// upstream. A value that is not what the header wants is ignored, as Envoy
// ignores it.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/http/header_map.h"

namespace skiff::router {

struct RequestOverrides {
  // x-envoy-upstream-rq-timeout-ms: replaces the route's timeout (0: none).
  std::optional<std::chrono::milliseconds> timeout;
  // x-envoy-upstream-rq-per-try-timeout-ms: replaces the retry policy's
  // per_try_timeout, with or without a policy.
  std::optional<std::chrono::milliseconds> per_try_timeout;
  // x-envoy-upstream-rq-timeout-alt-response, whatever its value: a timeout
  // is answered 204 with no body instead of 504.
  bool timeout_alt_response = false;
  // retry_on bits from x-envoy-retry-on (its HTTP conditions) and
  // x-envoy-retry-grpc-on (its gRPC ones), added to the route's policy.
  uint32_t retry_on = 0;
  // x-envoy-upstream-stream-duration-ms: each attempt's upstream stream may
  // last this long from its connection on (0: no bound), as Envoy's router
  // takes it in place of the cluster's max_stream_duration.
  std::optional<std::chrono::milliseconds> stream_duration;
  // Whether either retry-on header was present, even with no condition skiff
  // knows: Envoy then keeps retry state for the request, policy or not.
  bool retry_headers = false;
  // x-envoy-max-retries: replaces num_retries.
  std::optional<uint32_t> max_retries;
  // x-envoy-retriable-status-codes: added to the policy's
  // retriable_status_codes (they matter under retriable-status-codes).
  std::vector<uint32_t> retriable_status_codes;
  // x-envoy-retriable-header-names: a comma-separated list of names (lower
  // case here); under retriable-headers a response with any of them is
  // retried, as with a retriable_headers matcher of that name alone.
  std::vector<std::string> retriable_header_names;

  // Whether the request needs the router's retry state even without a route
  // retry policy: to retry, for its per-try timeout, or for the bound on each
  // attempt's stream (the state holds the per-attempt timers).
  bool needsRetryState() const {
    return retry_headers || per_try_timeout.has_value() ||
           (stream_duration && stream_duration->count() != 0);
  }
};

// Reads the override headers of a request and removes them (and one skiff
// consumes without acting on: x-envoy-hedge-on-per-try-timeout, since
// hedging is not implemented).
RequestOverrides takeRequestOverrides(HeaderMap& headers);

// Envoy's reading of a decimal header value (absl::SimpleAtoi): optional
// surrounding whitespace and '+', then digits that fit in 64 bits. nullopt
// otherwise.
std::optional<uint64_t> parseHeaderUint(std::string_view text);

}  // namespace skiff::router
