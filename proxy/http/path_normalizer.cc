#include "proxy/http/path_normalizer.h"

#include <array>

namespace skiff::http {

namespace {

// What normalize_path does with a raw byte of the path.
enum class ByteClass : uint8_t {
  kKeep,     // Copied as it is.
  kSpecial,  // '.', '\\' or '%': looked at more closely.
  kEncode,   // Not allowed raw in a canonical path: becomes %XX.
  kInvalid,  // NUL: encoded, and the path is refused.
};

constexpr std::array<ByteClass, 256> makeByteClasses() {
  std::array<ByteClass, 256> t{};
  for (int c = 0; c < 256; ++c) {
    if (c < 0x20 || c >= 0x7f) t[c] = ByteClass::kEncode;  // Controls, DEL, non-ASCII.
  }
  for (unsigned char c : std::string_view(" \"#<>?^`{|}")) t[c] = ByteClass::kEncode;
  t['.'] = t['\\'] = t['%'] = ByteClass::kSpecial;
  t[0] = ByteClass::kInvalid;
  return t;
}

constexpr std::array<ByteClass, 256> kByteClasses = makeByteClasses();

ByteClass classOf(char c) { return kByteClasses[static_cast<unsigned char>(c)]; }

// RFC 3986 §2.3's unreserved characters, which an escape need not hide; the
// dot is left out: "%2e" is handled as a dot before this is asked.
bool isUnreserved(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '~';
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The byte that "%XY" at s[at] stands for, or -1 if it is no valid escape.
int decodeEscape(std::string_view s, size_t at) {
  if (at + 3 > s.size()) return -1;
  int hi = hexValue(s[at + 1]), lo = hexValue(s[at + 2]);
  if (hi < 0 || lo < 0) return -1;
  return hi * 16 + lo;
}

bool isSlash(char c) { return c == '/' || c == '\\'; }

// How many input bytes the dot at p[at] takes: 1 for '.', 3 for "%2e" or
// "%2E", 0 if there is no dot there.
size_t dotLength(std::string_view p, size_t at) {
  if (p[at] == '.') return 1;
  if (p[at] == '%' && at + 3 <= p.size() && p[at + 1] == '2' && (p[at + 2] | 0x20) == 'e') {
    return 3;
  }
  return 0;
}

enum class DotSegment : uint8_t { kNone, kCurrent, kParent };

// What a dot that follows a slash means, given what comes after it at
// p[after]; consumed: how many of those further bytes belong to the segment
// (a second dot, and the slash that ends it).
DotSegment classifyAfterDot(std::string_view p, size_t after, size_t& consumed) {
  consumed = 0;
  if (after == p.size()) return DotSegment::kCurrent;  // "/." at the end.
  if (isSlash(p[after])) {
    consumed = 1;
    return DotSegment::kCurrent;  // "/./"
  }
  if (size_t second = dotLength(p, after)) {
    const size_t rest = after + second;
    if (rest == p.size()) {
      consumed = second;
      return DotSegment::kParent;  // "/.." at the end.
    }
    if (isSlash(p[rest])) {
      consumed = second + 1;
      return DotSegment::kParent;  // "/../"
    }
  }
  return DotSegment::kNone;  // ".foo", "..foo": part of a name.
}

// out ends with '/': drop the last segment before it, never the first slash.
void backUpToPreviousSlash(std::string& out) {
  size_t i = out.size() - 1;
  if (i == 0) return;
  --i;
  while (out[i] != '/' && i > 0) --i;
  out.resize(i + 1);
}

void appendEscaped(std::string& out, unsigned char c) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  out.push_back('%');
  out.push_back(kHex[c >> 4]);
  out.push_back(kHex[c & 15]);
}

// A '%' that began no valid escape sits at out[percent], one or two bytes
// before the byte just decoded. If the decoded bytes make "%XY" a valid
// escape now, a later decoding would read what the client never sent, so the
// '%' becomes "%25". next: the input byte after the escape just decoded.
void guardNestedEscape(std::string_view p, size_t next, size_t percent, std::string& out) {
  const size_t length = out.size();
  const char decoded = out[length - 1];
  const bool borrow_next = percent == length - 2;  // out ends "%d": look at the next input byte.
  if (borrow_next) {
    if (next == p.size() || static_cast<unsigned char>(p[next]) >= 0x80) return;
    out.push_back(p[next]);
  }
  if (decodeEscape(out, percent) >= 0) {
    if (!borrow_next) out.push_back(out[percent + 1]);
    out[percent + 1] = '2';
    out[percent + 2] = '5';
    out.push_back(decoded);
  } else if (borrow_next) {
    out.resize(length);  // The borrowed byte is read again in its turn.
  }
}

// Whether canonicalizing p (a path part that starts with '/') changes it:
// the same walk as canonicalizePathPart, reading only.
bool needsCanonicalization(std::string_view p) {
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    const ByteClass k = classOf(c);
    if (k == ByteClass::kKeep) continue;
    if (k != ByteClass::kSpecial || c == '\\') return true;
    if (c == '.') {
      // Nothing changed before i, so the output ends as the input does.
      size_t consumed;
      if (i > 0 && p[i - 1] == '/' && classifyAfterDot(p, i + 1, consumed) != DotSegment::kNone) {
        return true;
      }
      continue;
    }
    // '%': "%2e" is a dot that is decoded at least; an unreserved character
    // is decoded, "%00" refused; anything else is kept with its escape.
    if (dotLength(p, i) != 0) return true;
    const int v = decodeEscape(p, i);
    if (v < 0) continue;  // A lone '%' stays.
    if (v == 0 || isUnreserved(static_cast<unsigned char>(v))) return true;
    i += 2;
  }
  return false;
}

}  // namespace

// Canonicalizes p (the path part, starting with '/') into out; false when
// the path holds "%00" or a NUL.
bool canonicalizePathPart(std::string_view p, std::string& out) {
  bool ok = true;
  bool have_lone_percent = false;
  size_t lone_percent = 0;  // Where in out the last lone '%' is.
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    const ByteClass k = classOf(c);
    if (k == ByteClass::kKeep) {
      out.push_back(c);
      continue;
    }
    if (size_t dot = dotLength(p, i)) {
      if (!out.empty() && out.back() == '/') {
        size_t consumed;
        switch (classifyAfterDot(p, i + dot, consumed)) {
          case DotSegment::kNone:
            out.push_back('.');
            break;
          case DotSegment::kCurrent:
            break;
          case DotSegment::kParent:
            backUpToPreviousSlash(out);
            break;
        }
        i += dot + consumed - 1;
      } else {
        out.push_back('.');  // A dot inside a name.
        i += dot - 1;
      }
    } else if (c == '\\') {
      out.push_back('/');
    } else if (c == '%') {
      const int v = decodeEscape(p, i);
      if (v < 0) {
        have_lone_percent = true;
        lone_percent = out.size();
        out.push_back('%');
      } else if (isUnreserved(static_cast<unsigned char>(v))) {
        out.push_back(static_cast<char>(v));
        if (have_lone_percent && lone_percent + 3 >= out.size()) {
          guardNestedEscape(p, i + 3, lone_percent, out);
        }
        i += 2;
      } else {
        out.append(p.substr(i, 3));  // Kept escaped, hex digits as they came.
        if (v == 0) ok = false;
        i += 2;
      }
    } else {
      appendEscaped(out, static_cast<unsigned char>(c));
      if (k == ByteClass::kInvalid) ok = false;
    }
  }
  return ok;
}

PathRewrite canonicalizePath(std::string_view path, std::string& out) {
  const std::string_view part = path.substr(0, path.find('?'));
  if (!needsCanonicalization(part)) return PathRewrite::kUnchanged;
  std::string result;
  result.reserve(path.size() + 8);
  if (!canonicalizePathPart(part, result)) return PathRewrite::kFailed;
  result.append(path.substr(part.size()));  // The query, as it came.
  if (result == path) return PathRewrite::kUnchanged;
  out = std::move(result);
  return PathRewrite::kChanged;
}

PathRewrite mergeSlashes(std::string_view path, std::string& out) {
  const std::string_view part = path.substr(0, path.find('?'));
  if (part.find("//") == std::string_view::npos) return PathRewrite::kUnchanged;
  // Envoy's rule, edge cases included: a leading '/', the non-empty
  // segments joined by '/', a trailing '/' if the path had one (so "//"
  // stays "//"), then the query.
  std::string result;
  result.reserve(path.size());
  if (part.front() == '/') result.push_back('/');
  bool first = true;
  size_t at = 0;
  while (at < part.size()) {
    size_t slash = part.find('/', at);
    if (slash == std::string_view::npos) slash = part.size();
    if (slash > at) {
      if (!first) result.push_back('/');
      result.append(part.substr(at, slash - at));
      first = false;
    }
    at = slash + 1;
  }
  if (part.back() == '/') result.push_back('/');
  result.append(path.substr(part.size()));
  if (result == path) return PathRewrite::kUnchanged;
  out = std::move(result);
  return PathRewrite::kChanged;
}

PathRewrite unescapeSlashes(std::string_view path, std::string& out) {
  const std::string_view part = path.substr(0, path.find('?'));
  if (part.find('%') == std::string_view::npos) return PathRewrite::kUnchanged;
  std::string result;
  bool found = false;
  for (size_t i = 0; i < part.size(); ++i) {
    // One pass is the same as Envoy's replacing each spelling in turn: the
    // byte put in for an escape can start or end no other escape.
    char replacement = 0;
    if (part[i] == '%' && i + 2 < part.size()) {
      const char hi = part[i + 1], lo = static_cast<char>(part[i + 2] | 0x20);
      if (hi == '2' && lo == 'f') replacement = '/';
      if (hi == '5' && lo == 'c') replacement = '\\';
    }
    if (replacement == 0) {
      if (found) result.push_back(part[i]);
      continue;
    }
    if (!found) {
      found = true;
      result.reserve(path.size());
      result.append(part.substr(0, i));
    }
    result.push_back(replacement);
    i += 2;
  }
  if (!found) return PathRewrite::kUnchanged;
  result.append(path.substr(part.size()));
  out = std::move(result);
  return PathRewrite::kChanged;
}

PathVerdict normalizeRequestPath(const PathNormalizationConfig& config, std::string_view path,
                                 std::string& out, bool& changed) {
  changed = false;
  // Only an origin-form path: CONNECT's authority and OPTIONS' "*" have none.
  if (path.empty() || path.front() != '/') return PathVerdict::kContinue;
  PathVerdict verdict = PathVerdict::kContinue;
  std::string_view current = path;
  std::string next;
  auto take = [&](PathRewrite r) {
    if (r != PathRewrite::kChanged) return;
    out = std::move(next);
    next.clear();
    current = out;
    changed = true;
  };
  if (config.escaped_slashes != EscapedSlashesAction::kKeepUnchanged) {
    const PathRewrite r = unescapeSlashes(current, next);
    if (r == PathRewrite::kChanged) {
      if (config.escaped_slashes == EscapedSlashesAction::kRejectRequest) {
        return PathVerdict::kReject;
      }
      if (config.escaped_slashes == EscapedSlashesAction::kUnescapeAndRedirect) {
        verdict = PathVerdict::kRedirect;
      }
    }
    take(r);
  }
  if (config.normalize_path) {
    const PathRewrite r = canonicalizePath(current, next);
    if (r == PathRewrite::kFailed) return PathVerdict::kReject;
    take(r);
  }
  if (config.merge_slashes) take(mergeSlashes(current, next));
  return verdict;
}

}  // namespace skiff::http
