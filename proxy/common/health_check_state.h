// Whether this server fails health checks: Envoy's healthCheckFailed(), set
// by the admin's POST /healthcheck/fail and cleared by /healthcheck/ok. The
// health check filter answers 503 while it is set, every connection manager
// drains its connections (HTTP/1 `connection: close`, HTTP/2 GOAWAY) on
// their next response, and /ready says DRAINING.
//
// One process-wide flag, written by the main thread and read by every
// worker: a relaxed load is a plain load on x86, so a response pays one
// load for it and no write; the state needs no ordering with anything else.
#pragma once

#include <atomic>

namespace skiff {

inline std::atomic<bool> g_health_check_failed{false};

inline bool healthCheckFailed() { return g_health_check_failed.load(std::memory_order_relaxed); }
inline void setHealthCheckFailed(bool failed) {
  g_health_check_failed.store(failed, std::memory_order_relaxed);
}

}  // namespace skiff
