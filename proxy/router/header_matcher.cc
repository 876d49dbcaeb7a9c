#include "proxy/router/header_matcher.h"

#include <re2/re2.h>

#include <charconv>

#include "envoy/config/route/v3/route_components.pb.h"
#include "envoy/type/matcher/v3/regex.pb.h"
#include "envoy/type/matcher/v3/string.pb.h"

// skiff reads the deprecated legacy header matchers because Envoy still
// honours them and configs still use them.
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace skiff::router {

namespace rv3 = envoy::config::route::v3;
namespace mv3 = envoy::type::matcher::v3;

namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c | 0x20) : c; }

bool endsWith(std::string_view s, std::string_view suffix, bool ignore_case) {
  if (s.size() < suffix.size()) return false;
  s = s.substr(s.size() - suffix.size());
  return ignore_case ? equalsIgnoreCase(s, suffix) : s == suffix;
}

bool containsIgnoreCase(std::string_view s, std::string_view needle) {
  if (needle.size() > s.size()) return false;
  for (size_t i = 0; i + needle.size() <= s.size(); ++i) {
    if (equalsIgnoreCase(s.substr(i, needle.size()), needle)) return true;
  }
  return false;
}

}  // namespace

std::string toLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower(c);
  return out;
}

bool startsWith(std::string_view s, std::string_view prefix, bool ignore_case) {
  if (s.size() < prefix.size()) return false;
  s = s.substr(0, prefix.size());
  return ignore_case ? equalsIgnoreCase(s, prefix) : s == prefix;
}

Result<std::unique_ptr<re2::RE2>> compileRegex(const std::string& regex, const std::string& where) {
  re2::RE2::Options options;
  options.set_log_errors(false);
  auto re = std::make_unique<re2::RE2>(regex, options);
  if (!re->ok()) return configError(where + ": invalid RE2: " + re->error());
  return re;
}

bool StringMatch::matches(std::string_view s) const {
  switch (kind) {
    case Kind::kExact:
      return ignore_case ? equalsIgnoreCase(s, value) : s == value;
    case Kind::kPrefix:
      return startsWith(s, value, ignore_case);
    case Kind::kSuffix:
      return endsWith(s, value, ignore_case);
    case Kind::kContains:
      return ignore_case ? containsIgnoreCase(s, value) : s.find(value) != std::string_view::npos;
    case Kind::kRegex:
      return re2::RE2::FullMatch(s, *regex);
  }
  return false;
}

Result<StringMatch> compileStringMatch(const mv3::StringMatcher& m, const std::string& where) {
  StringMatch out;
  out.ignore_case = m.ignore_case();
  switch (m.match_pattern_case()) {
    case mv3::StringMatcher::kExact:
      out.kind = StringMatch::Kind::kExact;
      out.value = m.exact();
      break;
    case mv3::StringMatcher::kPrefix:
      out.kind = StringMatch::Kind::kPrefix;
      out.value = m.prefix();
      break;
    case mv3::StringMatcher::kSuffix:
      out.kind = StringMatch::Kind::kSuffix;
      out.value = m.suffix();
      break;
    case mv3::StringMatcher::kContains:
      out.kind = StringMatch::Kind::kContains;
      out.value = m.contains();
      break;
    case mv3::StringMatcher::kSafeRegex: {
      out.kind = StringMatch::Kind::kRegex;
      auto re = compileRegex(m.safe_regex().regex(), where + ".safe_regex.regex");
      if (!re) return re.status();
      out.regex = std::move(*re);
      break;
    }
    case mv3::StringMatcher::kCustom:
      return configError(where + ".custom: is not supported");
    default:
      return configError(where +
                         ": one of exact, prefix, suffix, contains, safe_regex is required");
  }
  return out;
}

bool HeaderMatch::matchesValue(std::string_view v) const {
  switch (kind) {
    case Kind::kString:
      return string.matches(v);
    case Kind::kRange: {
      int64_t n = 0;
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
      if (ec != std::errc() || p != v.data() + v.size()) return false;
      return n >= range_start && n < range_end;
    }
    case Kind::kPresent:
      return true;
  }
  return false;
}

bool HeaderMatch::matches(const HeaderMap& headers) const {
  // Envoy matches several fields of one name as their values joined by ','.
  const HeaderMap::Entry* first = nullptr;
  size_t count = 0;
  for (const auto& e : headers.entries()) {
    if (equalsIgnoreCase(e.name, name)) {
      if (!first) first = &e;
      ++count;
    }
  }
  if (kind == Kind::kPresent) return ((first != nullptr) == present) != invert;
  if (!first) {
    // A missing header never matches, inverted or not, unless it counts as empty.
    if (!treat_missing_as_empty) return false;
    return matchesValue("") != invert;
  }
  if (count == 1) return matchesValue(first->value) != invert;
  std::string joined;  // Rare: a repeated header; this copy is the one allocation in match().
  for (const auto& e : headers.entries()) {
    if (!equalsIgnoreCase(e.name, name)) continue;
    if (!joined.empty()) joined += ',';
    joined.append(e.value);
  }
  return matchesValue(joined) != invert;
}

Result<HeaderMatch> compileHeaderMatch(const rv3::HeaderMatcher& m, const std::string& where) {
  HeaderMatch out;
  if (m.name().empty()) return configError(where + ".name: must not be empty");
  out.name = toLower(m.name());
  out.invert = m.invert_match();
  out.treat_missing_as_empty = m.treat_missing_header_as_empty();
  auto legacy = [&](StringMatch::Kind kind, const std::string& value) {
    out.string.kind = kind;
    out.string.value = value;
  };
  switch (m.header_match_specifier_case()) {
    case rv3::HeaderMatcher::kExactMatch:
      legacy(StringMatch::Kind::kExact, m.exact_match());
      break;
    case rv3::HeaderMatcher::kPrefixMatch:
      legacy(StringMatch::Kind::kPrefix, m.prefix_match());
      break;
    case rv3::HeaderMatcher::kSuffixMatch:
      legacy(StringMatch::Kind::kSuffix, m.suffix_match());
      break;
    case rv3::HeaderMatcher::kContainsMatch:
      legacy(StringMatch::Kind::kContains, m.contains_match());
      break;
    case rv3::HeaderMatcher::kSafeRegexMatch: {
      out.string.kind = StringMatch::Kind::kRegex;
      auto re = compileRegex(m.safe_regex_match().regex(), where + ".safe_regex_match.regex");
      if (!re) return re.status();
      out.string.regex = std::move(*re);
      break;
    }
    case rv3::HeaderMatcher::kStringMatch: {
      auto s = compileStringMatch(m.string_match(), where + ".string_match");
      if (!s) return s.status();
      out.string = std::move(*s);
      break;
    }
    case rv3::HeaderMatcher::kPresentMatch:
      out.kind = HeaderMatch::Kind::kPresent;
      out.present = m.present_match();
      break;
    case rv3::HeaderMatcher::kRangeMatch:
      out.kind = HeaderMatch::Kind::kRange;
      out.range_start = m.range_match().start();
      out.range_end = m.range_match().end();
      if (out.range_start >= out.range_end) {
        return configError(where + ".range_match: start must be less than end");
      }
      break;
    default:
      // Envoy: a matcher with no specifier matches when the header is present.
      out.kind = HeaderMatch::Kind::kPresent;
      out.present = true;
      break;
  }
  return out;
}

}  // namespace skiff::router
