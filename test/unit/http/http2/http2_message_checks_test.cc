// skiff's RFC 9113 section 8 checks: the character rules byte for byte
// against nghttp2's own (the library skiff links, which enforced them before
// skiff turned its HTTP messaging off), at every position of values long
// enough for the 8-byte steps; then the field and section rules.
#include "proxy/http/http2/http2_message_checks.h"

#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>

#include <string>

namespace skiff::http::h2msg {
namespace {

using H = WellKnownHeader;

bool ours(const char* which, std::string_view s) {
  std::string w = which;
  if (w == "name") return validName(s);
  if (w == "value") return validValue(s);
  if (w == "method") return validMethod(s);
  if (w == "path") return validPath(s);
  return validAuthority(s);
}

bool theirs(const char* which, std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  std::string w = which;
  if (w == "name") return nghttp2_check_header_name(p, s.size()) != 0;
  if (w == "value") return nghttp2_check_header_value_rfc9113(p, s.size()) != 0;
  if (w == "method") return nghttp2_check_method(p, s.size()) != 0;
  if (w == "path") return nghttp2_check_path(p, s.size()) != 0;
  return nghttp2_check_authority(p, s.size()) != 0;
}

TEST(Http2MessageChecksTest, CharacterRulesMatchNghttp2AtEveryPosition) {
  for (const char* which : {"name", "value", "method", "path", "authority"}) {
    EXPECT_EQ(ours(which, ""), theirs(which, "")) << which;
    for (int c = 0; c < 256; ++c) {
      for (size_t len : {1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 16, 17, 24, 31, 32, 33, 40}) {
        for (size_t at = 0; at < len; ++at) {
          std::string s(len, 'a');
          s[at] = static_cast<char>(c);
          ASSERT_EQ(ours(which, s), theirs(which, s))
              << which << " byte " << c << " at " << at << " of " << len;
        }
      }
      std::string pseudo = ":a";
      pseudo[1] = static_cast<char>(c);
      ASSERT_EQ(ours(which, pseudo), theirs(which, pseudo)) << which << " :" << c;
    }
  }
  EXPECT_FALSE(validName(":"));
}

TEST(Http2MessageChecksTest, Scheme) {
  EXPECT_TRUE(validScheme("http"));
  EXPECT_TRUE(validScheme("A+b-c.9"));
  EXPECT_FALSE(validScheme(""));
  EXPECT_FALSE(validScheme("1http"));
  EXPECT_FALSE(validScheme("ht tp"));
}

// The fields of one section through checkRequestField; the first verdict
// that is not kAccept, or kAccept.
FieldVerdict request(MessageState& st,
                     std::initializer_list<std::pair<std::string_view, std::string_view>> fields,
                     bool trailer = false) {
  for (auto [n, v] : fields) {
    auto cls = static_cast<uint8_t>(classifyHeaderName(n));
    FieldVerdict r = checkField(st, cls, n, v, false, false, trailer, true);
    if (r != FieldVerdict::kAccept) return r;
  }
  return FieldVerdict::kAccept;
}

FieldVerdict response(MessageState& st,
                      std::initializer_list<std::pair<std::string_view, std::string_view>> fields,
                      bool trailer = false) {
  for (auto [n, v] : fields) {
    auto cls = static_cast<uint8_t>(classifyHeaderName(n));
    FieldVerdict r = checkField(st, cls, n, v, false, false, trailer, false);
    if (r != FieldVerdict::kAccept) return r;
  }
  return FieldVerdict::kAccept;
}

TEST(Http2MessageChecksTest, RequestSections) {
  auto ok = [](std::initializer_list<std::pair<std::string_view, std::string_view>> f) {
    MessageState st;
    return request(st, f) == FieldVerdict::kAccept && checkRequestHeaders(st);
  };
  EXPECT_TRUE(ok({{":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {":authority", "a"}}));
  EXPECT_TRUE(ok({{":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {"host", "a"}}));
  EXPECT_TRUE(ok({{":method", "OPTIONS"}, {":scheme", "https"}, {":path", "*"}, {"host", "a"}}));
  EXPECT_TRUE(ok({{":method", "CONNECT"}, {":authority", "a:443"}}));
  EXPECT_TRUE(ok({{":method", "GET"}, {":scheme", "foo"}, {":path", "x"}, {":authority", "a"}}));
  EXPECT_FALSE(ok({{":method", "GET"}, {":scheme", "http"}, {":path", "*"}, {":authority", "a"}}));
  EXPECT_FALSE(ok({{":method", "GET"}, {":scheme", "http"}, {":path", "/"}}));
  EXPECT_FALSE(ok({{":method", "GET"}, {":scheme", "http"}, {":authority", "a"}}));
  EXPECT_FALSE(ok({{":method", "CONNECT"}}));
  EXPECT_FALSE(ok({{":method", "CONNECT"}, {":authority", "a"}, {":path", "/"}}));
  EXPECT_FALSE(ok({{":path", "/"}, {":method", "CONNECT"}, {":authority", "a"}}));
  EXPECT_FALSE(ok({{":method", "GET"}, {"x", "1"}, {":scheme", "http"}}));
  EXPECT_FALSE(ok({{":method", "GET"}, {":method", "GET"}}));
  EXPECT_FALSE(ok({{":method", ""}}));
  EXPECT_FALSE(ok({{":status", "200"}}));
  EXPECT_FALSE(ok({{":protocol", "websocket"}}));
  EXPECT_FALSE(ok({{"Host", "a"}}));
  EXPECT_FALSE(ok({{"te", "gzip"}}));
  EXPECT_FALSE(ok({{"connection", "close"}}));
  EXPECT_FALSE(ok({{"content-length", "1x"}}));
  EXPECT_FALSE(ok({{"content-length", "1"}, {"content-length", "1"}}));
  EXPECT_FALSE(ok({{"host", "a"}, {"host", "a"}}));
  EXPECT_FALSE(ok({{"host", ""}}));
  EXPECT_FALSE(ok({{"x-a", " 1"}}));
}

// RFC 8441 4: :protocol only after the server's
// SETTINGS_ENABLE_CONNECT_PROTOCOL (kConnectProtocol), only with CONNECT, and
// then with :scheme, :path and :authority.
TEST(Http2MessageChecksTest, ExtendedConnect) {
  auto ok = [](bool enabled,
               std::initializer_list<std::pair<std::string_view, std::string_view>> f) {
    MessageState st;
    if (enabled) st.flags |= MessageState::kConnectProtocol;
    return request(st, f) == FieldVerdict::kAccept && checkRequestHeaders(st);
  };
  auto ws = {std::pair<std::string_view, std::string_view>{":method", "CONNECT"},
             {":protocol", "websocket"},
             {":scheme", "https"},
             {":path", "/chat"},
             {":authority", "a"}};
  EXPECT_TRUE(ok(true, ws));
  EXPECT_FALSE(ok(false, ws));  // The setting was not sent.
  EXPECT_TRUE(ok(true, {{":protocol", "websocket"},
                        {":scheme", "http"},
                        {":authority", "a"},
                        {":path", "/"},
                        {":method", "CONNECT"}}));
  // Not CONNECT.
  EXPECT_FALSE(ok(true, {{":method", "GET"},
                         {":protocol", "websocket"},
                         {":scheme", "https"},
                         {":path", "/"},
                         {":authority", "a"}}));
  // :scheme, :path and :authority (not host) are required.
  EXPECT_FALSE(ok(
      true,
      {{":method", "CONNECT"}, {":protocol", "websocket"}, {":path", "/"}, {":authority", "a"}}));
  EXPECT_FALSE(ok(true, {{":method", "CONNECT"},
                         {":protocol", "websocket"},
                         {":scheme", "https"},
                         {":authority", "a"}}));
  EXPECT_FALSE(ok(true, {{":method", "CONNECT"},
                         {":protocol", "websocket"},
                         {":scheme", "https"},
                         {":path", "/"},
                         {"host", "a"}}));
  // :path follows the http(s) rules.
  EXPECT_FALSE(ok(true, {{":method", "CONNECT"},
                         {":protocol", "websocket"},
                         {":scheme", "https"},
                         {":path", "chat"},
                         {":authority", "a"}}));
  // Once, not empty, a valid value, not after a regular field, not in trailers.
  EXPECT_FALSE(ok(true, {{":method", "CONNECT"},
                         {":protocol", "websocket"},
                         {":protocol", "websocket"},
                         {":scheme", "https"},
                         {":path", "/"},
                         {":authority", "a"}}));
  EXPECT_FALSE(ok(true, {{":method", "CONNECT"},
                         {":protocol", ""},
                         {":scheme", "https"},
                         {":path", "/"},
                         {":authority", "a"}}));
  EXPECT_FALSE(ok(true, {{":method", "CONNECT"},
                         {":protocol", "web socket "},
                         {":scheme", "https"},
                         {":path", "/"},
                         {":authority", "a"}}));
  EXPECT_FALSE(ok(true, {{":method", "CONNECT"},
                         {":scheme", "https"},
                         {":path", "/"},
                         {":authority", "a"},
                         {"x-a", "1"},
                         {":protocol", "websocket"}}));
  MessageState st;
  st.flags |= MessageState::kConnectProtocol;
  EXPECT_EQ(request(st, {{":protocol", "websocket"}}, /*trailer=*/true), FieldVerdict::kMalformed);
  // A plain CONNECT is unchanged by the setting.
  EXPECT_TRUE(ok(true, {{":method", "CONNECT"}, {":authority", "a:443"}}));
}

TEST(Http2MessageChecksTest, RequestBodyAgainstContentLength) {
  MessageState st;
  ASSERT_EQ(request(st, {{":method", "POST"},
                         {":scheme", "http"},
                         {":path", "/"},
                         {":authority", "a"},
                         {"content-length", "5"}}),
            FieldVerdict::kAccept);
  ASSERT_TRUE(checkRequestHeaders(st));
  EXPECT_FALSE(checkEndStream(st));  // END_STREAM on the HEADERS: 0 of 5.
  EXPECT_TRUE(checkData(st, 3));
  EXPECT_FALSE(checkEndStream(st));
  EXPECT_TRUE(checkData(st, 2));
  EXPECT_TRUE(checkEndStream(st));
  EXPECT_FALSE(checkData(st, 1));
  // Trailers: no pseudo-header, and they end the stream.
  MessageState t = st;
  EXPECT_EQ(request(t, {{":path", "/"}}, true), FieldVerdict::kMalformed);
  EXPECT_FALSE(checkTrailers(false));
}

TEST(Http2MessageChecksTest, ConnectBodyIsNotCounted) {
  MessageState st;
  ASSERT_EQ(request(st, {{":method", "CONNECT"}, {":authority", "a:1"}, {"content-length", "1"}}),
            FieldVerdict::kAccept);
  ASSERT_TRUE(checkRequestHeaders(st));
  EXPECT_TRUE(checkData(st, 100));
}

TEST(Http2MessageChecksTest, Responses) {
  {
    MessageState st;
    EXPECT_EQ(response(st, {{":status", "100"}}), FieldVerdict::kAccept);
    ASSERT_TRUE(checkResponseHeaders(st));
    EXPECT_TRUE(expectsFinal(st));
    EXPECT_FALSE(checkData(st, 1));  // DATA before the final response.
  }
  {
    MessageState st;
    ASSERT_EQ(response(st, {{":status", "103"}}), FieldVerdict::kAccept);
    ASSERT_TRUE(checkResponseHeaders(st));
    EXPECT_FALSE(checkEndStream(st));  // A 1xx cannot end the stream.
    ASSERT_EQ(response(st, {{":status", "200"}, {"content-length", "2"}}), FieldVerdict::kAccept);
    ASSERT_TRUE(checkResponseHeaders(st));
    EXPECT_FALSE(expectsFinal(st));
    EXPECT_TRUE(checkData(st, 2));
    EXPECT_TRUE(checkEndStream(st));
    EXPECT_EQ(response(st, {{":status", "100"}}, true), FieldVerdict::kMalformed);
  }
  for (const char* status : {"20", "2000", "2x0", "", "101"}) {
    MessageState st;
    EXPECT_EQ(response(st, {{":status", status}}), FieldVerdict::kMalformed) << status;
  }
  {
    MessageState st;
    EXPECT_FALSE(checkResponseHeaders(st));  // No :status.
  }
  {
    MessageState st;
    EXPECT_EQ(response(st, {{":status", "204"}, {"content-length", "0"}}), FieldVerdict::kDrop);
    ASSERT_TRUE(checkResponseHeaders(st));
    EXPECT_FALSE(checkData(st, 1));
  }
  {
    MessageState st;
    EXPECT_EQ(response(st, {{":status", "204"}, {"content-length", "1"}}),
              FieldVerdict::kMalformed);
  }
  {
    MessageState st;
    EXPECT_EQ(response(st, {{":status", "100"}, {"content-length", "0"}}),
              FieldVerdict::kMalformed);
  }
  {
    MessageState st;
    recordRequestMethod(st, "HEAD");
    ASSERT_EQ(response(st, {{":status", "200"}, {"content-length", "10"}}), FieldVerdict::kAccept);
    ASSERT_TRUE(checkResponseHeaders(st));
    EXPECT_TRUE(checkEndStream(st));
    EXPECT_FALSE(checkData(st, 1));
  }
  {
    MessageState st;
    recordRequestMethod(st, "CONNECT");
    EXPECT_EQ(response(st, {{":status", "200"}, {"content-length", "10"}}), FieldVerdict::kDrop);
  }
  {
    MessageState st;
    ASSERT_EQ(response(st, {{":status", "304"}, {"content-length", "10"}}), FieldVerdict::kAccept);
    ASSERT_TRUE(checkResponseHeaders(st));
    EXPECT_TRUE(checkEndStream(st));
  }
  {
    MessageState st;
    EXPECT_EQ(response(st, {{":status", "200"}, {":path", "/"}}), FieldVerdict::kMalformed);
  }
  {
    MessageState st;
    // A response's host is a field like any other (no authority rules).
    EXPECT_EQ(response(st, {{":status", "200"}, {"host", "a/b"}}), FieldVerdict::kAccept);
  }
}

}  // namespace
}  // namespace skiff::http::h2msg
