// gRPC deadlines in the router: the grpc-timeout request header (gRPC's
// PROTOCOL-HTTP2) and which timers a route's timeouts give one request. The
// rules are Envoy's: its router for `timeout`, `max_grpc_timeout` and
// `grpc_timeout_offset`, its connection manager for `max_stream_duration`.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "proxy/http/header_map.h"
#include "proxy/router/route_table.h"

namespace skiff::filters {

// PROTOCOL-HTTP2: Timeout → "grpc-timeout" TimeoutValue TimeoutUnit;
// TimeoutValue → {positive integer as ASCII string of at most 8 digits};
// TimeoutUnit → Hour / Minute / Second / Millisecond / Microsecond /
// Nanosecond, written H M S m u n. Microseconds and nanoseconds round up to
// the next millisecond, as Envoy's do. nullopt when malformed: Envoy then acts
// as if the header were absent.
std::optional<std::chrono::milliseconds> parseGrpcTimeout(std::string_view value);

// A grpc-timeout value for timeout, as Envoy writes it: in milliseconds while
// they fit in 8 digits, else in the first of S, M, H that fits (rounded down),
// and past 99999999H clipped to that.
std::string formatGrpcTimeout(std::chrono::milliseconds timeout);

// The timers of one request.
struct RequestTimeouts {
  // The router's timeout, armed when the request is complete: 504 and
  // response flag UT when it fires. Zero: none.
  std::chrono::milliseconds route{0};
  // The stream's maximum duration, counted from its start: 408 (or 504 once
  // the request is complete), gRPC status DEADLINE_EXCEEDED, "downstream
  // duration timeout". nullopt: none; zero: it is over already.
  std::optional<std::chrono::milliseconds> stream;
  // A new grpc-timeout for the request sent upstream (Envoy rewrites it to the
  // router's timeout under max_grpc_timeout); empty: the header is left as is.
  std::string upstream_grpc_timeout;
};

// What Envoy's router tells the upstream of one attempt (its
// setTimeoutHeaders): the per-try timeout, or the route timeout when there is
// none, bounded by what is left of the route timeout elapsed_ms after the
// request ended (1 once nothing is left: 0 would mean no timeout). Zero: no
// timeout to tell. All in milliseconds; 0 is none for both timeouts.
uint64_t expectedTimeoutMs(uint64_t route_ms, uint64_t per_try_ms, uint64_t elapsed_ms);

// Picks the timers for a request on a route. grpc: the request is gRPC
// (content-type application/grpc...), which max_grpc_timeout requires.
RequestTimeouts chooseTimeouts(const router::RouteTimeouts& route, const HeaderMap& request,
                               bool grpc);

}  // namespace skiff::filters
