#include "proxy/router/hash_policy.h"

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <cstdio>

#include "envoy/config/route/v3/route_components.pb.h"
#include "proxy/common/hash.h"

namespace skiff::router {
namespace {

// Compiles a RouteAction's hash_policy given as JSON (the list's text).
Result<HashPolicy> compileJson(const std::string& policies) {
  envoy::config::route::v3::RouteAction action;
  auto st = google::protobuf::util::JsonStringToMessage(
      R"({"cluster":"c","hash_policy":)" + policies + "}", &action);
  EXPECT_TRUE(st.ok()) << st.ToString() << "\n" << policies;
  return HashPolicy::compile(action.hash_policy(), "route.hash_policy");
}

HashPolicy mustCompile(const std::string& policies) {
  auto r = compileJson(policies);
  EXPECT_TRUE(r.isOk()) << (r.isOk() ? "" : r.status().message());
  return r.isOk() ? std::move(*r) : HashPolicy();
}

std::string compileError(const std::string& policies) {
  auto r = compileJson(policies);
  return r.isOk() ? "(compiled)" : r.status().message();
}

struct Request {
  HeaderMap headers;
  explicit Request(const std::string& path,
                   std::vector<std::pair<std::string, std::string>> extra = {}) {
    headers.addCopy(":method", "GET");
    headers.addCopy(":path", path);
    for (auto& [k, v] : extra) headers.addCopy(k, v);
  }
};

uint64_t rotl1(uint64_t h) { return (h << 1) | (h >> 63); }

TEST(HashPolicy, HeaderHashesItsValue) {
  HashPolicy p = mustCompile(R"([{"header":{"header_name":"X-User"}}])");
  EXPECT_EQ(p.generate(Request("/", {{"x-user", "alice"}}).headers, ""), xxHash64("alice"));
  EXPECT_EQ(p.generate(Request("/", {{"X-USER", "alice"}}).headers, ""), xxHash64("alice"));
  EXPECT_EQ(p.generate(Request("/").headers, ""), std::nullopt);
}

TEST(HashPolicy, HeaderValuesHashInSortedOrder) {
  HashPolicy p = mustCompile(R"([{"header":{"header_name":"x-k"}}])");
  auto ab = p.generate(Request("/", {{"x-k", "b"}, {"x-k", "a"}}).headers, "");
  auto ba = p.generate(Request("/", {{"x-k", "a"}, {"x-k", "b"}}).headers, "");
  EXPECT_EQ(ab, ba);
  EXPECT_EQ(ab, xxHash64("ab"));
}

TEST(HashPolicy, HeaderRegexRewrite) {
  // Only the user part of "user@domain" counts.
  HashPolicy p = mustCompile(
      R"([{"header":{"header_name":"x-k","regex_rewrite":{"pattern":{"regex":"@.*"},"substitution":""}}}])");
  EXPECT_EQ(p.generate(Request("/", {{"x-k", "bob@a.example"}}).headers, ""), xxHash64("bob"));
  EXPECT_EQ(p.generate(Request("/", {{"x-k", "bob@b.example"}}).headers, ""), xxHash64("bob"));
  EXPECT_EQ(
      compileError(
          R"([{"header":{"header_name":"x-k","regex_rewrite":{"pattern":{"regex":"("},"substitution":""}}}])"),
      "route.hash_policy[0].header.regex_rewrite.pattern.regex: invalid RE2: missing ): (");
}

TEST(HashPolicy, Cookie) {
  HashPolicy p = mustCompile(R"([{"cookie":{"name":"session"}}])");
  EXPECT_EQ(p.generate(Request("/", {{"cookie", "a=1; session=abc; b=2"}}).headers, ""),
            xxHash64("abc"));
  // A quoted value is hashed without its quotes; a later Cookie field counts.
  EXPECT_EQ(
      p.generate(Request("/", {{"cookie", "a=1"}, {"cookie", "session=\"abc\""}}).headers, ""),
      xxHash64("abc"));
  EXPECT_EQ(p.generate(Request("/", {{"cookie", "sessionx=abc"}}).headers, ""), std::nullopt);
  EXPECT_EQ(p.generate(Request("/", {{"cookie", "session="}}).headers, ""), std::nullopt);
  // Without a ttl no cookie is made, and its path would do nothing.
  EXPECT_EQ(compileError(R"([{"cookie":{"name":"s","path":"/"}}])"),
            "route.hash_policy[0].cookie.path: has no effect without ttl");
}

class FakeSink : public CookieSink {
 public:
  std::string downstreamLocalAddress() const override { return "127.0.0.1:10000"; }
  void setCookie(std::string value) override { cookies.push_back(std::move(value)); }
  std::vector<std::string> cookies;
};

TEST(HashPolicy, CookieWithTtlIsMadeWhenMissing) {
  HashPolicy p = mustCompile(
      R"([{"cookie":{"name":"session","ttl":"60s","path":"/app","attributes":[{"name":"SameSite","value":"Lax"},{"name":"Secure"}]}}])");
  FakeSink sink;
  auto hash = p.generate(Request("/").headers, "127.0.0.2:5555", &sink);
  // Envoy's value: the hex xxHash64 of the peer's and the local address.
  char made[17];
  std::snprintf(made, sizeof(made), "%016llx",
                static_cast<unsigned long long>(xxHash64("127.0.0.2:5555127.0.0.1:10000")));
  ASSERT_EQ(sink.cookies.size(), 1u);
  EXPECT_EQ(sink.cookies[0], std::string("session=\"") + made +
                                 "\"; Max-Age=60; Path=/app; SameSite=Lax; Secure; HttpOnly");
  // Hashed as the cookie will be when the client sends it back.
  EXPECT_EQ(hash, xxHash64(made));
  EXPECT_EQ(p.generate(Request("/", {{"cookie", std::string("session=") + made}}).headers,
                       "10.0.0.9:1", &sink),
            hash);
  EXPECT_EQ(sink.cookies.size(), 1u);  // The request had one: none made.
  // No sink (a caller that cannot set one): no hash.
  EXPECT_EQ(p.generate(Request("/").headers, "127.0.0.2:5555"), std::nullopt);
  // A ttl of 0 makes a session cookie: no Max-Age.
  FakeSink session;
  mustCompile(R"([{"cookie":{"name":"s","ttl":"0s"}}])")
      .generate(Request("/").headers, "127.0.0.2:5555", &session);
  ASSERT_EQ(session.cookies.size(), 1u);
  EXPECT_EQ(session.cookies[0], std::string("s=\"") + made + "\"; HttpOnly");
}

TEST(HashPolicy, QueryParameter) {
  HashPolicy p = mustCompile(R"([{"query_parameter":{"name":"user"}}])");
  EXPECT_EQ(p.generate(Request("/p?x=1&user=bob&user=al").headers, ""), xxHash64("bob"));
  EXPECT_EQ(p.generate(Request("/p?user").headers, ""), xxHash64(""));
  EXPECT_EQ(p.generate(Request("/p?users=bob").headers, ""), std::nullopt);
  EXPECT_EQ(p.generate(Request("/user=bob").headers, ""), std::nullopt);
  EXPECT_EQ(queryParameter("/p?a=%20b", "a"), "%20b");  // Not decoded, as Envoy.
}

TEST(HashPolicy, SourceIp) {
  HashPolicy p = mustCompile(R"([{"connection_properties":{"source_ip":true}}])");
  EXPECT_EQ(p.generate(Request("/").headers, "127.0.0.2:5555"), xxHash64("127.0.0.2"));
  EXPECT_EQ(p.generate(Request("/").headers, "[::1]:80"), xxHash64("::1"));
  // source_ip: false adds nothing, as in Envoy.
  EXPECT_TRUE(mustCompile(R"([{"connection_properties":{"source_ip":false}}])").methods().empty());
}

TEST(HashPolicy, EntriesCombineAndTerminalStops) {
  const std::string header = R"({"header":{"header_name":"x-a"}})";
  const std::string query = R"({"query_parameter":{"name":"q"}})";
  Request both("/?q=2", {{"x-a", "1"}});
  HashPolicy p = mustCompile("[" + header + "," + query + "]");
  EXPECT_EQ(p.generate(both.headers, ""), rotl1(xxHash64("1")) ^ xxHash64("2"));
  // A missing entry is skipped.
  EXPECT_EQ(p.generate(Request("/?q=2").headers, ""), xxHash64("2"));
  // The same entry twice does not cancel out.
  EXPECT_NE(mustCompile("[" + header + "," + header + "]").generate(both.headers, ""), 0u);

  HashPolicy terminal =
      mustCompile(R"([{"header":{"header_name":"x-a"},"terminal":true},)" + query + "]");
  EXPECT_EQ(terminal.generate(both.headers, ""), xxHash64("1"));
  // A terminal entry that yields nothing does not stop the list.
  EXPECT_EQ(terminal.generate(Request("/?q=2").headers, ""), xxHash64("2"));
}

TEST(HashPolicy, RefusedByPath) {
  EXPECT_EQ(compileError(R"([{"filter_state":{"key":"k"}}])"),
            "route.hash_policy[0].filter_state: is not supported");
  EXPECT_EQ(compileError(R"([{"header":{"header_name":"x"}},{"terminal":true}])"),
            "route.hash_policy[1]: one of header, cookie, connection_properties, query_parameter "
            "is required");
}

}  // namespace
}  // namespace skiff::router
