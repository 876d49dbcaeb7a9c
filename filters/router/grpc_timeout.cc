#include "filters/router/grpc_timeout.h"

#include <algorithm>
#include <cstdint>

namespace skiff::filters {

namespace {

using std::chrono::milliseconds;

// PROTOCOL-HTTP2: "TimeoutValue → {positive integer as ASCII string of at
// most 8 digits}".
constexpr size_t kMaxDigits = 8;
constexpr uint64_t kMaxValue = 99999999;

// Rounds a count of sub-millisecond units up to whole milliseconds.
milliseconds roundUp(uint64_t value, uint64_t per_ms) {
  return milliseconds((value + per_ms - 1) / per_ms);
}

}  // namespace

std::optional<milliseconds> parseGrpcTimeout(std::string_view value) {
  if (value.size() < 2 || value.size() > kMaxDigits + 1) return std::nullopt;
  uint64_t n = 0;
  for (char c : value.substr(0, value.size() - 1)) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  switch (value.back()) {
    case 'H':
      return milliseconds(n * 3600 * 1000);
    case 'M':
      return milliseconds(n * 60 * 1000);
    case 'S':
      return milliseconds(n * 1000);
    case 'm':
      return milliseconds(n);
    case 'u':
      return roundUp(n, 1000);
    case 'n':
      return roundUp(n, 1000 * 1000);
    default:
      return std::nullopt;
  }
}

std::string formatGrpcTimeout(milliseconds timeout) {
  uint64_t value = timeout.count() < 0 ? 0 : static_cast<uint64_t>(timeout.count());
  char unit = 'm';
  if (value > kMaxValue) {
    value /= 1000;
    unit = 'S';
  }
  if (value > kMaxValue) {
    value /= 60;
    unit = 'M';
  }
  if (value > kMaxValue) {
    value /= 60;
    unit = 'H';
  }
  if (value > kMaxValue) value = kMaxValue;
  return std::to_string(value) + unit;
}

uint64_t expectedTimeoutMs(uint64_t route_ms, uint64_t per_try_ms, uint64_t elapsed_ms) {
  const uint64_t expected = per_try_ms != 0 ? per_try_ms : route_ms;
  if (expected == 0 || route_ms == 0) return expected;
  if (elapsed_ms >= route_ms) return 1;
  return std::min(expected, route_ms - elapsed_ms);
}

RequestTimeouts chooseTimeouts(const router::RouteTimeouts& route, const HeaderMap& request,
                               bool grpc) {
  RequestTimeouts out;
  // The header is looked up only where a route asks for it: most requests
  // take the first return.
  auto header = [&request]() -> std::optional<milliseconds> {
    auto h = request.get(WellKnownHeader::kGrpcTimeout);
    return h ? parseGrpcTimeout(*h) : std::nullopt;
  };

  if (!route.has_max_stream_duration) {
    if (!grpc || !route.max_grpc_timeout) {
      out.route = route.timeout;
      return out;
    }
    // Envoy's router: the header's value, or infinity (0) without one; the
    // offset only when it leaves something ("it will only ever decrease the
    // timeout and never set it to 0, meaning infinity"); then the cap, which
    // also bounds an infinite timeout unless the cap is 0 itself.
    milliseconds t = header().value_or(milliseconds(0));
    if (route.grpc_timeout_offset && *route.grpc_timeout_offset < t) {
      t -= *route.grpc_timeout_offset;
    }
    const milliseconds max = *route.max_grpc_timeout;
    if (max.count() != 0 && (t.count() == 0 || t > max)) t = max;
    out.route = t;
    // The upstream learns the deadline skiff enforces, so that it gives up
    // when skiff does.
    if (t.count() > 0) out.upstream_grpc_timeout = formatGrpcTimeout(t);
    return out;
  }

  // max_stream_duration is set: the route `timeout` no longer applies (Envoy's
  // router keeps no timeout of its own for such a route), and the stream is
  // bounded from its start. As in Envoy's connection manager, the header is
  // read whatever the content-type, and it is forwarded unchanged.
  std::optional<milliseconds> bound;
  if (route.grpc_timeout_header_max) bound = header();
  if (!bound) {
    if (route.max_stream_duration && route.max_stream_duration->count() != 0) {
      out.stream = *route.max_stream_duration;
    }
    return out;
  }
  milliseconds t = *bound;
  const milliseconds max = *route.grpc_timeout_header_max;
  if (max.count() != 0 && t > max) t = max;
  if (t.count() != 0 && route.grpc_timeout_header_offset) {
    // "If, after applying the offset, the resulting timeout is zero or
    // negative, the stream will timeout immediately."
    const milliseconds offset = *route.grpc_timeout_header_offset;
    t = offset < t ? t - offset : milliseconds(0);
  }
  out.stream = t;
  return out;
}

}  // namespace skiff::filters
