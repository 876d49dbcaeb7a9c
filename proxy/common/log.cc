#include "proxy/common/log.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>

namespace skiff::log {

namespace {
std::atomic<Level> g_level{Level::kInfo};
constexpr const char* kNames[] = {"trace", "debug", "info", "warning", "error", "critical", "off"};
}  // namespace

bool parseLevel(std::string_view name, Level& out) {
  for (int i = 0; i < 7; ++i) {
    if (name == kNames[i]) {
      out = static_cast<Level>(i);
      return true;
    }
  }
  if (name == "warn") {
    out = Level::kWarn;
    return true;
  }
  return false;
}

void setLevel(Level level) { g_level.store(level, std::memory_order_relaxed); }

bool enabled(Level level) { return level >= g_level.load(std::memory_order_relaxed); }

void write(Level level, std::string_view message) {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  int ms = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm;
  gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
  std::string line = "[" + std::string(stamp) + "." + std::to_string(1000 + ms).substr(1) + "][" +
                     std::to_string(static_cast<long>(::syscall(SYS_gettid))) + "][" +
                     kNames[static_cast<int>(level)] + "] " + std::string(message) + "\n";
  // One write() per line so that lines from several threads do not interleave.
  ssize_t rc = ::write(2, line.data(), line.size());
  (void)rc;
}

}  // namespace skiff::log
