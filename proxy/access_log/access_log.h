// One configured access log (HttpConnectionManager.access_log[i]): which
// streams it logs (filter), how a line reads (Formatter), where it goes
// (LogFile). The connection manager calls log() once per stream, at its end.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proxy/access_log/formatter.h"
#include "proxy/access_log/log_file.h"

namespace skiff::access_log {

// Envoy's AccessLogFilter, the kinds skiff implements.
struct LogFilter {
  enum class Kind { kStatusCode, kDuration, kNotHealthCheck, kResponseFlag, kAnd, kOr };
  enum class Op { kEq, kGe, kLe };  // ComparisonFilter.op
  Kind kind = Kind::kNotHealthCheck;
  Op op = Op::kEq;
  uint64_t value = 0;               // Status code, or duration in ms.
  std::vector<std::string> flags;   // kResponseFlag; empty: any flag.
  std::vector<LogFilter> children;  // kAnd, kOr.

  bool matches(const LogContext& context) const;
};

class AccessLog {
 public:
  AccessLog(std::unique_ptr<Formatter> formatter, std::shared_ptr<LogFile> file,
            std::optional<LogFilter> filter)
      : formatter_(std::move(formatter)), file_(std::move(file)), filter_(std::move(filter)) {}

  // Writes context's line if the filter takes it. loop: the calling
  // worker's (for the flush timer).
  void log(const LogContext& context, uv_loop_t* loop) const;
  const Formatter& formatter() const { return *formatter_; }
  const LogFile& file() const { return *file_; }

 private:
  std::unique_ptr<Formatter> formatter_;
  std::shared_ptr<LogFile> file_;
  std::optional<LogFilter> filter_;
};

}  // namespace skiff::access_log
