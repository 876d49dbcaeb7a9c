// What Envoy's http_inspector listener filter finds in a plaintext
// connection's first bytes, before any of them is read: the HTTP/2 connection
// preface (h2c, prior knowledge), an HTTP/1.x request line, or neither. The
// listener peeks at the bytes (proxy/net/listener.h) and chooses the filter
// chain by filter_chain_match.application_protocols with the answer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace skiff::http {

enum class InspectedProtocol : uint8_t {
  kNeedMore,  // What came so far could still start either: peek again later.
  kNotHttp,   // Neither: the connection goes on with no application protocol.
  kHttp10,    // A request line of any HTTP version other than 1.1.
  kHttp11,
  kHttp2,  // The whole HTTP/2 connection preface.
};

// At most this many bytes are looked at, as Envoy's inspector does: a
// request line that has not ended within them is taken for no HTTP (Envoy
// would wait for its listener_filters_timeout instead).
inline constexpr size_t kHttpInspectMaxBytes = 8192;

// Inspects the first bytes of a connection (all of them so far: the call
// keeps no state). A request line is the method (one llhttp knows), spaces,
// a request target, spaces, "HTTP/" digit "." digit, then a CR or an LF; a
// first byte CR or LF is no HTTP. Bytes after the line are not looked at.
InspectedProtocol inspectHttpProtocol(std::string_view first_bytes);

// The application protocol (ALPN name) filter chains match on: "http/1.0",
// "http/1.1" or "h2c"; "" for the others.
std::string_view applicationProtocolName(InspectedProtocol protocol);

}  // namespace skiff::http
