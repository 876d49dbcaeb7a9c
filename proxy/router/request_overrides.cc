#include "proxy/router/request_overrides.h"

#include <algorithm>
#include <limits>

#include "proxy/router/retry_policy.h"

namespace skiff::router {

namespace {

// The headers, without their "x-envoy-" prefix.
enum class Override {
  kTimeout,
  kPerTryTimeout,
  kAltResponse,
  kRetryOn,
  kRetryGrpcOn,
  kMaxRetries,
  kStatusCodes,
  kHeaderNames,
  kHedge,
  kStreamDuration,
  kNone,
};

struct Name {
  std::string_view rest;
  Override which;
};
constexpr Name kNames[] = {
    {"upstream-rq-timeout-ms", Override::kTimeout},
    {"upstream-rq-per-try-timeout-ms", Override::kPerTryTimeout},
    {"upstream-rq-timeout-alt-response", Override::kAltResponse},
    {"retry-on", Override::kRetryOn},
    {"retry-grpc-on", Override::kRetryGrpcOn},
    {"max-retries", Override::kMaxRetries},
    {"retriable-status-codes", Override::kStatusCodes},
    {"retriable-header-names", Override::kHeaderNames},
    {"hedge-on-per-try-timeout", Override::kHedge},
    {"upstream-stream-duration-ms", Override::kStreamDuration},
};

Override classify(std::string_view name) {
  constexpr std::string_view kPrefix = "x-envoy-";
  if (name.size() <= kPrefix.size() || !equalsIgnoreCase(name.substr(0, kPrefix.size()), kPrefix)) {
    return Override::kNone;
  }
  std::string_view rest = name.substr(kPrefix.size());
  for (const Name& n : kNames) {
    if (equalsIgnoreCase(rest, n.rest)) return n.which;
  }
  return Override::kNone;
}

bool isSpace(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

std::optional<std::chrono::milliseconds> parseMs(std::string_view text) {
  std::optional<uint64_t> v = parseHeaderUint(text);
  // Past what a signed count of milliseconds holds: no timeout of this world.
  if (!v || *v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
  return std::chrono::milliseconds(static_cast<int64_t>(*v));
}

}  // namespace

std::optional<uint64_t> parseHeaderUint(std::string_view text) {
  while (!text.empty() && isSpace(text.front())) text.remove_prefix(1);
  while (!text.empty() && isSpace(text.back())) text.remove_suffix(1);
  if (!text.empty() && text.front() == '+') text.remove_prefix(1);
  if (text.empty()) return std::nullopt;
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - digit) / 10) return std::nullopt;
    v = v * 10 + digit;
  }
  return v;
}

RequestOverrides takeRequestOverrides(HeaderMap& headers) {
  RequestOverrides out;
  // Envoy reads the first field of each name.
  bool seen[static_cast<size_t>(Override::kNone)] = {};
  size_t i = 0;
  while (i < headers.size()) {
    const HeaderMap::Entry e = headers.entries()[i];
    const Override which = classify(e.name);
    if (which == Override::kNone) {
      ++i;
      continue;
    }
    bool& first = seen[static_cast<size_t>(which)];
    if (!first) {
      first = true;
      switch (which) {
        case Override::kTimeout:
          out.timeout = parseMs(e.value);
          break;
        case Override::kPerTryTimeout:
          out.per_try_timeout = parseMs(e.value);
          break;
        case Override::kAltResponse:
          out.timeout_alt_response = true;
          break;
        case Override::kRetryOn:
          // Envoy reads only the HTTP conditions here, the gRPC ones from
          // x-envoy-retry-grpc-on. A condition skiff does not implement
          // (retriable-headers, reset-before-request) adds nothing.
          out.retry_headers = true;
          out.retry_on |= parseRetryOn(e.value) & ~retry_on::kGrpc;
          break;
        case Override::kRetryGrpcOn:
          out.retry_headers = true;
          out.retry_on |= parseRetryOn(e.value) & retry_on::kGrpc;
          break;
        case Override::kMaxRetries:
          if (std::optional<uint64_t> n = parseHeaderUint(e.value)) {
            out.max_retries =
                static_cast<uint32_t>(std::min<uint64_t>(*n, std::numeric_limits<uint32_t>::max()));
          }
          break;
        case Override::kStatusCodes: {
          // A comma-separated list; an entry that is not a number is skipped.
          std::string_view list = e.value;
          while (!list.empty()) {
            const size_t comma = list.find(',');
            std::optional<uint64_t> code = parseHeaderUint(list.substr(0, comma));
            if (code && *code <= std::numeric_limits<uint32_t>::max()) {
              out.retriable_status_codes.push_back(static_cast<uint32_t>(*code));
            }
            list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
          }
          break;
        }
        case Override::kStreamDuration:
          out.stream_duration = parseMs(e.value);
          break;
        case Override::kHeaderNames: {
          // Envoy's split: empty entries are skipped, each name trimmed.
          std::string_view list = e.value;
          while (!list.empty()) {
            const size_t comma = list.find(',');
            std::string_view name = list.substr(0, comma);
            while (!name.empty() && isSpace(name.front())) name.remove_prefix(1);
            while (!name.empty() && isSpace(name.back())) name.remove_suffix(1);
            if (!name.empty()) {
              std::string lower(name);
              for (char& c : lower) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c | 0x20) : c;
              out.retriable_header_names.push_back(std::move(lower));
            }
            list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
          }
          break;
        }
        case Override::kHedge:
        case Override::kNone:
          break;
      }
    }
    headers.removeAt(i);
  }
  return out;
}

}  // namespace skiff::router
