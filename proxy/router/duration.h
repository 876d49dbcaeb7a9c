// A protobuf Duration from route configuration in milliseconds, as the route
// table and the retry policy read their timeouts and intervals.
#pragma once

#include <google/protobuf/duration.pb.h>

#include <chrono>
#include <string>

#include "proxy/common/status.h"

namespace skiff::router {

// Envoy truncates to whole milliseconds; a negative Duration is refused,
// at `where`.
inline Result<std::chrono::milliseconds> durationMs(const google::protobuf::Duration& d,
                                                    const std::string& where) {
  if (d.seconds() < 0 || d.nanos() < 0) return configError(where + ": must not be negative");
  return std::chrono::milliseconds(d.seconds() * 1000 + d.nanos() / 1000000);
}

}  // namespace skiff::router
