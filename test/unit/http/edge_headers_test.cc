#include "proxy/http/edge_headers.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace skiff::http {
namespace {

std::vector<CidrRange> ranges(std::initializer_list<std::pair<const char*, uint32_t>> list) {
  std::vector<CidrRange> out;
  for (const auto& [a, n] : list) out.push_back(*parseCidrRange(a, n));
  return out;
}

TEST(EdgeHeaders, CidrRanges) {
  auto r = ranges({{"10.0.0.0", 8}, {"192.168.1.128", 25}, {"fd00::", 8}});
  EXPECT_TRUE(isInternalAddress("10.255.0.1", r));
  EXPECT_FALSE(isInternalAddress("11.0.0.1", r));
  EXPECT_TRUE(isInternalAddress("192.168.1.200", r));
  EXPECT_FALSE(isInternalAddress("192.168.1.127", r));
  EXPECT_TRUE(isInternalAddress("fd12::1", r));
  EXPECT_FALSE(isInternalAddress("fe80::1", r));
  // A range of one family never holds an address of the other.
  EXPECT_FALSE(isInternalAddress("::ffff:10.0.0.1", r));
  EXPECT_FALSE(isInternalAddress("not an ip", r));
  // Envoy's default: no address is internal, loopback included.
  EXPECT_FALSE(isInternalAddress("127.0.0.1", {}));
  EXPECT_TRUE(isInternalAddress("127.0.0.1", ranges({{"127.0.0.1", 32}})));
  EXPECT_TRUE(isInternalAddress("8.8.8.8", ranges({{"0.0.0.0", 0}})));
  EXPECT_FALSE(parseCidrRange("10.0.0.0", 33).has_value());
  EXPECT_FALSE(parseCidrRange("example.com", 8).has_value());
  EXPECT_TRUE(parseCidrRange("::", 128).has_value());
}

TEST(EdgeHeaders, LastXffAddress) {
  auto a = lastXffAddress(" 1.2.3.4 ", 0);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->address, "1.2.3.4");
  EXPECT_TRUE(a->single);
  a = lastXffAddress("1.1.1.1, 2.2.2.2,3.3.3.3", 0);
  EXPECT_EQ(a->address, "3.3.3.3");
  EXPECT_FALSE(a->single);
  a = lastXffAddress("1.1.1.1, 2.2.2.2,3.3.3.3", 1);
  EXPECT_EQ(a->address, "2.2.2.2");
  EXPECT_FALSE(a->single);
  // Skipping leaves one entry, but a proxy wrote the list: not single.
  a = lastXffAddress("1.1.1.1,2.2.2.2", 1);
  EXPECT_EQ(a->address, "1.1.1.1");
  EXPECT_FALSE(a->single);
  EXPECT_FALSE(lastXffAddress("1.1.1.1", 1).has_value());
}

TEST(EdgeHeaders, ClassifyWithRemoteAddress) {
  auto internal = ranges({{"10.0.0.0", 8}});
  OriginRules rules{true, 0, &internal};
  RequestOrigin o = classifyRequestSlow(rules, std::nullopt, "10.1.1.1");
  EXPECT_TRUE(o.internal);
  EXPECT_FALSE(o.edge);
  // A proxy came before: Envoy no longer trusts the peer to be the client.
  o = classifyRequestSlow(rules, "10.2.2.2", "10.1.1.1");
  EXPECT_FALSE(o.internal);
  EXPECT_TRUE(o.edge);
  EXPECT_EQ(o.external_address, "10.1.1.1");
  o = classifyRequestSlow(rules, std::nullopt, "203.0.113.7");
  EXPECT_TRUE(o.edge);
  EXPECT_EQ(o.external_address, "203.0.113.7");
  // With trusted hops the client is the address they wrote, when it is one.
  OriginRules trusted{true, 1, &internal};
  o = classifyRequestSlow(trusted, "198.51.100.1, 203.0.113.9", "10.1.1.1");
  EXPECT_TRUE(o.edge);
  EXPECT_EQ(o.external_address, "203.0.113.9");
  o = classifyRequestSlow(trusted, "garbage", "10.1.1.1");
  EXPECT_EQ(o.external_address, "10.1.1.1");
  OriginRules two{true, 2, &internal};
  o = classifyRequestSlow(two, "198.51.100.1, 203.0.113.9", "10.1.1.1");
  EXPECT_EQ(o.external_address, "198.51.100.1");
  // No internal_address_config: even loopback is an edge client.
  std::vector<CidrRange> none;
  o = classifyRequestSlow({true, 0, &none}, std::nullopt, "127.0.0.1");
  EXPECT_TRUE(o.edge);
  EXPECT_FALSE(o.internal);
}

TEST(EdgeHeaders, ClassifyByForwardedFor) {
  auto internal = ranges({{"10.0.0.0", 8}});
  OriginRules rules{false, 0, &internal};
  // x-forwarded-for decides; the peer does not, and it is never the edge.
  EXPECT_TRUE(classifyRequestSlow(rules, "10.3.3.3", "203.0.113.7").internal);
  EXPECT_FALSE(classifyRequestSlow(rules, std::nullopt, "10.1.1.1").internal);
  EXPECT_FALSE(classifyRequestSlow(rules, "10.3.3.3,10.4.4.4", "10.1.1.1").internal);
  EXPECT_FALSE(classifyRequestSlow(rules, "203.0.113.7", "10.1.1.1").internal);
  EXPECT_FALSE(classifyRequestSlow(rules, "203.0.113.7", "10.1.1.1").edge);
  OriginRules hops{false, 1, &internal};
  EXPECT_FALSE(classifyRequestSlow(hops, "10.3.3.3,10.4.4.4", "10.1.1.1").internal);
}

std::vector<std::string> names(const HeaderMap& h) {
  std::vector<std::string> out;
  for (const auto& e : h.entries()) out.emplace_back(e.name);
  return out;
}

void addAll(HeaderMap& h) {
  h.addView(":method", "GET");
  h.addView(":path", "/");
  h.addView("X-Envoy-Retry-On", "5xx");
  h.addView("x-envoy-max-retries", "9");
  h.addView("x-envoy-upstream-rq-timeout-ms", "1");
  h.addView("x-envoy-upstream-rq-per-try-timeout-ms", "1");
  h.addView("x-envoy-expected-rq-timeout-ms", "1");
  h.addView("x-envoy-force-trace", "1");
  h.addView("x-envoy-ip-tags", "a");
  h.addView("x-envoy-internal", "true");
  h.addView("x-envoy-external-address", "1.2.3.4");
  h.addView("x-envoy-downstream-service-cluster", "c");
  h.addView("x-envoy-downstream-service-node", "n");
  h.addView("x-envoy-decorator-operation", "op");
  h.addView("x-envoy-original-path", "/kept");
  h.addView("accept-encoding", "gzip");
}

TEST(EdgeHeaders, SanitizeEdgeRequest) {
  HeaderMap h;
  addAll(h);
  RequestOrigin o;
  o.edge = true;
  o.external_address = "203.0.113.7";
  sanitizeRequestHeaders(h, o);
  EXPECT_EQ(names(h), (std::vector<std::string>{":method", ":path", "x-envoy-original-path",
                                                "accept-encoding", "x-envoy-external-address"}));
  EXPECT_EQ(h.get("x-envoy-external-address"), "203.0.113.7");
  EXPECT_FALSE(h.has(WellKnownHeader::kXEnvoyExpectedRqTimeoutMs));
}

TEST(EdgeHeaders, SanitizeExternalRequestBehindAProxy) {
  // Not internal, not the edge: the headers only the edge strips stay, and
  // so does the edge's x-envoy-external-address.
  HeaderMap h;
  addAll(h);
  sanitizeRequestHeaders(h, RequestOrigin{});
  EXPECT_EQ(names(h),
            (std::vector<std::string>{
                ":method", ":path", "x-envoy-external-address",
                "x-envoy-downstream-service-cluster", "x-envoy-downstream-service-node",
                "x-envoy-decorator-operation", "x-envoy-original-path", "accept-encoding"}));
}

TEST(EdgeHeaders, SanitizeInternalRequest) {
  HeaderMap h;
  h.addView("x-envoy-internal", "false");
  h.addView("x-envoy-retry-on", "5xx");
  RequestOrigin o;
  o.internal = true;
  sanitizeRequestHeaders(h, o);
  EXPECT_EQ(names(h), (std::vector<std::string>{"x-envoy-retry-on", "x-envoy-internal"}));
  EXPECT_EQ(h.get("x-envoy-internal"), "true");
  // It kept a header the router consumes: the router is told.
  EXPECT_TRUE(h.hasRouterOverrides());
}

TEST(EdgeHeaders, OnlyAnInternalRequestWithARouterHeaderIsMarkedForTheRouter) {
  RequestOrigin internal;
  internal.internal = true;
  for (std::string_view name :
       {"x-envoy-upstream-rq-timeout-ms", "X-Envoy-Upstream-Rq-Per-Try-Timeout-Ms",
        "x-envoy-upstream-rq-timeout-alt-response", "x-envoy-retry-grpc-on", "x-envoy-max-retries",
        "x-envoy-retriable-status-codes", "x-envoy-retriable-header-names",
        "x-envoy-hedge-on-per-try-timeout"}) {
    HeaderMap h;
    h.addView(name, "1");
    sanitizeRequestHeaders(h, internal);
    EXPECT_TRUE(h.hasRouterOverrides()) << name;
    EXPECT_TRUE(h.has(name)) << name;
    // The same header from an external client is removed, and nothing is marked.
    HeaderMap e;
    e.addView(name, "1");
    sanitizeRequestHeaders(e, RequestOrigin{});
    EXPECT_FALSE(e.hasRouterOverrides()) << name;
    EXPECT_FALSE(e.has(name)) << name;
  }
  // Internal x-envoy-* headers the router does not consume mark nothing.
  HeaderMap h;
  h.addView("x-envoy-force-trace", "1");
  h.addView("x-envoy-expected-rq-timeout-ms", "100");
  h.addView("x-envoy-original-path", "/a");
  sanitizeRequestHeaders(h, internal);
  EXPECT_FALSE(h.hasRouterOverrides());
  EXPECT_TRUE(h.has("x-envoy-force-trace"));
}

TEST(EdgeHeaders, NothingToDoLeavesTheMapAlone) {
  HeaderMap h;
  h.addView(":method", "GET");
  h.addView("x-envoy-original-path", "/a");
  h.addView("x-envoy", "short");
  sanitizeRequestHeaders(h, RequestOrigin{});
  EXPECT_EQ(names(h), (std::vector<std::string>{":method", "x-envoy-original-path", "x-envoy"}));
}

}  // namespace
}  // namespace skiff::http
