// RFC 9113 section 8 checks on received HTTP/2 messages (see the header).
#include "proxy/http/http2/http2_message_checks.h"

#include <array>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace skiff::http::h2msg {

namespace {

using H = WellKnownHeader;
using F = MessageState::Flag;

// Byte classes, one bit each, in one 256-entry table.
enum : uint8_t {
  kNameChar = 1 << 0,       // RFC 9110 5.6.2 tchar, lowercase only (RFC 9113 8.2.1).
  kTokenChar = 1 << 1,      // tchar, any case (a method is a token, RFC 9110 9.1).
  kValueChar = 1 << 2,      // RFC 9110 5.5 field-vchar, SP or HTAB (RFC 9113 8.2.1).
  kPathChar = 1 << 3,       // Any of those but SP and HTAB.
  kAuthorityChar = 1 << 4,  // RFC 3986 3.2: unreserved, sub-delims, ":", "@", "[", "]", "%".
  kSchemeChar = 1 << 5,     // RFC 3986 3.1: ALPHA, DIGIT, "+", "-", ".".
  kBlank = 1 << 6,          // SP or HTAB.
};

constexpr bool isAlpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
constexpr bool isDigit(int c) { return c >= '0' && c <= '9'; }
constexpr bool isIn(int c, std::string_view set) {
  return set.find(static_cast<char>(c)) != set.npos;
}

constexpr std::array<uint8_t, 256> makeClasses() {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    uint8_t m = 0;
    bool tchar = isAlpha(c) || isDigit(c) || isIn(c, "!#$%&'*+-.^_`|~");
    if (tchar && !(c >= 'A' && c <= 'Z')) m |= kNameChar;
    if (tchar) m |= kTokenChar;
    bool vchar = (c > 0x20 && c < 0x7f) || c >= 0x80;  // VCHAR and obs-text.
    if (vchar || c == ' ' || c == '\t') m |= kValueChar;
    if (vchar) m |= kPathChar;
    if (isAlpha(c) || isDigit(c) || isIn(c, "-._~!$&'()*+,;=:@[]%")) m |= kAuthorityChar;
    if (isAlpha(c) || isDigit(c) || isIn(c, "+-.")) m |= kSchemeChar;
    if (c == ' ' || c == '\t') m |= kBlank;
    t[static_cast<size_t>(c)] = m;
  }
  return t;
}
constexpr std::array<uint8_t, 256> kClasses = makeClasses();

bool allIn(std::string_view s, uint8_t cls) {
  for (char ch : s) {
    if ((kClasses[static_cast<uint8_t>(ch)] & cls) == 0) return false;
  }
  return true;
}

constexpr uint64_t kOnes = 0x0101010101010101ULL;
constexpr uint64_t kHighs = 0x8080808080808080ULL;

// Whether some byte of w is below n (n <= 0x80), or is DEL: the bytes a
// value or a path may not have, bar HTAB, which a value may (the caller
// looks closer then). Bytes of 0x80 and up are neither. Exact as a yes or
// no (a borrow only flags a byte above one that is flagged already).
inline bool maybeBad(uint64_t w, uint8_t n) {
  uint64_t below = (w - kOnes * n) & ~w & kHighs;
  uint64_t del = w ^ (kOnes * 0x7f);
  uint64_t is_del = (del - kOnes) & ~del & kHighs;
  return (below | is_del) != 0;
}

#if defined(__SSE2__)
// maybeBad for 16 bytes at once: a bit per byte below n or equal to DEL.
inline int badBytes(__m128i v, uint8_t n) {
  __m128i below = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(static_cast<char>(n - 1))), v);
  __m128i del = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f));
  return _mm_movemask_epi8(_mm_or_si128(below, del));
}
#endif

// Every byte of s is of class cls, where the class holds every byte but
// those maybeBad(., n) flags (and HTAB): 16 bytes per step with SSE2 (8 to
// 16 as their first and last 8), else 8; the last step overlapping the one
// before, and 4 to 7 bytes as their first and last 4 in one word; the table
// only where a step flags something. (A byte at a time, these scans cost
// about 600 instructions per proxied request; 8 at a time, about 500.)
bool allInWide(std::string_view s, uint8_t n, uint8_t cls) {
  const char* p = s.data();
  size_t len = s.size();
  if (len < 8) {
    if (len < 4) return allIn(s, cls);
    uint32_t head;
    uint32_t tail;
    std::memcpy(&head, p, 4);
    std::memcpy(&tail, p + len - 4, 4);
    return !maybeBad(uint64_t{head} | uint64_t{tail} << 32, n) || allIn(s, cls);
  }
#if defined(__SSE2__)
  if (len <= 16) {
    __m128i head = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    __m128i tail = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + len - 8));
    return badBytes(_mm_unpacklo_epi64(head, tail), n) == 0 || allIn(s, cls);
  }
  for (; len > 16; p += 16, len -= 16) {
    if (badBytes(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)), n) != 0 &&
        !allIn({p, 16}, cls)) {
      return false;
    }
  }
  p += len - 16;  // The last 16 bytes, overlapping what was checked.
  return badBytes(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)), n) == 0 ||
         allIn({p, 16}, cls);
#else
  uint64_t w;
  for (; len > 8; p += 8, len -= 8) {
    std::memcpy(&w, p, 8);
    if (maybeBad(w, n) && !allIn({p, 8}, cls)) return false;
  }
  std::memcpy(&w, p + len - 8, 8);  // The last 8 bytes, overlapping what was checked.
  return !maybeBad(w, n) || allIn({p + len - 8, 8}, cls);
#endif
}

// Names: most are lowercase letters, digits and '-' only. Each byte of w
// that is one of those has its high bit set in the result.
inline uint64_t commonNameBytes(uint64_t w) {
  // ge(x): high bit of each byte that is >= x (for bytes below 0x80).
  auto ge = [w](uint8_t x) { return ((w | kHighs) - kOnes * x) & kHighs; };
  uint64_t lower = ge('a') & ~ge('z' + 1);
  uint64_t digit = ge('0') & ~ge('9' + 1);
  uint64_t d = w ^ (kOnes * '-');
  uint64_t dash = ~((d & ~kHighs) + ~kHighs) & ~d & kHighs;  // Bytes equal to '-'.
  return (lower | digit | dash) & ~w;                        // No byte of 0x80 or above.
}

// A name's bytes after any leading ':' (see validName).
bool nameChars(std::string_view s) {
  const char* p = s.data();
  size_t len = s.size();
  if (len < 8) {
    if (len < 4) return allIn(s, kNameChar);
    uint32_t head;
    uint32_t tail;
    std::memcpy(&head, p, 4);
    std::memcpy(&tail, p + len - 4, 4);
    return commonNameBytes(uint64_t{head} | uint64_t{tail} << 32) == kHighs || allIn(s, kNameChar);
  }
  uint64_t w;
  for (; len > 8; p += 8, len -= 8) {
    std::memcpy(&w, p, 8);
    if (commonNameBytes(w) != kHighs && !allIn({p, 8}, kNameChar)) return false;
  }
  std::memcpy(&w, p + len - 8, 8);
  return commonNameBytes(w) == kHighs || allIn({p + len - 8, 8}, kNameChar);
}

// A pseudo-header field (or host) may come once and may not be empty (RFC
// 9113 8.3: "Pseudo-header fields MUST NOT appear in a header section more
// than once"; an empty :method, :scheme, :path or :authority is no value).
inline bool once(MessageState& st, uint16_t flag, std::string_view value) {
  if ((st.flags & flag) != 0 || value.empty()) return false;
  st.flags |= flag;
  return true;
}

// RFC 9110 8.6: Content-Length = 1*DIGIT, within int64.
int64_t parseContentLength(std::string_view v) {
  if (v.empty()) return -1;
  uint64_t n = 0;
  if (v.size() <= 18) {  // No overflow to watch for.
    for (char ch : v) {
      if (!isDigit(ch)) return -1;
      n = n * 10 + static_cast<uint64_t>(ch - '0');
    }
    return static_cast<int64_t>(n);
  }
  for (char ch : v) {
    if (!isDigit(ch)) return -1;
    auto d = static_cast<uint64_t>(ch - '0');
    if (n > (static_cast<uint64_t>(INT64_MAX) - d) / 10) return -1;
    n = n * 10 + d;
  }
  return static_cast<int64_t>(n);
}

// RFC 9113 8.2.2: "An endpoint MUST NOT generate an HTTP/2 message containing
// connection-specific header fields ... any message containing
// connection-specific header fields MUST be treated as malformed", and "The
// only exception to this is the TE header field ... it MUST NOT contain any
// value other than 'trailers'".
inline bool connectionSpecificOrBadTe(uint8_t cls, std::string_view value) {
  switch (static_cast<H>(cls)) {
    case H::kConnection:
    case H::kKeepAlive:
    case H::kProxyConnection:
    case H::kTransferEncoding:
    case H::kUpgrade:
      return true;
    case H::kTe:
      return !equalsIgnoreCase(value, "trailers");
    default:
      return false;
  }
}

// A field with no rule of its own in the switches below: malformed if it is
// connection-specific or an unknown pseudo-header.
inline bool otherFieldMalformed(uint8_t cls, std::string_view value, bool pseudo) {
  return connectionSpecificOrBadTe(cls, value) || pseudo;
}

// A message's one content-length (RFC 9110 8.6; a second one, or one that is
// not a number, makes the message malformed).
inline bool takeContentLength(MessageState& st, std::string_view value) {
  if (st.content_length != -1) return false;
  st.content_length = parseContentLength(value);
  return st.content_length != -1;
}

// The value's characters, by what the field is.
inline bool validChars(uint8_t cls, std::string_view value, bool value_checked, bool request) {
  if (value_checked) return true;
  switch (static_cast<H>(cls)) {
    case H::kMethod:
      return validMethod(value);
    case H::kPath:
      return validPath(value);
    case H::kScheme:
      return validScheme(value);
    case H::kAuthority:
    case H::kHost:
      // A request's authority is a URI's (RFC 9113 8.3.1); in a response
      // these are fields like any other (and :authority is refused later).
      if (request) return validAuthority(value);
      return validValue(value);
    default:
      return validValue(value);
  }
}

}  // namespace

bool validName(std::string_view name) {
  if (name.empty()) return false;
  if (name[0] == ':') name.remove_prefix(1);
  return !name.empty() && nameChars(name);
}

bool validValue(std::string_view v) {
  // RFC 9113 8.2.1: "A field value MUST NOT start or end with an ASCII
  // whitespace character (ASCII SP or HTAB, 0x20 or 0x09)" and "MUST NOT
  // contain the zero value (ASCII NUL, 0x00), line feed (ASCII LF, 0x0a), or
  // carriage return (ASCII CR, 0x0d) at any position", and as nghttp2 did,
  // none of the other controls of RFC 9110 5.5 (field-vchar) either.
  if (v.empty()) return true;
  if (((kClasses[static_cast<uint8_t>(v.front())] | kClasses[static_cast<uint8_t>(v.back())]) &
       kBlank) != 0) {
    return false;
  }
  return allInWide(v, 0x20, kValueChar);
}

bool validMethod(std::string_view v) { return !v.empty() && allIn(v, kTokenChar); }

bool validPath(std::string_view v) { return allInWide(v, 0x21, kPathChar); }

bool validAuthority(std::string_view v) {
  // Most authorities are lowercase names, digits, '.', ':' and '-': 8 bytes
  // at a time for those, the table for any other.
  const char* p = v.data();
  size_t len = v.size();
  auto common = [](uint64_t w) {
    uint64_t d = w ^ (kOnes * '.');
    uint64_t c = w ^ (kOnes * ':');
    uint64_t dot = ~((d & ~kHighs) + ~kHighs) & ~d & kHighs;
    uint64_t colon = ~((c & ~kHighs) + ~kHighs) & ~c & kHighs;
    return (commonNameBytes(w) | ((dot | colon) & ~w)) == kHighs;
  };
  if (len < 8) {
    if (len < 4) return allIn(v, kAuthorityChar);
    uint32_t head;
    uint32_t tail;
    std::memcpy(&head, p, 4);
    std::memcpy(&tail, p + len - 4, 4);
    return common(uint64_t{head} | uint64_t{tail} << 32) || allIn(v, kAuthorityChar);
  }
  uint64_t w;
  for (; len > 8; p += 8, len -= 8) {
    std::memcpy(&w, p, 8);
    if (!common(w) && !allIn({p, 8}, kAuthorityChar)) return false;
  }
  std::memcpy(&w, p + len - 8, 8);
  return common(w) || allIn({p + len - 8, 8}, kAuthorityChar);
}

bool validScheme(std::string_view v) {
  return !v.empty() && isAlpha(static_cast<uint8_t>(v[0])) && allIn(v, kSchemeChar);
}

FieldVerdict checkRequestField(MessageState& st, uint8_t cls, std::string_view name,
                               std::string_view value, bool value_checked, bool trailer) {
  if (!validChars(cls, value, value_checked, /*request=*/true)) {
    return FieldVerdict::kMalformed;
  }
  const bool pseudo = name[0] == ':';
  // RFC 9113 8.1: "Pseudo-header fields MUST NOT appear in a trailer
  // section"; 8.3: "All pseudo-header fields MUST appear in a field block
  // before all regular field lines".
  if (pseudo && (trailer || (st.flags & F::kRegularSeen) != 0)) return FieldVerdict::kMalformed;
  switch (static_cast<H>(cls)) {
    case H::kAuthority:
      if (!once(st, F::kAuthority, value)) return FieldVerdict::kMalformed;
      break;
    case H::kMethod:
      if (!once(st, F::kMethod, value)) return FieldVerdict::kMalformed;
      if (value == "HEAD") {
        st.flags |= F::kMethodHead;
      } else if (value == "CONNECT") {
        st.flags |= F::kMethodConnect;
      } else if (value == "OPTIONS") {
        st.flags |= F::kMethodOptions;
      }
      break;
    case H::kPath:
      if (!once(st, F::kPath, value)) return FieldVerdict::kMalformed;
      if (value[0] == '/') {
        st.flags |= F::kPathRegular;
      } else if (value == "*") {
        st.flags |= F::kPathAsterisk;
      }
      break;
    case H::kScheme:
      if (!once(st, F::kScheme, value)) return FieldVerdict::kMalformed;
      if (equalsIgnoreCase(value, "http") || equalsIgnoreCase(value, "https")) {
        st.flags |= F::kSchemeHttp;
      }
      break;
    case H::kProtocol:
      // RFC 8441 3 and 4: a client may send :protocol only once the server
      // sent SETTINGS_ENABLE_CONNECT_PROTOCOL = 1, which skiff does when
      // allow_connect is on; without it the field is an unknown
      // pseudo-header. Once, and not empty, like the others (that it comes
      // with CONNECT is the header section's rule).
      if ((st.flags & F::kConnectProtocol) == 0 || !once(st, F::kProtocol, value)) {
        return FieldVerdict::kMalformed;
      }
      break;
    case H::kHost:
      if (!once(st, F::kHost, value)) return FieldVerdict::kMalformed;
      break;
    case H::kContentLength:
      if (!takeContentLength(st, value)) return FieldVerdict::kMalformed;
      break;
    default:
      // RFC 9113 8.3: "Endpoints MUST treat a request or response that
      // contains undefined or invalid pseudo-header fields as malformed"
      // (:status is a response's).
      if (otherFieldMalformed(cls, value, pseudo)) return FieldVerdict::kMalformed;
  }
  if (!pseudo) st.flags |= F::kRegularSeen;
  return FieldVerdict::kAccept;
}

FieldVerdict checkResponseField(MessageState& st, uint8_t cls, std::string_view name,
                                std::string_view value, bool value_checked, bool trailer) {
  if (!validChars(cls, value, value_checked, /*request=*/false)) {
    return FieldVerdict::kMalformed;
  }
  const bool pseudo = name[0] == ':';
  if (pseudo && (trailer || (st.flags & F::kRegularSeen) != 0)) return FieldVerdict::kMalformed;
  switch (static_cast<H>(cls)) {
    case H::kStatus: {
      // RFC 9113 8.3.2: the status code, three digits; RFC 9113 8.6: 101
      // (Switching Protocols) is not used in HTTP/2.
      if (!once(st, F::kStatus, value) || value.size() != 3 || !isDigit(value[0]) ||
          !isDigit(value[1]) || !isDigit(value[2])) {
        return FieldVerdict::kMalformed;
      }
      int code = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
      if (code == 101) return FieldVerdict::kMalformed;
      st.status = static_cast<int16_t>(code);
      break;
    }
    case H::kContentLength:
      if (st.status == 204) {
        // RFC 9110 8.6: "A server MUST NOT send a Content-Length header
        // field in any response with a status code of ... 204"; servers that
        // send "0" anyway are forgiven, as nghttp2 forgave them: the field
        // is dropped.
        if (st.content_length != -1 || value != "0") return FieldVerdict::kMalformed;
        st.content_length = 0;
        return FieldVerdict::kDrop;
      }
      if (st.status / 100 == 1) return FieldVerdict::kMalformed;
      // RFC 9110 8.6: nor in a 2xx response to CONNECT; dropped likewise.
      if (st.status / 100 == 2 && (st.flags & F::kMethodConnect) != 0) return FieldVerdict::kDrop;
      if (!takeContentLength(st, value)) return FieldVerdict::kMalformed;
      break;
    default:
      if (otherFieldMalformed(cls, value, pseudo)) return FieldVerdict::kMalformed;
  }
  if (!pseudo) st.flags |= F::kRegularSeen;
  return FieldVerdict::kAccept;
}

bool checkRequestHeaders(MessageState& st) {
  const uint16_t f = st.flags;
  if ((f & F::kProtocol) == 0 && (f & F::kMethodConnect) != 0) {
    // RFC 9113 8.5: "The :scheme and :path pseudo-header fields MUST be
    // omitted"; ":authority ... MUST" be there. A CONNECT's DATA is a
    // tunnel's bytes: no content-length counts them.
    if ((f & (F::kScheme | F::kPath)) != 0 || (f & F::kAuthority) == 0) return false;
    st.content_length = -1;
    return true;
  }
  // RFC 9113 8.3.1: "All HTTP/2 requests MUST include exactly one valid value
  // for the :method, :scheme, and :path pseudo-header fields, unless they are
  // CONNECT requests"; and an authority, from :authority or Host (as nghttp2
  // asked, RFC 9113 8.3.1 lets a client without one leave both out).
  constexpr uint16_t kRequired = F::kMethod | F::kScheme | F::kPath;
  if ((f & kRequired) != kRequired || (f & (F::kAuthority | F::kHost)) == 0) return false;
  // RFC 8441 4: a request with :protocol is an extended CONNECT; unlike a
  // plain one it carries :scheme and :path (required above), and its
  // authority is :authority's. :protocol on any other method makes the
  // request malformed, as nghttp2 had it.
  if ((f & F::kProtocol) != 0 && ((f & F::kMethodConnect) == 0 || (f & F::kAuthority) == 0)) {
    return false;
  }
  // RFC 9113 8.3.1: ":path ... MUST NOT be empty for 'http' or 'https' URIs;
  // 'http' or 'https' URIs that do not contain a path component MUST
  // include a value of '/'. The exceptions to this rule are: an OPTIONS
  // request ... that does not include a path component; these MUST include a
  // :path pseudo-header field with a value of '*'".
  return (f & F::kSchemeHttp) == 0 || (f & F::kPathRegular) != 0 ||
         ((f & F::kMethodOptions) != 0 && (f & F::kPathAsterisk) != 0);
}

bool checkResponseHeaders(MessageState& st) {
  if ((st.flags & F::kStatus) == 0) return false;  // RFC 9113 8.3.2: :status is required.
  if (st.status / 100 == 1) {
    // RFC 9113 8.1: any number of 1xx sections before the final one, each
    // a header section of its own; the method's bits stay.
    st.flags = static_cast<uint16_t>((st.flags & F::kMethodBits) | F::kExpectFinal);
    st.content_length = -1;
    st.status = -1;
    return true;
  }
  st.flags = static_cast<uint16_t>(st.flags & ~F::kExpectFinal);
  // RFC 9110 6.4.1: no content in a response to HEAD, or with 204 or 304.
  bool body = (st.flags & F::kMethodHead) == 0 && st.status != 204 && st.status != 304;
  if (!body) {
    st.content_length = 0;
  } else if ((st.flags & F::kMethodConnect) != 0) {
    st.content_length = -1;
  }
  return true;
}

void recordRequestMethod(MessageState& st, std::string_view method) {
  if (method == "HEAD") {
    st.flags |= F::kMethodHead;
  } else if (method == "CONNECT") {
    st.flags |= F::kMethodConnect;
  }
}

}  // namespace skiff::http::h2msg
