#include "proxy/router/route_table.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/wrappers.pb.h>
#include <gtest/gtest.h>

#include <array>
#include <map>

#include "envoy/config/route/v3/route.pb.h"

namespace skiff::router {
namespace {

const std::string kPath = "rc";

Result<std::shared_ptr<const RouteTable>> compileJson(const std::string& json) {
  envoy::config::route::v3::RouteConfiguration config;
  auto st = google::protobuf::util::JsonStringToMessage(json, &config);
  EXPECT_TRUE(st.ok()) << st.ToString() << "\n" << json;
  return RouteTable::compile(config, kPath);
}

std::shared_ptr<const RouteTable> mustCompile(const std::string& json) {
  auto r = compileJson(json);
  EXPECT_TRUE(r.isOk()) << (r.isOk() ? "" : r.status().message());
  return r.isOk() ? r.value() : nullptr;
}

std::string compileError(const std::string& json) {
  auto r = compileJson(json);
  if (r.isOk()) return "(compiled)";
  EXPECT_EQ(r.status().source(), ErrorSource::kConfig);
  return r.status().message();
}

// One vhost with domain "*" and the given routes.
std::string oneHost(const std::string& routes) {
  return R"({"name":"t","virtual_hosts":[{"name":"vh","domains":["*"],"routes":[)" + routes +
         "]}]}";
}

struct Request {
  HeaderMap headers;
  explicit Request(const std::string& path, const std::string& host = "example.com",
                   const std::string& method = "GET",
                   std::vector<std::pair<std::string, std::string>> extra = {}) {
    headers.addCopy(":method", method);
    headers.addCopy(":scheme", "http");
    headers.addCopy(":authority", host);
    headers.addCopy(":path", path);
    for (auto& [k, v] : extra) headers.addCopy(k, v);
  }
};

// The name of the route that matches, or "-" for none.
std::string matchName(const RouteTable& table, const Request& req) {
  const RouteEntry* e = table.match(req.headers, 0);
  return e ? e->name() : "-";
}

TEST(RouteTableTest, PrefixPathRegexSeparatedPrefix) {
  auto t = mustCompile(oneHost(R"(
    {"name":"exact","match":{"path":"/exact"},"route":{"cluster":"c"}},
    {"name":"regex","match":{"safe_regex":{"regex":"/re/[0-9]+"}},"route":{"cluster":"c"}},
    {"name":"sep","match":{"path_separated_prefix":"/api"},"route":{"cluster":"c"}},
    {"name":"pre","match":{"prefix":"/p"},"route":{"cluster":"c"}})"));
  ASSERT_TRUE(t);
  EXPECT_EQ(matchName(*t, Request("/exact")), "exact");
  EXPECT_EQ(matchName(*t, Request("/exact?x=1")), "exact");  // query ignored
  EXPECT_EQ(matchName(*t, Request("/exactly")), "-");
  EXPECT_EQ(matchName(*t, Request("/EXACT")), "-");  // case_sensitive by default
  EXPECT_EQ(matchName(*t, Request("/re/123")), "regex");
  EXPECT_EQ(matchName(*t, Request("/re/123?q")), "regex");  // full match without query
  EXPECT_EQ(matchName(*t, Request("/re/12a")), "-");
  EXPECT_EQ(matchName(*t, Request("/api")), "sep");
  EXPECT_EQ(matchName(*t, Request("/api/v1")), "sep");
  EXPECT_EQ(matchName(*t, Request("/api?x")), "sep");
  EXPECT_EQ(matchName(*t, Request("/apix")), "-");
  EXPECT_EQ(matchName(*t, Request("/px")), "pre");
  EXPECT_EQ(matchName(*t, Request("/x")), "-");
}

TEST(RouteTableTest, RoutesTriedInOrder) {
  auto t = mustCompile(oneHost(R"(
    {"name":"a","match":{"prefix":"/"},"route":{"cluster":"a"}},
    {"name":"b","match":{"prefix":"/b"},"route":{"cluster":"b"}})"));
  EXPECT_EQ(matchName(*t, Request("/b")), "a");
}

// Long runs of plain prefix/path routes are looked up through an index; the
// first route in order must still win, across runs and scanned routes.
TEST(RouteTableTest, IndexedRunsKeepRouteOrder) {
  std::string routes;
  auto add = [&](const std::string& name, const std::string& match) {
    if (!routes.empty()) routes += ",";
    routes += R"({"name":")" + name + R"(","match":{)" + match + R"(},"route":{"cluster":"c"}})";
  };
  for (int i = 0; i < 20; ++i)
    add("a" + std::to_string(i), R"("prefix":"/a)" + std::to_string(i) + R"(")");
  add("ab", R"("prefix":"/a1/b")");  // shadowed by a1
  add("exact", R"("path":"/exact")");
  add("hdr", R"("prefix":"/h","headers":[{"name":"x","present_match":true}])");
  for (int i = 0; i < 20; ++i)
    add("b" + std::to_string(i), R"("prefix":"/b)" + std::to_string(i) + R"(")");
  add("h", R"("prefix":"/h")");
  add("exact2", R"("path":"/exact")");
  add("root", R"("prefix":"/")");
  auto t = mustCompile(oneHost(routes));
  ASSERT_TRUE(t);
  EXPECT_EQ(matchName(*t, Request("/a1/b")), "a1");
  EXPECT_EQ(matchName(*t, Request("/a15?x")), "a1");  // "/a1" comes before "/a15"
  EXPECT_EQ(matchName(*t, Request("/a7")), "a7");
  EXPECT_EQ(matchName(*t, Request("/exact")), "exact");
  EXPECT_EQ(matchName(*t, Request("/exact/no")), "root");
  EXPECT_EQ(matchName(*t, Request("/h", "h", "GET", {{"x", "1"}})), "hdr");
  EXPECT_EQ(matchName(*t, Request("/h")), "h");
  EXPECT_EQ(matchName(*t, Request("/b19/z")), "b1");
  EXPECT_EQ(matchName(*t, Request("/b2")), "b2");
  EXPECT_EQ(matchName(*t, Request("/zzz")), "root");
}

TEST(RouteTableTest, CaseInsensitivePaths) {
  auto t = mustCompile(oneHost(R"(
    {"name":"p","match":{"prefix":"/Foo","case_sensitive":false},"route":{"cluster":"c"}},
    {"name":"x","match":{"path":"/Bar","case_sensitive":false},"route":{"cluster":"c"}},
    {"name":"s","match":{"path_separated_prefix":"/Baz","case_sensitive":false},"route":{"cluster":"c"}})"));
  EXPECT_EQ(matchName(*t, Request("/fOO/x")), "p");
  EXPECT_EQ(matchName(*t, Request("/bar")), "x");
  EXPECT_EQ(matchName(*t, Request("/BAZ/1")), "s");
}

TEST(RouteTableTest, GrpcMatchTakesOnlyGrpcRequests) {
  auto t = mustCompile(oneHost(R"(
    {"name":"g","match":{"prefix":"/","grpc":{}},"route":{"cluster":"c"}},
    {"name":"other","match":{"prefix":"/"},"route":{"cluster":"c"}})"));
  EXPECT_EQ(matchName(*t, Request("/svc/M", "example.com", "POST",
                                  {{"content-type", "application/grpc"}})),
            "g");
  EXPECT_EQ(matchName(*t, Request("/svc/M", "example.com", "POST",
                                  {{"content-type", "application/grpc+proto"}})),
            "g");
  EXPECT_EQ(matchName(*t, Request("/svc/M", "example.com", "POST",
                                  {{"content-type", "application/grpc-web"}})),
            "other");
  EXPECT_EQ(matchName(*t, Request("/svc/M")), "other");
}

TEST(RouteTableTest, ConnectMatcherTakesOnlyConnect) {
  auto t = mustCompile(oneHost(R"(
    {"name":"other","match":{"prefix":"/"},"route":{"cluster":"c"}},
    {"name":"tunnel","match":{"connect_matcher":{}},"route":{"cluster":"c",
     "upgrade_configs":[{"upgrade_type":"CONNECT","connect_config":{}}]}})"));
  HeaderMap connect;
  connect.addCopy(":method", "CONNECT");
  connect.addCopy(":authority", "db.example:5432");
  const RouteEntry* e = t->match(connect, 0);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->name(), "tunnel");
  EXPECT_TRUE(e->terminatesConnect());
  EXPECT_EQ(e->upgradeEnabled("connect"), true);
  EXPECT_EQ(e->upgradeEnabled("websocket"), std::nullopt);
  EXPECT_EQ(matchName(*t, Request("/x")), "other");
}

TEST(RouteTableTest, UpgradeConfigs) {
  auto t = mustCompile(oneHost(R"(
    {"name":"off","match":{"prefix":"/off"},"route":{"cluster":"c",
     "upgrade_configs":[{"upgrade_type":"WebSocket","enabled":false}]}},
    {"name":"on","match":{"prefix":"/"},"route":{"cluster":"c",
     "upgrade_configs":[{"upgrade_type":"websocket"},{"upgrade_type":"CONNECT"}]}})"));
  const RouteEntry* off = t->match(Request("/off").headers, 0);
  ASSERT_NE(off, nullptr);
  EXPECT_EQ(off->upgradeEnabled("websocket"), false);  // Case-insensitive.
  const RouteEntry* on = t->match(Request("/").headers, 0);
  ASSERT_NE(on, nullptr);
  EXPECT_EQ(on->upgradeEnabled("WEBSOCKET"), true);
  EXPECT_FALSE(on->terminatesConnect());  // CONNECT without connect_config is proxied.
  EXPECT_NE(compileError(oneHost(R"({"match":{"prefix":"/"},"route":{"cluster":"c",
     "upgrade_configs":[{"upgrade_type":"websocket","connect_config":{}}]}})"))
                .find("upgrade_configs[0].connect_config: only for upgrade_type CONNECT"),
            std::string::npos);
  EXPECT_NE(compileError(oneHost(R"({"match":{"prefix":"/"},"route":{"cluster":"c",
     "upgrade_configs":[{"upgrade_type":""}]}})"))
                .find("upgrade_configs[0].upgrade_type: must not be empty"),
            std::string::npos);
}

TEST(RouteTableTest, HeaderMatchers) {
  auto t = mustCompile(oneHost(R"(
    {"name":"exact","match":{"prefix":"/","headers":[{"name":"x-a","string_match":{"exact":"v"}}]},"route":{"cluster":"c"}},
    {"name":"ic","match":{"prefix":"/","headers":[{"name":"x-b","string_match":{"exact":"VaL","ignore_case":true}}]},"route":{"cluster":"c"}},
    {"name":"prefix","match":{"prefix":"/","headers":[{"name":"x-c","string_match":{"prefix":"ab"}}]},"route":{"cluster":"c"}},
    {"name":"suffix","match":{"prefix":"/","headers":[{"name":"x-d","string_match":{"suffix":"yz"}}]},"route":{"cluster":"c"}},
    {"name":"contains","match":{"prefix":"/","headers":[{"name":"x-e","string_match":{"contains":"mid","ignore_case":true}}]},"route":{"cluster":"c"}},
    {"name":"regex","match":{"prefix":"/","headers":[{"name":"x-f","string_match":{"safe_regex":{"regex":"[0-9]{3}"}}}]},"route":{"cluster":"c"}},
    {"name":"lexact","match":{"prefix":"/","headers":[{"name":"x-g","exact_match":"v"}]},"route":{"cluster":"c"}},
    {"name":"lprefix","match":{"prefix":"/","headers":[{"name":"x-h","prefix_match":"ab"}]},"route":{"cluster":"c"}},
    {"name":"lsuffix","match":{"prefix":"/","headers":[{"name":"x-i","suffix_match":"yz"}]},"route":{"cluster":"c"}},
    {"name":"lcontains","match":{"prefix":"/","headers":[{"name":"x-j","contains_match":"mid"}]},"route":{"cluster":"c"}},
    {"name":"lregex","match":{"prefix":"/","headers":[{"name":"x-k","safe_regex_match":{"regex":"a+"}}]},"route":{"cluster":"c"}},
    {"name":"range","match":{"prefix":"/","headers":[{"name":"x-l","range_match":{"start":"-10","end":"0"}}]},"route":{"cluster":"c"}},
    {"name":"method","match":{"prefix":"/","headers":[{"name":":method","string_match":{"exact":"POST"}}]},"route":{"cluster":"c"}},
    {"name":"present","match":{"prefix":"/present","headers":[{"name":"x-m","present_match":true}]},"route":{"cluster":"c"}},
    {"name":"absent","match":{"prefix":"/present","headers":[{"name":"x-m","present_match":false}]},"route":{"cluster":"c"}},
    {"name":"inverted","match":{"prefix":"/inv","headers":[{"name":"x-n","string_match":{"exact":"no"},"invert_match":true}]},"route":{"cluster":"c"}},
    {"name":"missing-empty","match":{"prefix":"/inv","headers":[{"name":"x-o","string_match":{"exact":""},"treat_missing_header_as_empty":true}]},"route":{"cluster":"c"}},
    {"name":"none","match":{"prefix":"/"},"route":{"cluster":"c"}})"));
  auto with = [&](const std::string& k, const std::string& v, const std::string& path = "/") {
    return matchName(*t, Request(path, "h", "GET", {{k, v}}));
  };
  EXPECT_EQ(with("x-a", "v"), "exact");
  EXPECT_EQ(with("X-A", "v"), "exact");  // names are case-insensitive
  EXPECT_EQ(with("x-a", "V"), "none");
  EXPECT_EQ(with("x-b", "val"), "ic");
  EXPECT_EQ(with("x-c", "abc"), "prefix");
  EXPECT_EQ(with("x-c", "xab"), "none");
  EXPECT_EQ(with("x-d", "xyz"), "suffix");
  EXPECT_EQ(with("x-e", "aMIDb"), "contains");
  EXPECT_EQ(with("x-f", "123"), "regex");
  EXPECT_EQ(with("x-f", "1234"), "none");
  EXPECT_EQ(with("x-g", "v"), "lexact");
  EXPECT_EQ(with("x-h", "abz"), "lprefix");
  EXPECT_EQ(with("x-i", "ayz"), "lsuffix");
  EXPECT_EQ(with("x-j", "amidb"), "lcontains");
  EXPECT_EQ(with("x-j", "aMIDb"), "none");  // legacy matchers are case-sensitive
  EXPECT_EQ(with("x-k", "aaa"), "lregex");
  EXPECT_EQ(with("x-l", "-1"), "range");
  EXPECT_EQ(with("x-l", "0"), "none");  // end is exclusive
  EXPECT_EQ(with("x-l", "-10"), "range");
  EXPECT_EQ(with("x-l", "abc"), "none");
  EXPECT_EQ(matchName(*t, Request("/", "h", "POST")), "method");
  EXPECT_EQ(with("x-m", "", "/present"), "present");
  EXPECT_EQ(matchName(*t, Request("/present")), "absent");
  EXPECT_EQ(with("x-n", "yes", "/inv"), "inverted");
  EXPECT_EQ(with("x-n", "no", "/inv"), "missing-empty");
  // A missing header does not match an inverted matcher; treat_missing_header_as_empty does.
  EXPECT_EQ(matchName(*t, Request("/inv")), "missing-empty");
  EXPECT_EQ(with("x-o", "z", "/inv"), "none");
}

TEST(RouteTableTest, RepeatedHeaderValuesAreJoined) {
  auto t = mustCompile(oneHost(R"(
    {"name":"j","match":{"prefix":"/","headers":[{"name":"x-a","string_match":{"exact":"1,2"}}]},"route":{"cluster":"c"}})"));
  EXPECT_EQ(matchName(*t, Request("/", "h", "GET", {{"x-a", "1"}, {"x-a", "2"}})), "j");
  EXPECT_EQ(matchName(*t, Request("/", "h", "GET", {{"x-a", "1"}})), "-");
}

TEST(RouteTableTest, QueryParameters) {
  auto t = mustCompile(oneHost(R"(
    {"name":"eq","match":{"prefix":"/","query_parameters":[{"name":"a","string_match":{"exact":"1"}}]},"route":{"cluster":"c"}},
    {"name":"re","match":{"prefix":"/","query_parameters":[{"name":"b","string_match":{"safe_regex":{"regex":"x.*"}}}]},"route":{"cluster":"c"}},
    {"name":"present","match":{"prefix":"/","query_parameters":[{"name":"c","present_match":true}]},"route":{"cluster":"c"}},
    {"name":"none","match":{"prefix":"/"},"route":{"cluster":"c"}})"));
  EXPECT_EQ(matchName(*t, Request("/?a=1")), "eq");
  EXPECT_EQ(matchName(*t, Request("/?z=9&a=1")), "eq");
  EXPECT_EQ(matchName(*t, Request("/?a=2&a=1")), "none");  // first occurrence counts
  EXPECT_EQ(matchName(*t, Request("/?b=xyz")), "re");
  EXPECT_EQ(matchName(*t, Request("/?c")), "present");
  EXPECT_EQ(matchName(*t, Request("/?c=")), "present");
  EXPECT_EQ(matchName(*t, Request("/?cc=1")), "none");
  EXPECT_EQ(matchName(*t, Request("/#a=1")), "none");  // fragment is not a query
}

TEST(RouteTableTest, DomainPrecedence) {
  auto t = mustCompile(R"({"virtual_hosts":[
    {"name":"any","domains":["*"],"routes":[{"name":"any","match":{"prefix":"/"},"route":{"cluster":"c"}}]},
    {"name":"pre","domains":["foo.*"],"routes":[{"name":"pre","match":{"prefix":"/"},"route":{"cluster":"c"}}]},
    {"name":"longpre","domains":["foo.bar.*"],"routes":[{"name":"longpre","match":{"prefix":"/"},"route":{"cluster":"c"}}]},
    {"name":"suf","domains":["*.com"],"routes":[{"name":"suf","match":{"prefix":"/"},"route":{"cluster":"c"}}]},
    {"name":"longsuf","domains":["*.example.com"],"routes":[{"name":"longsuf","match":{"prefix":"/"},"route":{"cluster":"c"}}]},
    {"name":"exact","domains":["www.Example.com","port.test:8080"],"routes":[{"name":"exact","match":{"prefix":"/"},"route":{"cluster":"c"}}]},
    {"name":"noport","domains":["np.test"],"routes":[{"name":"noport","match":{"prefix":"/"},"route":{"cluster":"c"}}]}
  ]})");
  ASSERT_TRUE(t);
  EXPECT_EQ(matchName(*t, Request("/", "www.example.com")), "exact");
  EXPECT_EQ(matchName(*t, Request("/", "WWW.EXAMPLE.COM")), "exact");
  EXPECT_EQ(matchName(*t, Request("/", "api.example.com")), "longsuf");
  EXPECT_EQ(matchName(*t, Request("/", "example.com")), "suf");  // "*.example.com" needs one char
  EXPECT_EQ(matchName(*t, Request("/", "foo.example.com")), "longsuf");  // suffix beats prefix
  EXPECT_EQ(matchName(*t, Request("/", "foo.bar.org")), "longpre");
  EXPECT_EQ(matchName(*t, Request("/", "foo.org")), "pre");
  EXPECT_EQ(matchName(*t, Request("/", "other.org")), "any");
  EXPECT_EQ(matchName(*t, Request("/", "port.test:8080")), "exact");
  EXPECT_EQ(matchName(*t, Request("/", "port.test")), "any");
  EXPECT_EQ(matchName(*t, Request("/", "np.test:9000")), "noport");  // then without the port
  EXPECT_EQ(matchName(*t, Request("/", "www.example.com:443")), "exact");
  EXPECT_EQ(matchName(*t, Request("/", "[::1]:80")), "any");
}

TEST(RouteTableTest, NoCatchAllMeansNoRoute) {
  auto t = mustCompile(R"({"virtual_hosts":[
    {"name":"a","domains":["a.test"],"routes":[{"match":{"prefix":"/"},"route":{"cluster":"c"}}]}]})");
  EXPECT_EQ(t->match(Request("/", "b.test").headers, 0), nullptr);
  EXPECT_NE(t->match(Request("/", "a.test").headers, 0), nullptr);
}

TEST(RouteTableTest, ClusterActions) {
  auto t = mustCompile(oneHost(R"(
    {"name":"c","match":{"prefix":"/c"},"route":{"cluster":"cl","timeout":"2.5s","auto_host_rewrite":true}},
    {"name":"h","match":{"prefix":"/h"},"route":{"cluster_header":"X-Cluster","timeout":"0s"}},
    {"name":"w","match":{"prefix":"/w"},"route":{"weighted_clusters":{"clusters":[
      {"name":"w1","weight":1},{"name":"w2","weight":3},{"cluster_header":"x-cluster","weight":1}]}}})"));
  const RouteEntry* c = t->match(Request("/c").headers, 0);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->kind(), RouteEntry::Kind::kCluster);
  Request r("/h", "h", "GET", {{"x-cluster", "from-header"}});
  EXPECT_EQ(c->clusterName(r.headers, 0), "cl");
  EXPECT_EQ(c->timeout(), std::chrono::milliseconds(2500));
  EXPECT_TRUE(c->autoHostRewrite());
  const RouteEntry* h = t->match(r.headers, 0);
  EXPECT_EQ(h->clusterName(r.headers, 0), "from-header");
  EXPECT_EQ(h->clusterName(Request("/h").headers, 0), "");
  EXPECT_EQ(h->timeout(), std::chrono::milliseconds(0));
  EXPECT_FALSE(h->autoHostRewrite());
  const RouteEntry* w = t->match(Request("/w").headers, 0);
  EXPECT_EQ(w->timeout(), std::chrono::milliseconds(15000));
  std::map<std::string, int> counts;
  for (uint64_t i = 0; i < 500; ++i) counts[std::string(w->clusterName(r.headers, i))]++;
  EXPECT_EQ(counts["w1"], 100);
  EXPECT_EQ(counts["w2"], 300);
  EXPECT_EQ(counts["from-header"], 100);
  EXPECT_EQ(w->clusterName(r.headers, 0), "w1");
  EXPECT_EQ(w->clusterName(r.headers, 1), "w2");
  EXPECT_EQ(w->clusterName(r.headers, 4), "from-header");
  EXPECT_EQ(w->clusterName(r.headers, 5), "w1");
  std::vector<std::string> clusters = t->referencedClusters();
  EXPECT_EQ(clusters, (std::vector<std::string>{"cl", "w1", "w2"}));
}

TEST(RouteTableTest, ClusterNotFoundResponseCode) {
  auto t = mustCompile(oneHost(R"(
    {"name":"d","match":{"prefix":"/d"},"route":{"cluster":"c"}},
    {"name":"u","match":{"prefix":"/u"},"route":{"cluster":"c",
      "cluster_not_found_response_code":"SERVICE_UNAVAILABLE"}},
    {"name":"n","match":{"prefix":"/n"},"route":{"cluster_header":"x-cluster",
      "cluster_not_found_response_code":"NOT_FOUND"}},
    {"name":"i","match":{"prefix":"/i"},"route":{"weighted_clusters":{"clusters":[
      {"name":"w","weight":1}]},"cluster_not_found_response_code":"INTERNAL_SERVER_ERROR"}})"));
  EXPECT_EQ(t->match(Request("/d").headers, 0)->clusterNotFoundStatus(), 503u);
  EXPECT_EQ(t->match(Request("/u").headers, 0)->clusterNotFoundStatus(), 503u);
  EXPECT_EQ(t->match(Request("/n").headers, 0)->clusterNotFoundStatus(), 404u);
  EXPECT_EQ(t->match(Request("/i").headers, 0)->clusterNotFoundStatus(), 500u);

  // A value this build does not know (an xDS server ahead of it) is refused.
  envoy::config::route::v3::RouteConfiguration config;
  auto* route = config.add_virtual_hosts()->add_routes();
  config.mutable_virtual_hosts(0)->set_name("vh");
  config.mutable_virtual_hosts(0)->add_domains("*");
  route->mutable_match()->set_prefix("/");
  route->mutable_route()->set_cluster("c");
  route->mutable_route()->set_cluster_not_found_response_code(
      static_cast<envoy::config::route::v3::RouteAction::ClusterNotFoundResponseCode>(7));
  auto r = RouteTable::compile(config, kPath);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().message(),
            "rc.virtual_hosts[0].routes[0].route.cluster_not_found_response_code: unknown value 7");
}

TEST(RouteTableTest, GrpcTimeouts) {
  auto t = mustCompile(oneHost(R"(
    {"name":"plain","match":{"prefix":"/plain"},"route":{"cluster":"c"}},
    {"name":"old","match":{"prefix":"/old"},"route":{"cluster":"c","timeout":"2s",
      "max_grpc_timeout":"1.5s","grpc_timeout_offset":"0.010s"}},
    {"name":"nocap","match":{"prefix":"/nocap"},"route":{"cluster":"c","max_grpc_timeout":"0s"}},
    {"name":"new","match":{"prefix":"/new"},"route":{"cluster":"c","max_stream_duration":{
      "max_stream_duration":"30s","grpc_timeout_header_max":"0s",
      "grpc_timeout_header_offset":"0.0009s"}}},
    {"name":"empty","match":{"prefix":"/empty"},"route":{"cluster":"c","max_stream_duration":{}}})"));
  using std::chrono::milliseconds;
  const RouteTimeouts& plain = t->match(Request("/plain").headers, 0)->timeouts();
  EXPECT_EQ(plain.timeout, milliseconds(15000));
  EXPECT_EQ(plain.max_grpc_timeout, std::nullopt);
  EXPECT_EQ(plain.grpc_timeout_offset, std::nullopt);
  EXPECT_FALSE(plain.has_max_stream_duration);

  const RouteTimeouts& old = t->match(Request("/old").headers, 0)->timeouts();
  EXPECT_EQ(old.timeout, milliseconds(2000));
  EXPECT_EQ(old.max_grpc_timeout, milliseconds(1500));
  EXPECT_EQ(old.grpc_timeout_offset, milliseconds(10));
  EXPECT_FALSE(old.has_max_stream_duration);

  // Set to zero is not the same as unset: zero means no cap.
  EXPECT_EQ(t->match(Request("/nocap").headers, 0)->timeouts().max_grpc_timeout, milliseconds(0));

  const RouteTimeouts& now = t->match(Request("/new").headers, 0)->timeouts();
  EXPECT_TRUE(now.has_max_stream_duration);
  EXPECT_EQ(now.max_stream_duration, milliseconds(30000));
  EXPECT_EQ(now.grpc_timeout_header_max, milliseconds(0));
  EXPECT_EQ(now.grpc_timeout_header_offset, milliseconds(0));  // whole milliseconds, as Envoy

  const RouteTimeouts& empty = t->match(Request("/empty").headers, 0)->timeouts();
  EXPECT_TRUE(empty.has_max_stream_duration);
  EXPECT_EQ(empty.max_stream_duration, std::nullopt);
  EXPECT_EQ(empty.grpc_timeout_header_max, std::nullopt);
}

TEST(RouteTableTest, NegativeTimeoutsAreRefused) {
  auto action = [](const std::string& a) {
    return compileError(oneHost(R"({"match":{"prefix":"/"},"route":{"cluster":"c",)" + a + "}}"));
  };
  const std::string at = "rc.virtual_hosts[0].routes[0].route.";
  EXPECT_EQ(action(R"("timeout":"-1s")"), at + "timeout: must not be negative");
  EXPECT_EQ(action(R"("max_grpc_timeout":"-1s")"), at + "max_grpc_timeout: must not be negative");
  EXPECT_EQ(action(R"("grpc_timeout_offset":"-0.5s")"),
            at + "grpc_timeout_offset: must not be negative");
  EXPECT_EQ(action(R"("max_stream_duration":{"grpc_timeout_header_max":"-2s"})"),
            at + "max_stream_duration.grpc_timeout_header_max: must not be negative");
  EXPECT_EQ(action(R"("max_stream_duration":{"grpc_timeout_header_offset":"-2s"})"),
            at + "max_stream_duration.grpc_timeout_header_offset: must not be negative");
  EXPECT_EQ(action(R"("max_stream_duration":{"max_stream_duration":"-2s"})"),
            at + "max_stream_duration.max_stream_duration: must not be negative");
}

TEST(RouteTableTest, TotalWeightMustMatch) {
  EXPECT_EQ(compileError(oneHost(R"({"match":{"prefix":"/"},"route":{"weighted_clusters":{
      "total_weight":10,"clusters":[{"name":"a","weight":1}]}}})")),
            "rc.virtual_hosts[0].routes[0].route.weighted_clusters.total_weight: is 10 but the "
            "weights sum to 1");
  EXPECT_TRUE(compileJson(oneHost(R"({"match":{"prefix":"/"},"route":{"weighted_clusters":{
      "total_weight":3,"clusters":[{"name":"a","weight":1},{"name":"b","weight":2}]}}})")));
}

std::string rewrittenPath(const RouteTable& t, const std::string& path) {
  Request r(path);
  const RouteEntry* e = t.match(r.headers, 0);
  if (!e) return "-";
  e->finalizeRequestHeaders(r.headers);
  return std::string(r.headers.path()) + " @" + std::string(r.headers.authority());
}

TEST(RouteTableTest, PathAndHostRewrites) {
  auto t = mustCompile(oneHost(R"J(
    {"match":{"prefix":"/old/"},"route":{"cluster":"c","prefix_rewrite":"/new/","host_rewrite_literal":"up.internal"}},
    {"match":{"path":"/exact"},"route":{"cluster":"c","prefix_rewrite":"/whole"}},
    {"match":{"safe_regex":{"regex":"/re/.*"}},"route":{"cluster":"c","regex_rewrite":{"pattern":{"regex":"^/re/(\\w+)/(\\w+)"},"substitution":"/\\2/\\1"}}},
    {"match":{"prefix":"/CI/","case_sensitive":false},"route":{"cluster":"c","prefix_rewrite":"/"}},
    {"match":{"prefix":"/"},"route":{"cluster":"c","regex_rewrite":{"pattern":{"regex":"a"},"substitution":"b"}}})J"));
  EXPECT_EQ(rewrittenPath(*t, "/old/x?q=1"), "/new/x?q=1 @up.internal");
  EXPECT_EQ(rewrittenPath(*t, "/exact?a"), "/whole?a @example.com");
  EXPECT_EQ(rewrittenPath(*t, "/re/one/two?k=a"), "/two/one?k=a @example.com");
  EXPECT_EQ(rewrittenPath(*t, "/ci/x"), "/x @example.com");
  EXPECT_EQ(rewrittenPath(*t, "/banana?a=a"), "/bbnbnb?a=a @example.com");  // query kept
}

TEST(RouteTableTest, RewritesKeepTheOriginalPathWhenAsked) {
  auto t = mustCompile(oneHost(R"J(
    {"match":{"prefix":"/old/"},"route":{"cluster":"c","prefix_rewrite":"/new/"}},
    {"match":{"prefix":"/same/"},"route":{"cluster":"c","regex_rewrite":{"pattern":{"regex":"^/x"},"substitution":"/y"}}},
    {"match":{"prefix":"/"},"route":{"cluster":"c"}})J"));
  auto original = [&](const std::string& path, bool insert) {
    Request r(path);
    t->match(r.headers, 0)->finalizeRequestHeaders(r.headers, insert);
    return std::string(r.headers.get("x-envoy-original-path").value_or("(none)")) + " " +
           std::string(r.headers.path());
  };
  // Envoy's router: the whole path the rewrite replaced, query included...
  EXPECT_EQ(original("/old/a?q=1", true), "/old/a?q=1 /new/a?q=1");
  // ... also when the rewrite leaves it as it was; never without a rewrite,
  // nor with suppress_envoy_headers.
  EXPECT_EQ(original("/same/a", true), "/same/a /same/a");
  EXPECT_EQ(original("/plain", true), "(none) /plain");
  EXPECT_EQ(original("/old/a", false), "(none) /new/a");
}

TEST(RouteTableTest, DirectResponse) {
  auto t = mustCompile(oneHost(R"(
    {"name":"s","match":{"prefix":"/s"},"direct_response":{"status":200,"body":{"inline_string":"hello"}}},
    {"name":"b","match":{"prefix":"/b"},"direct_response":{"status":403,"body":{"inline_bytes":"aGk="}}},
    {"name":"e","match":{"prefix":"/e"},"direct_response":{"status":204}})"));
  const RouteEntry* s = t->match(Request("/s").headers, 0);
  EXPECT_EQ(s->kind(), RouteEntry::Kind::kDirectResponse);
  EXPECT_EQ(s->directStatus(), 200u);
  EXPECT_EQ(s->directBody(), "hello");
  const RouteEntry* b = t->match(Request("/b").headers, 0);
  EXPECT_EQ(b->directStatus(), 403u);
  EXPECT_EQ(b->directBody(), "hi");
  EXPECT_EQ(t->match(Request("/e").headers, 0)->directBody(), "");
}

std::string location(const RouteTable& t, const std::string& path, const std::string& host,
                     const std::string& scheme = "http") {
  HeaderMap h;
  h.addCopy(":method", "GET");
  h.addCopy(":scheme", scheme);
  h.addCopy(":authority", host);
  h.addCopy(":path", path);
  const RouteEntry* e = t.match(h, 0);
  if (!e || e->kind() != RouteEntry::Kind::kRedirect) return "-";
  return std::to_string(e->redirectStatus()) + " " + e->redirectLocation(h);
}

TEST(RouteTableTest, Redirects) {
  auto t = mustCompile(oneHost(R"(
    {"match":{"prefix":"/https"},"redirect":{"https_redirect":true}},
    {"match":{"prefix":"/scheme"},"redirect":{"scheme_redirect":"ftp","response_code":"FOUND"}},
    {"match":{"prefix":"/host"},"redirect":{"host_redirect":"new.test","response_code":"SEE_OTHER"}},
    {"match":{"prefix":"/port"},"redirect":{"port_redirect":8443,"response_code":"TEMPORARY_REDIRECT"}},
    {"match":{"prefix":"/path"},"redirect":{"path_redirect":"/elsewhere","response_code":"PERMANENT_REDIRECT"}},
    {"match":{"prefix":"/pq"},"redirect":{"path_redirect":"/there?fixed=1","strip_query":true}},
    {"match":{"prefix":"/pre/"},"redirect":{"prefix_rewrite":"/post/"}},
    {"match":{"prefix":"/strip"},"redirect":{"strip_query":true}})"));
  EXPECT_EQ(location(*t, "/https/a?b", "h.test"), "301 https://h.test/https/a?b");
  EXPECT_EQ(location(*t, "/https", "h.test:80"),
            "301 https://h.test/https");  // default port dropped
  EXPECT_EQ(location(*t, "/https", "h.test:8080"), "301 https://h.test:8080/https");
  EXPECT_EQ(location(*t, "/https", "[::1]:80"), "301 https://[::1]/https");
  EXPECT_EQ(location(*t, "/scheme", "h.test"), "302 ftp://h.test/scheme");
  EXPECT_EQ(location(*t, "/host?x", "h.test:99"), "303 http://new.test/host?x");
  EXPECT_EQ(location(*t, "/port", "h.test:99"), "307 http://h.test:8443/port");
  EXPECT_EQ(location(*t, "/path?q=1", "h.test"), "308 http://h.test/elsewhere?q=1");
  EXPECT_EQ(location(*t, "/pq?q=1", "h.test"), "301 http://h.test/there?fixed=1");
  EXPECT_EQ(location(*t, "/pre/x?y", "h.test"), "301 http://h.test/post/x?y");
  EXPECT_EQ(location(*t, "/strip/x?y=1", "h.test"), "301 http://h.test/strip/x");
  EXPECT_EQ(location(*t, "/https", "h.test:443", "https"), "301 https://h.test:443/https");
}

TEST(RouteTableTest, HeaderEditsDefaultOrder) {
  auto t = mustCompile(R"({
    "request_headers_to_add":[{"header":{"key":"x-level","value":"config"},"append_action":"OVERWRITE_IF_EXISTS_OR_ADD"},
                              {"header":{"key":"x-list","value":"config"}}],
    "response_headers_to_add":[{"header":{"key":"x-resp","value":"config"},"append":false}],
    "response_headers_to_remove":["server"],
    "virtual_hosts":[{"name":"v","domains":["*"],
      "request_headers_to_add":[{"header":{"key":"x-level","value":"vhost"},"append_action":"OVERWRITE_IF_EXISTS_OR_ADD"},
                                {"header":{"key":"x-list","value":"vhost"}},
                                {"header":{"key":"x-absent","value":"vhost"},"append_action":"ADD_IF_ABSENT"}],
      "request_headers_to_remove":["x-drop"],
      "response_headers_to_add":[{"header":{"key":"x-resp","value":"vhost"},"append":false}],
      "routes":[{"match":{"prefix":"/"},"route":{"cluster":"c"},
        "request_headers_to_add":[{"header":{"key":"X-Level","value":"route"},"append_action":"OVERWRITE_IF_EXISTS_OR_ADD"},
                                  {"header":{"key":"x-list","value":"route"},"append":true},
                                  {"header":{"key":"x-empty","value":""}},
                                  {"header":{"key":"x-kept","value":""},"keep_empty_value":true}],
        "response_headers_to_add":[{"header":{"key":"x-resp","value":"route"},"append":false}]}]}]})");
  Request r("/", "h", "GET", {{"x-drop", "1"}, {"x-absent", "request"}});
  const RouteEntry* e = t->match(r.headers, 0);
  e->finalizeRequestHeaders(r.headers);
  // Route, then vhost, then config: the most general overwrite wins.
  EXPECT_EQ(r.headers.get("x-level"), "config");
  std::vector<std::string> list;
  for (auto& en : r.headers.entries()) {
    if (en.name == "x-list") list.emplace_back(en.value);
  }
  EXPECT_EQ(list, (std::vector<std::string>{"route", "vhost", "config"}));
  EXPECT_FALSE(r.headers.has("x-drop"));
  EXPECT_EQ(r.headers.get("x-absent"), "request");
  EXPECT_FALSE(r.headers.has("x-empty"));
  EXPECT_EQ(r.headers.get("x-kept"), "");
  HeaderMap resp;
  resp.addCopy(":status", "200");
  resp.addCopy("server", "up");
  e->finalizeResponseHeaders(resp);
  EXPECT_EQ(resp.get("x-resp"), "config");
  EXPECT_FALSE(resp.has("server"));
}

TEST(RouteTableTest, MostSpecificHeaderMutationsWins) {
  auto t = mustCompile(R"({"most_specific_header_mutations_wins":true,
    "request_headers_to_add":[{"header":{"key":"x-level","value":"config"},"append":false}],
    "virtual_hosts":[{"name":"v","domains":["*"],
      "request_headers_to_add":[{"header":{"key":"x-level","value":"vhost"},"append":false}],
      "routes":[{"match":{"prefix":"/"},"route":{"cluster":"c"},
        "request_headers_to_add":[{"header":{"key":"x-level","value":"route"},"append":false}]}]}]})");
  Request r("/");
  t->match(r.headers, 0)->finalizeRequestHeaders(r.headers);
  EXPECT_EQ(r.headers.get("x-level"), "route");
}

TEST(RouteTableTest, ConfigErrors) {
  auto route = [](const std::string& r) { return compileError(oneHost(r)); };
  EXPECT_EQ(route(R"({"match":{"safe_regex":{"regex":"(a"}},"route":{"cluster":"c"}})"),
            "rc.virtual_hosts[0].routes[0].match.safe_regex.regex: invalid RE2: missing ): (a");
  EXPECT_EQ(
      route(
          R"({"match":{"prefix":"/"},"route":{"weighted_clusters":{"clusters":[{"name":"a","weight":0}]}}})"),
      "rc.virtual_hosts[0].routes[0].route.weighted_clusters: weights sum to 0");
  EXPECT_EQ(route(R"({"match":{"prefix":"/"},"route":{"cluster_specifier_plugin":"p"}})"),
            "rc.virtual_hosts[0].routes[0].route.cluster_specifier_plugin: is not supported");
  EXPECT_EQ(
      route(
          R"({"match":{"prefix":"/"},"redirect":{"regex_rewrite":{"pattern":{"regex":"a"},"substitution":"b"}}})"),
      "rc.virtual_hosts[0].routes[0].redirect.regex_rewrite: is not supported");
  EXPECT_EQ(
      route(
          R"({"match":{"prefix":"/"},"direct_response":{"status":200,"body":{"filename":"/etc/passwd"}}})"),
      "rc.virtual_hosts[0].routes[0].direct_response.body.filename: is not supported");
  EXPECT_EQ(route(R"({"match":{"prefix":"/"},"direct_response":{"status":99}})"),
            "rc.virtual_hosts[0].routes[0].direct_response.status: 99 is not in [200, 600)");
  EXPECT_EQ(
      route(
          R"({"match":{"prefix":"/","headers":[{"name":"x","string_match":{"safe_regex":{"regex":"["}}}]},"route":{"cluster":"c"}})"),
      "rc.virtual_hosts[0].routes[0].match.headers[0].string_match.safe_regex.regex: invalid "
      "RE2: missing ]: [");
  EXPECT_EQ(
      route(
          R"({"match":{"prefix":"/","headers":[{"name":"x","safe_regex_match":{"regex":"("}}]},"route":{"cluster":"c"}})"),
      "rc.virtual_hosts[0].routes[0].match.headers[0].safe_regex_match.regex: invalid RE2: "
      "missing ): (");
  EXPECT_EQ(
      route(
          R"({"match":{"prefix":"/","headers":[{"name":"x","range_match":{"start":"5","end":"5"}}]},"route":{"cluster":"c"}})"),
      "rc.virtual_hosts[0].routes[0].match.headers[0].range_match: start must be less than end");
  EXPECT_EQ(
      route(
          R"J({"match":{"prefix":"/","query_parameters":[{"name":"q","string_match":{"safe_regex":{"regex":")"}}}]},"route":{"cluster":"c"}})J"),
      "rc.virtual_hosts[0].routes[0].match.query_parameters[0].string_match.safe_regex.regex: "
      "invalid RE2: unexpected ): )");
  EXPECT_EQ(
      route(
          R"({"match":{"prefix":"/"},"route":{"cluster":"c","regex_rewrite":{"pattern":{"regex":"a"},"substitution":"\\1"}}})"),
      "rc.virtual_hosts[0].routes[0].route.regex_rewrite.substitution: Rewrite schema "
      "requests 1 matches, but the regexp only has 0 parenthesized subexpressions.");
  EXPECT_EQ(
      route(
          R"({"match":{"prefix":"/"},"route":{"cluster":"c","regex_rewrite":{"pattern":{"regex":"(a"},"substitution":"b"}}})"),
      "rc.virtual_hosts[0].routes[0].route.regex_rewrite.pattern.regex: invalid RE2: "
      "missing ): (a");
  EXPECT_EQ(
      route(
          R"({"match":{"prefix":"/"},"route":{"cluster":"c","prefix_rewrite":"/x","regex_rewrite":{"pattern":{"regex":"a"},"substitution":"b"}}})"),
      "rc.virtual_hosts[0].routes[0].route: prefix_rewrite and regex_rewrite are both set");
  EXPECT_EQ(route(R"({"match":{"prefix":"/"},"route":{"cluster":"c","host_rewrite_header":"x"}})"),
            "rc.virtual_hosts[0].routes[0].route.host_rewrite_header: is not supported");
  EXPECT_EQ(route(R"({"match":{"prefix":"/"}})"),
            "rc.virtual_hosts[0].routes[0]: one of route, redirect, direct_response is required");
  EXPECT_EQ(route(R"({"match":{},"route":{"cluster":"c"}})"),
            "rc.virtual_hosts[0].routes[0].match: one of prefix, path, safe_regex, "
            "path_separated_prefix is required");
  EXPECT_EQ(route(R"({"match":{"path_separated_prefix":"/a/"},"route":{"cluster":"c"}})"),
            "rc.virtual_hosts[0].routes[0].match.path_separated_prefix: must be non-empty, "
            "without ? or #, and not end in /");
  EXPECT_EQ(
      route(
          R"({"match":{"prefix":"/"},"route":{"cluster":"c"},"request_headers_to_add":[{"header":{"key":"x","value":"%REQ(y)%"}}]})"),
      "rc.virtual_hosts[0].routes[0].request_headers_to_add[0].header.value: "
      "%-substitution is not supported");
  EXPECT_EQ(
      route(
          R"({"match":{"prefix":"/"},"route":{"cluster":"c"},"request_headers_to_add":[{"header":{"key":":path","value":"x"}}]})"),
      "rc.virtual_hosts[0].routes[0].request_headers_to_add[0].header.key: \":path\" may not "
      "be modified (empty, pseudo-header or host)");
  EXPECT_EQ(
      route(
          R"({"match":{"prefix":"/"},"route":{"cluster":"c"},"response_headers_to_add":[{"header":{"key":"x","value":"v"},"append":true,"append_action":"ADD_IF_ABSENT"}]})"),
      "rc.virtual_hosts[0].routes[0].response_headers_to_add[0]: append and append_action "
      "are both set");
  EXPECT_EQ(
      route(
          R"({"match":{"prefix":"/"},"route":{"cluster":"c"},"response_headers_to_add":[{"header":{"key":"x","value":"v"},"append_action":"OVERWRITE_IF_EXISTS"}]})"),
      "rc.virtual_hosts[0].routes[0].response_headers_to_add[0].append_action: "
      "OVERWRITE_IF_EXISTS is not supported");
  EXPECT_EQ(
      route(
          R"({"match":{"prefix":"/"},"route":{"cluster":"c"},"request_headers_to_remove":["Host"]})"),
      "rc.virtual_hosts[0].routes[0].request_headers_to_remove[0]: \"Host\" may not be "
      "removed (empty, pseudo-header or host)");
  EXPECT_EQ(
      compileError(R"({"virtual_hosts":[
      {"name":"a","domains":["a.test","*"],"routes":[]},
      {"name":"b","domains":["b.test"],"routes":[]},
      {"name":"c","domains":["x","A.TEST"],"routes":[]}]})"),
      "rc.virtual_hosts[2].domains[1]: duplicate domain \"A.TEST\" (also in virtual_hosts[0])");
  EXPECT_EQ(compileError(R"({"virtual_hosts":[{"name":"a","domains":[],"routes":[]}]})"),
            "rc.virtual_hosts[0].domains: must not be empty");
  EXPECT_EQ(compileError(R"({"virtual_hosts":[{"name":"a","domains":["*"],"require_tls":"ALL"}]})"),
            "rc.virtual_hosts[0].require_tls: ALL is not supported");
  EXPECT_EQ(
      compileError(
          R"({"request_headers_to_add":[{"header":{"key":"","value":"v"}}],"virtual_hosts":[]})"),
      "rc.request_headers_to_add[0].header.key: \"\" may not be modified (empty, pseudo-header "
      "or host)");
  EXPECT_EQ(
      compileError(
          R"({"max_direct_response_body_size_bytes":2,"virtual_hosts":[{"name":"a","domains":["*"],"routes":[
      {"match":{"prefix":"/"},"direct_response":{"status":200,"body":{"inline_string":"abc"}}}]}]})"),
      "rc.virtual_hosts[0].routes[0].direct_response.body: 3 bytes is more than "
      "max_direct_response_body_size_bytes (2)");
}

}  // namespace
}  // namespace skiff::router

namespace skiff::router {
namespace {

// A filter's per-route config for the tests: the StringValue it was made of.
struct TestFilterConfig : PerFilterConfig {
  std::string value;
};

// Takes google.protobuf.StringValue; anything else is refused, unless optional.
Result<std::shared_ptr<const PerFilterConfig>> parseTestConfig(const std::string&,
                                                               const google::protobuf::Any& any,
                                                               bool optional,
                                                               const std::string& path) {
  google::protobuf::StringValue v;
  if (!any.UnpackTo(&v)) {
    if (optional) return std::shared_ptr<const PerFilterConfig>();
    return configError(path + ": not a test config");
  }
  auto c = std::make_shared<TestFilterConfig>();
  c->value = v.value();
  return std::shared_ptr<const PerFilterConfig>(std::move(c));
}

Result<std::shared_ptr<const RouteTable>> compileWithFilters(const std::string& json) {
  envoy::config::route::v3::RouteConfiguration config;
  auto st = google::protobuf::util::JsonStringToMessage(json, &config);
  EXPECT_TRUE(st.ok()) << st.ToString() << "\n" << json;
  return RouteTable::compile(config, kPath, parseTestConfig);
}

std::string str(const char* v) {
  return std::string(R"({"@type": "type.googleapis.com/google.protobuf.StringValue", "value": ")") +
         v + "\"}";
}

std::string perFilterValue(const RouteEntry* e, std::string_view filter) {
  if (e == nullptr) return "(no route)";
  const auto* c = dynamic_cast<const TestFilterConfig*>(e->perFilterConfig(filter));
  return c ? c->value : "-";
}

TEST(RouteTablePerFilterTest, MostSpecificLevelWinsPerFilter) {
  auto r =
      compileWithFilters(R"({"name": "t", "typed_per_filter_config": {"f": )" + str("table-f") +
                         R"(, "g": )" + str("table-g") + R"(, "h": )" + str("table-h") + R"(},
          "virtual_hosts": [{"name": "vh", "domains": ["*"],
            "typed_per_filter_config": {"g": )" +
                         str("vhost-g") + R"(, "h": )" + str("vhost-h") +
                         R"(},
            "routes": [
              {"name": "own", "match": {"prefix": "/own"}, "direct_response": {"status": 200},
               "typed_per_filter_config": {"h": )" +
                         str("route-h") + R"(}},
              {"name": "plain", "match": {"prefix": "/"}, "direct_response": {"status": 200}}]}]})");
  ASSERT_TRUE(r.isOk()) << r.status().message();
  const RouteTable& t = **r;
  const RouteEntry* own = t.match(Request("/own").headers, 0);
  EXPECT_EQ(perFilterValue(own, "f"), "table-f");
  EXPECT_EQ(perFilterValue(own, "g"), "vhost-g");
  EXPECT_EQ(perFilterValue(own, "h"), "route-h");
  EXPECT_EQ(perFilterValue(own, "other"), "-");
  const RouteEntry* plain = t.match(Request("/x").headers, 0);
  EXPECT_EQ(perFilterValue(plain, "f"), "table-f");
  EXPECT_EQ(perFilterValue(plain, "h"), "vhost-h");

  // Every level's, most specific first, for filters that merge them (CORS).
  auto levels = [](const RouteEntry* e, const std::string& filter) {
    std::array<const PerFilterConfig*, 3> found{};
    const size_t n = e->perFilterConfigs(filter, found);
    std::string out;
    for (size_t i = 0; i < n; ++i) {
      out += (i ? "," : "") + dynamic_cast<const TestFilterConfig*>(found[i])->value;
    }
    return out;
  };
  EXPECT_EQ(levels(own, "h"), "route-h,vhost-h,table-h");
  EXPECT_EQ(levels(own, "g"), "vhost-g,table-g");
  EXPECT_EQ(levels(plain, "h"), "vhost-h,table-h");
  EXPECT_EQ(levels(plain, "other"), "");
  std::array<const PerFilterConfig*, 1> one{};
  EXPECT_EQ(own->perFilterConfigs("h", one), 1u);  // No more than out holds.
  EXPECT_EQ(dynamic_cast<const TestFilterConfig*>(one[0])->value, "route-h");
}

TEST(RouteTablePerFilterTest, FilterConfigWrapperAndErrors) {
  const std::string wrapped_optional =
      R"({"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "is_optional": true,
          "config": {"@type": "type.googleapis.com/google.protobuf.UInt32Value", "value": 1}})";
  const std::string wrapped =
      R"({"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "config": )" +
      str("inner") + "}";
  auto r = compileWithFilters(oneHost(
      R"({"name": "a", "match": {"prefix": "/"}, "direct_response": {"status": 200},
          "typed_per_filter_config": {"opt": )" +
      wrapped_optional + R"(, "w": )" + wrapped + "}}"));
  ASSERT_TRUE(r.isOk()) << r.status().message();
  const RouteEntry* e = (*r)->match(Request("/").headers, 0);
  EXPECT_EQ(perFilterValue(e, "w"), "inner");
  EXPECT_EQ(e->perFilterConfig("opt"), nullptr);  // Optional and unusable: dropped.

  auto refused = compileWithFilters(oneHost(
      R"({"name": "a", "match": {"prefix": "/"}, "direct_response": {"status": 200},
          "typed_per_filter_config": {"bad": {"@type": "type.googleapis.com/google.protobuf.UInt32Value", "value": 1}}})"));
  ASSERT_FALSE(refused.isOk());
  EXPECT_EQ(refused.status().message(),
            "rc.virtual_hosts[0].routes[0].typed_per_filter_config[\"bad\"]: not a test config");
  auto disabled = compileWithFilters(
      oneHost(R"({"name": "a", "match": {"prefix": "/"}, "direct_response": {"status": 200},
          "typed_per_filter_config": {"d": {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": true}}})"));
  ASSERT_FALSE(disabled.isOk());
  EXPECT_EQ(disabled.status().message(),
            "rc.virtual_hosts[0].routes[0].typed_per_filter_config[\"d\"].disabled: not supported "
            "yet");
  // Without a parser (no filters known), any entry is refused.
  auto none =
      compileJson(R"({"name": "t", "typed_per_filter_config": {"f": )" + str("x") +
                  R"(}, "virtual_hosts": [{"name": "vh", "domains": ["*"], "routes": []}]})");
  ASSERT_FALSE(none.isOk());
  EXPECT_EQ(none.status().message(), "rc.typed_per_filter_config[\"f\"]: not supported here");
}

}  // namespace
}  // namespace skiff::router
