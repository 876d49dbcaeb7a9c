// Envoy's route retry policy (config.route.v3.RetryPolicy) as the router
// filter uses it: which upstream outcomes are retriable (`retry_on`), how many
// retries, and the jittered exponential back-off between attempts. The route
// table compiles one per route or virtual host; the decisions here are pure
// functions of the policy and one attempt's outcome, so they are tested
// without sockets (test/unit/router/retry_policy_test.cc).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/common/status.h"
#include "proxy/http/header_map.h"
#include "proxy/router/header_matcher.h"

namespace envoy::config::route::v3 {
class RetryPolicy;
}

namespace skiff::router {

// The retry_on conditions skiff implements, as bits (Envoy's names in the
// comments: the values of retry_on and of x-envoy-retry-on /
// x-envoy-retry-grpc-on).
namespace retry_on {
inline constexpr uint32_t k5xx = 1u << 0;                     // 5xx
inline constexpr uint32_t kGatewayError = 1u << 1;            // gateway-error
inline constexpr uint32_t kConnectFailure = 1u << 2;          // connect-failure
inline constexpr uint32_t kRetriable4xx = 1u << 3;            // retriable-4xx
inline constexpr uint32_t kRefusedStream = 1u << 4;           // refused-stream
inline constexpr uint32_t kRetriableStatusCodes = 1u << 5;    // retriable-status-codes
inline constexpr uint32_t kReset = 1u << 6;                   // reset
inline constexpr uint32_t kEnvoyRateLimited = 1u << 7;        // envoy-ratelimited
inline constexpr uint32_t kGrpcCancelled = 1u << 8;           // cancelled
inline constexpr uint32_t kGrpcDeadlineExceeded = 1u << 9;    // deadline-exceeded
inline constexpr uint32_t kGrpcInternal = 1u << 10;           // internal
inline constexpr uint32_t kGrpcResourceExhausted = 1u << 11;  // resource-exhausted
inline constexpr uint32_t kGrpcUnavailable = 1u << 12;        // unavailable
inline constexpr uint32_t kRetriableHeaders = 1u << 13;       // retriable-headers
inline constexpr uint32_t kGrpc = kGrpcCancelled | kGrpcDeadlineExceeded | kGrpcInternal |
                                  kGrpcResourceExhausted | kGrpcUnavailable;
}  // namespace retry_on

// Parses a comma-separated retry_on list into retry_on bits. Envoy ignores
// names it does not know; so does this. A name Envoy knows that skiff does
// not implement (reset-before-request, http3-post-connect-failure) is returned in unsupported (the
// first one) so that a config naming it is refused rather than half-honoured.
uint32_t parseRetryOn(std::string_view list, std::string* unsupported = nullptr);

// How an attempt failed without a response: Envoy's stream reset reasons as
// the retry decision groups them.
enum class AttemptFailure {
  kConnectFailure,  // The pool could not connect (failure or connect timeout).
  kRefusedStream,   // HTTP/2 REFUSED_STREAM (or a stream above a GOAWAY's last id).
  kReset,           // Any other reset or disconnect before the response.
  kPerTryTimeout,   // per_try_timeout fired before the response started.
};

struct RetryPolicy {
  uint32_t retry_on = 0;     // retry_on bits
  uint32_t num_retries = 1;  // Envoy's default when num_retries is unset.
  std::vector<uint32_t> retriable_status_codes;
  // retriable_headers: under retriable-headers, a response that one of them
  // matches is retried.
  std::vector<HeaderMatch> retriable_headers;
  // retriable_request_headers: when there are any, a request that none of
  // them matches is never retried (Envoy clears its retry_on).
  std::vector<HeaderMatch> retriable_request_headers;
  // per_try_timeout (zero: none). Bounded by the route timeout, which still
  // spans every attempt.
  std::chrono::milliseconds per_try_timeout{0};
  // per_try_idle_timeout (zero: none): an attempt whose upstream stream
  // brings no response byte for this long is reset, from its connection (or
  // the request's end, if later) until its response is complete.
  std::chrono::milliseconds per_try_idle_timeout{0};
  // retry_back_off: base_interval (Envoy: 25 ms) and max_interval (10 x base).
  uint64_t base_interval_ms = 25;
  uint64_t max_interval_ms = 250;
  // retry_host_predicate has envoy.retry_host_predicates.previous_hosts: an
  // attempt avoids the hosts already tried when it can.
  bool previous_hosts = false;
  // host_selection_retry_max_attempts: how many more picks a host selection
  // may make to avoid a previous host (Envoy: 1 when unset).
  uint32_t host_selection_max_attempts = 1;
  // The virtual host's include_request_attempt_count and
  // include_attempt_count_in_response: x-envoy-attempt-count on each
  // attempt's request and on the response. A virtual host that sets one
  // without any retry policy gets a policy with retry_on 0 (no retries).
  bool attempt_count_in_request = false;
  bool attempt_count_in_response = false;

  // Whether a response is retriable under retry_on bits `on` (the policy's,
  // perhaps widened by request headers), by :status, x-envoy-ratelimited,
  // (for the gRPC conditions) grpc-status and (for retriable-headers) the
  // response's headers. codes: retriable status codes; headers: retriable
  // header matchers.
  static bool retriableResponse(uint32_t on, const std::vector<uint32_t>& codes,
                                const std::vector<HeaderMatch>& headers, const HeaderMap& response);
  // Whether a request may be retried at all: retriable_request_headers is
  // empty, or one of them matches it.
  bool retriableRequest(const HeaderMap& request) const;
  // Whether an attempt that failed with no response is retriable under `on`.
  static bool retriableFailure(uint32_t on, AttemptFailure failure);
  // Envoy's fully jittered exponential back-off before retry number n (1 for
  // the first retry): a random time below (2^n - 1) x base, capped at the
  // maximum.
  uint64_t backOffMs(uint32_t n, uint64_t random) const;

  // Compiles a RetryPolicy message; where names it in errors.
  static Result<RetryPolicy> compile(const envoy::config::route::v3::RetryPolicy& p,
                                     const std::string& where);
};

}  // namespace skiff::router
