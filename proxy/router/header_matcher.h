// Envoy's header matchers (config.route.v3.HeaderMatcher) and the string
// matchers inside them (type.matcher.v3.StringMatcher), compiled once: the
// route table matches requests with them, and a retry policy matches
// responses (retriable_headers) and requests (retriable_request_headers).
// Compiling does the lowercasing and regex work; matching only reads, and
// allocates only for a header that appears more than once (Envoy joins such
// values with ',').
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "proxy/common/status.h"
#include "proxy/http/header_map.h"

namespace re2 {
class RE2;
}

namespace envoy::config::route::v3 {
class HeaderMatcher;
}
namespace envoy::type::matcher::v3 {
class StringMatcher;
}

namespace skiff::router {

// A StringMatcher (or a legacy header matcher that is one in disguise).
struct StringMatch {
  enum class Kind { kExact, kPrefix, kSuffix, kContains, kRegex };
  Kind kind = Kind::kExact;
  std::string value;
  bool ignore_case = false;
  // Shared, so that what holds a matcher (a retry policy) stays copyable.
  std::shared_ptr<const re2::RE2> regex;

  bool matches(std::string_view s) const;
};

struct HeaderMatch {
  enum class Kind { kString, kPresent, kRange };
  std::string name;  // Lower case.
  Kind kind = Kind::kString;
  StringMatch string;
  bool present = true;
  int64_t range_start = 0;
  int64_t range_end = 0;
  bool invert = false;
  bool treat_missing_as_empty = false;

  bool matchesValue(std::string_view v) const;
  bool matches(const HeaderMap& headers) const;
};

// where names the matcher in errors.
Result<StringMatch> compileStringMatch(const envoy::type::matcher::v3::StringMatcher& m,
                                       const std::string& where);
Result<HeaderMatch> compileHeaderMatch(const envoy::config::route::v3::HeaderMatcher& m,
                                       const std::string& where);
// An RE2 with Envoy's google_re2 defaults; its error names where.
Result<std::unique_ptr<re2::RE2>> compileRegex(const std::string& regex, const std::string& where);

// ASCII lowercasing, and a prefix test, which the route table shares.
std::string toLower(std::string_view s);
bool startsWith(std::string_view s, std::string_view prefix, bool ignore_case);

}  // namespace skiff::router
