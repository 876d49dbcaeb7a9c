#include "proxy/router/retry_policy.h"

#include <algorithm>
#include <charconv>

#include "envoy/config/route/v3/route_components.pb.h"
#include "proxy/router/duration.h"

namespace skiff::router {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

struct Condition {
  std::string_view name;
  uint32_t bit;  // 0: Envoy knows it, skiff does not implement it.
};

constexpr Condition kConditions[] = {
    {"5xx", retry_on::k5xx},
    {"gateway-error", retry_on::kGatewayError},
    {"connect-failure", retry_on::kConnectFailure},
    {"retriable-4xx", retry_on::kRetriable4xx},
    {"refused-stream", retry_on::kRefusedStream},
    {"retriable-status-codes", retry_on::kRetriableStatusCodes},
    {"reset", retry_on::kReset},
    {"envoy-ratelimited", retry_on::kEnvoyRateLimited},
    {"cancelled", retry_on::kGrpcCancelled},
    {"deadline-exceeded", retry_on::kGrpcDeadlineExceeded},
    {"internal", retry_on::kGrpcInternal},
    {"resource-exhausted", retry_on::kGrpcResourceExhausted},
    {"unavailable", retry_on::kGrpcUnavailable},
    {"retriable-headers", retry_on::kRetriableHeaders},
    {"reset-before-request", 0},
    {"http3-post-connect-failure", 0},
};

// gRPC status codes (grpc/status.h) that retry_on names.
constexpr int kGrpcCancelledCode = 1;
constexpr int kGrpcDeadlineExceededCode = 4;
constexpr int kGrpcResourceExhaustedCode = 8;
constexpr int kGrpcInternalCode = 13;
constexpr int kGrpcUnavailableCode = 14;

}  // namespace

uint32_t parseRetryOn(std::string_view list, std::string* unsupported) {
  uint32_t bits = 0;
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view name = trim(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    for (const Condition& c : kConditions) {
      if (c.name != name) continue;
      if (c.bit == 0 && unsupported && unsupported->empty()) *unsupported = std::string(name);
      bits |= c.bit;
      break;
    }
  }
  return bits;
}

bool RetryPolicy::retriableResponse(uint32_t on, const std::vector<uint32_t>& codes,
                                    const std::vector<HeaderMatch>& headers,
                                    const HeaderMap& response) {
  // A response from an upstream Envoy's rate limiter is retried only under
  // envoy-ratelimited, whatever its status.
  if (response.has("x-envoy-ratelimited")) return (on & retry_on::kEnvoyRateLimited) != 0;
  const int status = response.status();
  if ((on & retry_on::k5xx) && status >= 500 && status < 600) return true;
  if ((on & retry_on::kGatewayError) && status >= 502 && status <= 504) return true;
  if ((on & retry_on::kRetriable4xx) && status == 409) return true;
  if ((on & retry_on::kRetriableStatusCodes) &&
      std::find(codes.begin(), codes.end(), static_cast<uint32_t>(status)) != codes.end()) {
    return true;
  }
  if (on & retry_on::kRetriableHeaders) {
    for (const HeaderMatch& m : headers) {
      if (m.matches(response)) return true;
    }
  }
  if (on & retry_on::kGrpc) {
    // Only a grpc-status in the response headers (a trailers-only response):
    // once a body started, the response is on its way downstream.
    std::optional<std::string_view> text = response.get(WellKnownHeader::kGrpcStatus);
    int code = -1;
    if (text &&
        std::from_chars(text->data(), text->data() + text->size(), code).ec == std::errc()) {
      switch (code) {
        case kGrpcCancelledCode:
          return (on & retry_on::kGrpcCancelled) != 0;
        case kGrpcDeadlineExceededCode:
          return (on & retry_on::kGrpcDeadlineExceeded) != 0;
        case kGrpcResourceExhaustedCode:
          return (on & retry_on::kGrpcResourceExhausted) != 0;
        case kGrpcInternalCode:
          return (on & retry_on::kGrpcInternal) != 0;
        case kGrpcUnavailableCode:
          return (on & retry_on::kGrpcUnavailable) != 0;
        default:
          break;
      }
    }
  }
  return false;
}

bool RetryPolicy::retriableRequest(const HeaderMap& request) const {
  if (retriable_request_headers.empty()) return true;
  for (const HeaderMatch& m : retriable_request_headers) {
    if (m.matches(request)) return true;
  }
  return false;
}

bool RetryPolicy::retriableFailure(uint32_t on, AttemptFailure failure) {
  // Envoy: a connect failure under connect-failure; then any reset (a connect
  // failure and a per-try timeout included) under reset, 5xx and
  // gateway-error, since it would become a 503 or 504; a refused stream
  // under refused-stream.
  if (failure == AttemptFailure::kConnectFailure && (on & retry_on::kConnectFailure)) return true;
  if (on & (retry_on::kReset | retry_on::k5xx | retry_on::kGatewayError)) return true;
  return failure == AttemptFailure::kRefusedStream && (on & retry_on::kRefusedStream);
}

uint64_t RetryPolicy::backOffMs(uint32_t n, uint64_t random) const {
  // The documented range for retry n: [0, (2^n - 1) x base), capped at the
  // maximum (base is at least 1 ms, the maximum no less than base).
  const uint64_t factor = n < 63 ? (uint64_t{1} << n) - 1 : UINT64_MAX;
  const uint64_t range =
      factor > max_interval_ms / base_interval_ms ? max_interval_ms + 1 : factor * base_interval_ms;
  return range == 0 ? 0 : random % range;
}

Result<RetryPolicy> RetryPolicy::compile(const envoy::config::route::v3::RetryPolicy& p,
                                         const std::string& where) {
  RetryPolicy out;
  std::string unsupported;
  out.retry_on = parseRetryOn(p.retry_on(), &unsupported);
  if (!unsupported.empty()) {
    return configError(where + ".retry_on: '" + unsupported + "' is not supported yet");
  }
  if (p.has_num_retries()) out.num_retries = p.num_retries().value();
  out.retriable_status_codes.assign(p.retriable_status_codes().begin(),
                                    p.retriable_status_codes().end());
  // Envoy's HeaderMatchers, compiled as the route table compiles its own.
  auto matchers = [&](const auto& list, const char* field,
                      std::vector<HeaderMatch>& out_list) -> Status {
    for (int i = 0; i < list.size(); ++i) {
      auto m = compileHeaderMatch(list[i], where + "." + field + "[" + std::to_string(i) + "]");
      if (!m) return m.status();
      out_list.push_back(std::move(*m));
    }
    return Status::ok();
  };
  if (Status s = matchers(p.retriable_headers(), "retriable_headers", out.retriable_headers); !s) {
    return s;
  }
  if (Status s = matchers(p.retriable_request_headers(), "retriable_request_headers",
                          out.retriable_request_headers);
      !s) {
    return s;
  }
  if (p.has_per_try_timeout()) {
    auto per_try = durationMs(p.per_try_timeout(), where + ".per_try_timeout");
    if (!per_try) return per_try.status();
    out.per_try_timeout = *per_try;
  }
  if (p.has_per_try_idle_timeout()) {
    auto idle = durationMs(p.per_try_idle_timeout(), where + ".per_try_idle_timeout");
    if (!idle) return idle.status();
    out.per_try_idle_timeout = *idle;
  }
  if (p.has_retry_back_off()) {
    const auto& b = p.retry_back_off();
    const std::string at = where + ".retry_back_off";
    // An interval in whole milliseconds, at least 1 (0: negative or under 1ms).
    auto interval = [](const google::protobuf::Duration& d) -> uint64_t {
      auto ms = durationMs(d, {});
      return ms ? static_cast<uint64_t>(ms->count()) : 0;
    };
    out.base_interval_ms = b.has_base_interval() ? interval(b.base_interval()) : 0;
    if (out.base_interval_ms == 0) return configError(at + ".base_interval: must be at least 1ms");
    out.max_interval_ms = out.base_interval_ms * 10;
    if (b.has_max_interval()) {
      const uint64_t max = interval(b.max_interval());
      if (max == 0) return configError(at + ".max_interval: must be at least 1ms");
      if (max < out.base_interval_ms) {
        return configError(at + ".max_interval: must not be less than base_interval");
      }
      out.max_interval_ms = max;
    }
  }
  for (int i = 0; i < p.retry_host_predicate_size(); ++i) {
    const auto& pred = p.retry_host_predicate(i);
    const std::string at = where + ".retry_host_predicate[" + std::to_string(i) + "]";
    const std::string& url = pred.typed_config().type_url();
    const bool previous =
        pred.name() == "envoy.retry_host_predicates.previous_hosts" ||
        (pred.has_typed_config() &&
         url.ends_with("/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"));
    if (!previous) {
      return configError(
          at + ": '" + pred.name() +
          "' is not supported yet (only envoy.retry_host_predicates.previous_hosts)");
    }
    out.previous_hosts = true;
  }
  if (p.host_selection_retry_max_attempts() < 0) {
    return configError(where + ".host_selection_retry_max_attempts: must not be negative");
  }
  if (p.host_selection_retry_max_attempts() > 0) {
    out.host_selection_max_attempts =
        static_cast<uint32_t>(std::min<int64_t>(p.host_selection_retry_max_attempts(), 1000));
  }
  return out;
}

}  // namespace skiff::router
