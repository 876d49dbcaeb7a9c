// The HTTP/2 message rules (RFC 9113 section 8) that skiff checks itself on
// every header field, header section and DATA chunk it receives, in place of
// nghttp2's HTTP messaging layer (nghttp2_option_set_no_http_messaging): the
// same rules nghttp2 1.52 enforced (lib/nghttp2_http.c and its callers in
// lib/nghttp2_session.c), with the same outcome for each, so that turning
// nghttp2's checks off changed no behaviour (test/integration/
// test_h2_messaging.py pins it). Doing them here is cheaper: the codec already
// knows which well-known name a field has, and names and values from HPACK's
// static table need no scan (bench/probe.sh instr-h2).
//
// Outcomes, as nghttp2 had them with no on_invalid_header callback set:
// - a field or a header section that breaks a rule makes the message
//   malformed (RFC 9113 8.1.1); the codec ends the connection, as Envoy does
//   by default (override_stream_error_on_invalid_http_message unset);
// - DATA past the content-length, or DATA before a final response, or a
//   content-length the body ends short of at a DATA frame's END_STREAM,
//   resets only the stream (RST_STREAM PROTOCOL_ERROR);
// - a content-length on a 204 ("0" only) or on a 2xx answer to CONNECT is
//   dropped, and the message goes on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "proxy/http/header_map.h"

namespace skiff::http::h2msg {

// What a stream's messages have shown so far: a few bits, the status and the
// content-length counters (nghttp2 kept the same on its stream).
struct MessageState {
  enum Flag : uint16_t {
    kMethod = 1 << 0,  // Pseudo-header fields seen (each at most once, RFC 9113 8.3).
    kScheme = 1 << 1,
    kPath = 1 << 2,
    kAuthority = 1 << 3,
    kProtocol = 1 << 4,
    kStatus = 1 << 5,
    kHost = 1 << 6,            // Treated like :authority: once, non-empty.
    kRegularSeen = 1 << 7,     // A regular field came: no pseudo-header after it.
    kMethodHead = 1 << 8,      // Of the request (the client side records its own).
    kMethodConnect = 1 << 9,   //
    kMethodOptions = 1 << 10,  //
    kPathRegular = 1 << 11,    // :path starts with "/".
    kPathAsterisk = 1 << 12,   // :path is "*".
    kSchemeHttp = 1 << 13,     // :scheme is http or https (any case).
    kExpectFinal = 1 << 14,    // A 1xx came: the final response is still due.
    // The server sent SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 3): a
    // request may carry :protocol. Set by the server codec on each stream.
    kConnectProtocol = 1 << 15,
    kMethodBits = kMethodHead | kMethodConnect | kMethodOptions,
  };
  uint16_t flags = 0;
  int16_t status = -1;          // The response's status, -1 until :status.
  int64_t content_length = -1;  // -1: none (or not checked: CONNECT).
  uint64_t received = 0;        // DATA bytes received, padding not counted.
};

enum class FieldVerdict : uint8_t {
  kAccept,     // Deliver it.
  kDrop,       // Leave it out silently; the message goes on.
  kMalformed,  // The message is malformed (RFC 9113 8.1.1).
};

// The character rules, also for the unit tests that compare them with
// nghttp2's own (nghttp2_check_header_name, _value_rfc9113, _method, _path,
// _authority).
bool validName(std::string_view name);        // RFC 9113 8.2.1: lowercase token; ":" + one.
bool validValue(std::string_view value);      // RFC 9113 8.2.1: no NUL/CR/LF/CTL, no SP/HT ends.
bool validMethod(std::string_view value);     // RFC 9110 9.1: a token.
bool validPath(std::string_view value);       // No SP, HT, CTL or DEL.
bool validAuthority(std::string_view value);  // RFC 3986 3.2 characters.
bool validScheme(std::string_view value);     // RFC 3986 3.1.

// The rules of fields with a name of their own (pseudo-headers, host,
// content-length, connection-specific ones, te), for checkField, which
// has checked the name's characters already.
FieldVerdict checkRequestField(MessageState& st, uint8_t cls, std::string_view name,
                               std::string_view value, bool value_checked, bool trailer);
FieldVerdict checkResponseField(MessageState& st, uint8_t cls, std::string_view name,
                                std::string_view value, bool value_checked, bool trailer);

// Whether a well-known name (cls, see below) has rules of its own.
constexpr bool hasRules(uint8_t cls) {
  using H = WellKnownHeader;
  constexpr uint32_t kRules =
      (1u << static_cast<int>(H::kMethod)) | (1u << static_cast<int>(H::kScheme)) |
      (1u << static_cast<int>(H::kAuthority)) | (1u << static_cast<int>(H::kPath)) |
      (1u << static_cast<int>(H::kStatus)) | (1u << static_cast<int>(H::kProtocol)) |
      (1u << static_cast<int>(H::kHost)) | (1u << static_cast<int>(H::kContentLength)) |
      (1u << static_cast<int>(H::kConnection)) | (1u << static_cast<int>(H::kTransferEncoding)) |
      (1u << static_cast<int>(H::kTe)) | (1u << static_cast<int>(H::kUpgrade)) |
      (1u << static_cast<int>(H::kKeepAlive)) | (1u << static_cast<int>(H::kProxyConnection));
  return cls < 32 && ((kRules >> cls) & 1) != 0;
}

// One received field of a request (request) or a response. cls is the
// field's well-known name (any other name: WellKnownHeader::kCount or
// higher). name_checked: the name is known to be lowercase token characters
// (HPACK's static table), so it needs no scan; value_checked: likewise for
// the value (a value from the static table is valid for its own name).
// trailer: the field is in a trailer section. Most fields are regular ones
// with no rule of their own: they take the inline path.
inline FieldVerdict checkField(MessageState& st, uint8_t cls, std::string_view name,
                               std::string_view value, bool name_checked, bool value_checked,
                               bool trailer, bool request) {
  if (!name_checked && !validName(name)) return FieldVerdict::kMalformed;
  if (!hasRules(cls) && name[0] != ':') {
    if (!value_checked && !validValue(value)) return FieldVerdict::kMalformed;
    st.flags |= MessageState::kRegularSeen;
    return FieldVerdict::kAccept;
  }
  return request ? checkRequestField(st, cls, name, value, value_checked, trailer)
                 : checkResponseField(st, cls, name, value, value_checked, trailer);
}

// A whole header section; false: malformed.
// The request's header section (RFC 9113 8.3.1, 8.5).
bool checkRequestHeaders(MessageState& st);
// A response's header section, final or 1xx (RFC 9113 8.3.2, 8.1).
bool checkResponseHeaders(MessageState& st);
// A trailer section must end the stream (RFC 9113 8.1).
inline bool checkTrailers(bool end_stream) { return end_stream; }
// The peer ended the stream: no final response still due, and the body as
// long as content-length said (RFC 9113 8.1.1).
inline bool checkEndStream(const MessageState& st) {
  return (st.flags & MessageState::kExpectFinal) == 0 &&
         (st.content_length < 0 || static_cast<uint64_t>(st.content_length) == st.received);
}
// Whether a response header section is for a stream whose final response is
// still due (a 1xx came), rather than its trailers.
inline bool expectsFinal(const MessageState& st) {
  return (st.flags & MessageState::kExpectFinal) != 0;
}
// A DATA chunk of n bytes; false: the stream is reset.
inline bool checkData(MessageState& st, size_t n) {
  st.received += n;
  return (st.flags & MessageState::kExpectFinal) == 0 &&
         (st.content_length < 0 || st.received <= static_cast<uint64_t>(st.content_length));
}
// The client side records the method of the request it sends: a response
// to HEAD has no body, one to CONNECT no content-length.
void recordRequestMethod(MessageState& st, std::string_view method);

}  // namespace skiff::http::h2msg
