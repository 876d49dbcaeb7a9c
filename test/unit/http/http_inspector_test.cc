#include "proxy/http/http_inspector.h"

#include <gtest/gtest.h>

#include <string>

namespace skiff::http {
namespace {

using P = InspectedProtocol;

TEST(HttpInspector, RequestLinesGiveTheirVersion) {
  EXPECT_EQ(inspectHttpProtocol("GET / HTTP/1.1\r\nhost: a\r\n\r\n"), P::kHttp11);
  EXPECT_EQ(inspectHttpProtocol("POST /upload?x=1 HTTP/1.0\r\n"), P::kHttp10);
  EXPECT_EQ(inspectHttpProtocol("M-SEARCH * HTTP/1.1\r\n"), P::kHttp11);
  EXPECT_EQ(inspectHttpProtocol("CONNECT a.test:443 HTTP/1.1\r\n"), P::kHttp11);
  // Any other version is HTTP/1.0 to the chain match, as in Envoy.
  EXPECT_EQ(inspectHttpProtocol("GET /anything HTTP/0.9\r\n"), P::kHttp10);
  // A lone CR or LF ends the line; what follows is not looked at.
  EXPECT_EQ(inspectHttpProtocol("GET / HTTP/1.1\r"), P::kHttp11);
  EXPECT_EQ(inspectHttpProtocol("GET / HTTP/1.0\n"), P::kHttp10);
  EXPECT_EQ(inspectHttpProtocol("GET / HTTP/1.1\r\n\x01\x02"), P::kHttp11);
  // More than one space between the parts, as Envoy's parser allows.
  EXPECT_EQ(inspectHttpProtocol("GET  /anything  HTTP/1.1\r\n\r\n"), P::kHttp11);
}

TEST(HttpInspector, Http2PriorKnowledgePrefaceIsH2c) {
  const std::string preface("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  EXPECT_EQ(inspectHttpProtocol(preface), P::kHttp2);
  EXPECT_EQ(inspectHttpProtocol(preface + std::string("\0\0\x12\x04", 4)), P::kHttp2);
  for (size_t n = 1; n < preface.size(); ++n) {
    EXPECT_EQ(inspectHttpProtocol(preface.substr(0, n)), P::kNeedMore) << n;
  }
  // A preface that goes wrong is no request line either (PRI is not a
  // method the HTTP/1 codec knows).
  EXPECT_EQ(inspectHttpProtocol("PRI * HTTP/2.0\r\n\r\x0c"), P::kNotHttp);
  EXPECT_EQ(applicationProtocolName(P::kHttp2), "h2c");
  EXPECT_EQ(applicationProtocolName(P::kHttp11), "http/1.1");
  EXPECT_EQ(applicationProtocolName(P::kHttp10), "http/1.0");
  EXPECT_EQ(applicationProtocolName(P::kNotHttp), "");
}

TEST(HttpInspector, EveryPrefixOfARequestLineWaitsForMore) {
  const std::string line = "OPTIONS /a/b?c HTTP/1.1";
  for (size_t n = 1; n <= line.size(); ++n) {
    EXPECT_EQ(inspectHttpProtocol(line.substr(0, n)), P::kNeedMore) << line.substr(0, n);
  }
  EXPECT_EQ(inspectHttpProtocol(line + "\r"), P::kHttp11);
  EXPECT_EQ(inspectHttpProtocol(""), P::kNeedMore);
}

TEST(HttpInspector, AnythingElseIsNoHttpAsSoonAsItShows) {
  // Unknown methods, as soon as no method can start that way.
  EXPECT_EQ(inspectHttpProtocol("X"), P::kNotHttp);
  EXPECT_EQ(inspectHttpProtocol("BAD /anything HTTP/1.1"), P::kNotHttp);
  EXPECT_EQ(inspectHttpProtocol("get / HTTP/1.1\r\n"), P::kNotHttp);
  EXPECT_EQ(inspectHttpProtocol("NOT_A_LEGAL_PREFIX /anything HTTP/1.0\r\n"), P::kNotHttp);
  EXPECT_EQ(inspectHttpProtocol("GETX / HTTP/1.1\r\n"), P::kNotHttp);
  // A TLS ClientHello, a server-speaks-first reply, random bytes.
  EXPECT_EQ(inspectHttpProtocol(std::string("\x16\x03\x01\x02\x00", 5)), P::kNotHttp);
  EXPECT_EQ(inspectHttpProtocol("hello\n"), P::kNotHttp);
  EXPECT_EQ(inspectHttpProtocol(std::string("\0\0\0\0", 4)), P::kNotHttp);
  // Empty lines first (Envoy: the first line must not be empty).
  EXPECT_EQ(inspectHttpProtocol("\r\nGET /anything HTTP/1.1\r\n"), P::kNotHttp);
  EXPECT_EQ(inspectHttpProtocol("\r\n\r\n\r\n BAD"), P::kNotHttp);
  // Malformed lines.
  EXPECT_EQ(inspectHttpProtocol("GET\r\n"), P::kNotHttp);
  EXPECT_EQ(inspectHttpProtocol("GET /\r\n"), P::kNotHttp);
  EXPECT_EQ(inspectHttpProtocol("GET  HTTP/1.1\r\n"), P::kNotHttp);
  EXPECT_EQ(inspectHttpProtocol("GET /anything HTTP/1.1 BadRequestLine\r\n"), P::kNotHttp);
  EXPECT_EQ(inspectHttpProtocol("GET /index HTT\r"), P::kNotHttp);
  EXPECT_EQ(inspectHttpProtocol("GET / HTTP/11\r\n"), P::kNotHttp);
  EXPECT_EQ(inspectHttpProtocol("GET / http/1.1\r\n"), P::kNotHttp);
  EXPECT_EQ(inspectHttpProtocol("GET /a\x01 HTTP/1.1\r\n"), P::kNotHttp);
}

TEST(HttpInspector, ALongRequestLineIsFoundUpToTheLimit) {
  const std::string head = "GET /";
  const std::string tail = " HTTP/1.0\r";
  std::string line =
      head + std::string(kHttpInspectMaxBytes - head.size() - tail.size(), 'a') + tail;
  ASSERT_EQ(line.size(), kHttpInspectMaxBytes);
  EXPECT_EQ(inspectHttpProtocol(line), P::kHttp10);
  // One byte short of its end: the caller, at its limit, calls it no HTTP.
  EXPECT_EQ(inspectHttpProtocol(std::string_view(line).substr(0, line.size() - 1)), P::kNeedMore);
}

}  // namespace
}  // namespace skiff::http
