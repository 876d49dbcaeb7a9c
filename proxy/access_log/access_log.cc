#include "proxy/access_log/access_log.h"

#include <algorithm>

namespace skiff::access_log {

namespace {

bool compare(LogFilter::Op op, uint64_t actual, uint64_t wanted) {
  switch (op) {
    case LogFilter::Op::kEq:
      return actual == wanted;
    case LogFilter::Op::kGe:
      return actual >= wanted;
    case LogFilter::Op::kLe:
      return actual <= wanted;
  }
  return false;
}

bool hasFlag(std::string_view flags, std::string_view flag) {
  while (!flags.empty()) {
    size_t comma = flags.find(',');
    if (flags.substr(0, comma) == flag) return true;
    if (comma == std::string_view::npos) break;
    flags.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

bool LogFilter::matches(const LogContext& c) const {
  switch (kind) {
    case Kind::kStatusCode:
      return compare(op, c.response_code, value);
    case Kind::kDuration: {
      uint64_t start = c.record ? c.record->start_ns : 0;
      uint64_t ms = start && c.end_ns >= start ? (c.end_ns - start) / 1000000 : 0;
      return compare(op, ms, value);
    }
    case Kind::kNotHealthCheck:
      return c.record == nullptr || !c.record->health_check;
    case Kind::kResponseFlag:
      if (flags.empty()) return !c.response_flags.empty();
      return std::any_of(flags.begin(), flags.end(),
                         [&](const std::string& f) { return hasFlag(c.response_flags, f); });
    case Kind::kAnd:
      return std::all_of(children.begin(), children.end(),
                         [&](const LogFilter& f) { return f.matches(c); });
    case Kind::kOr:
      return std::any_of(children.begin(), children.end(),
                         [&](const LogFilter& f) { return f.matches(c); });
  }
  return false;
}

void AccessLog::log(const LogContext& context, uv_loop_t* loop) const {
  if (filter_ && !filter_->matches(context)) return;
  // One scratch line per thread: its capacity is reused, so a line costs no
  // allocation once the first long one has been written.
  thread_local std::string line;
  line.clear();
  formatter_->format(context, line);
  file_->append(line, loop);
}

}  // namespace skiff::access_log
