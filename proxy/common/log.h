// Minimal leveled logging to stderr, Envoy's levels and line shape:
// [2026-11-27 14:00:00.123][1234][info] message
#pragma once

#include <string_view>

namespace skiff::log {

enum class Level { kTrace, kDebug, kInfo, kWarn, kError, kCritical, kOff };

// Parses Envoy's --log-level names; false if unknown.
bool parseLevel(std::string_view name, Level& out);
void setLevel(Level level);
bool enabled(Level level);
void write(Level level, std::string_view message);

}  // namespace skiff::log

#define SKIFF_LOG(level, msg)                                 \
  do {                                                        \
    if (::skiff::log::enabled(::skiff::log::Level::level)) {  \
      ::skiff::log::write(::skiff::log::Level::level, (msg)); \
    }                                                         \
  } while (0)
