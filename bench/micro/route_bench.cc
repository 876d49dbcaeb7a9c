// Route matching cost. Three tables:
//  * Small: one vhost with a few typical routes (a header match, a regex, prefixes),
//    the request matching the fourth route. This is the per-request figure.
//  * PrefixRoutes/N: N prefix routes "/svc<i>/" in one vhost, the request
//    matching the last one: the worst case of Envoy's in-order route list.
//  * VirtualHosts/N: N vhosts "host<i>.example.com" with one route each, the
//    request for the last: domain lookup is a hash, so this stays flat.
#include <benchmark/benchmark.h>
#include <google/protobuf/util/json_util.h>

#include "envoy/config/route/v3/route.pb.h"
#include "proxy/router/route_table.h"

namespace skiff::router {
namespace {

std::shared_ptr<const RouteTable> compileOrDie(
    const envoy::config::route::v3::RouteConfiguration& c) {
  auto r = RouteTable::compile(c, "bench");
  if (!r.isOk()) {
    fprintf(stderr, "%s\n", r.status().message().c_str());
    abort();
  }
  return r.value();
}

void fill(HeaderMap& h, std::string_view host, std::string_view path) {
  h.addView(":method", "GET");
  h.addView(":scheme", "http");
  h.addView(":authority", host);
  h.addView(":path", path);
  h.addView("user-agent", "bench/1.0");
  h.addView("accept", "*/*");
}

void BM_RouteMatchSmall(benchmark::State& state) {
  envoy::config::route::v3::RouteConfiguration c;
  auto st = google::protobuf::util::JsonStringToMessage(R"({"virtual_hosts":[
    {"name":"other","domains":["other.test","*.other.test"],"routes":[{"match":{"prefix":"/"},"route":{"cluster":"o"}}]},
    {"name":"main","domains":["api.example.com","*.example.com"],"routes":[
      {"match":{"prefix":"/admin","headers":[{"name":"x-admin","present_match":true}]},"route":{"cluster":"admin"}},
      {"match":{"safe_regex":{"regex":"/v[0-9]+/users/[0-9]+"}},"route":{"cluster":"users"}},
      {"match":{"path":"/healthz"},"direct_response":{"status":200}},
      {"match":{"prefix":"/api/"},"route":{"cluster":"api"}},
      {"match":{"prefix":"/"},"route":{"cluster":"web"}}]}]})",
                                                        &c);
  if (!st.ok()) abort();
  auto table = compileOrDie(c);
  HeaderMap h;
  fill(h, "API.example.com:8080", "/api/items?page=2");
  for (auto _ : state) benchmark::DoNotOptimize(table->match(h, 0));
}
BENCHMARK(BM_RouteMatchSmall);

void BM_RouteMatchPrefixRoutes(benchmark::State& state) {
  envoy::config::route::v3::RouteConfiguration c;
  auto* vh = c.add_virtual_hosts();
  vh->set_name("vh");
  vh->add_domains("*");
  const int n = static_cast<int>(state.range(0));
  for (int i = 0; i < n; ++i) {
    auto* r = vh->add_routes();
    r->mutable_match()->set_prefix("/svc" + std::to_string(i) + "/");
    r->mutable_route()->set_cluster("c" + std::to_string(i));
  }
  auto table = compileOrDie(c);
  std::string path = "/svc" + std::to_string(n - 1) + "/x";
  HeaderMap h;
  fill(h, "example.com", path);
  for (auto _ : state) benchmark::DoNotOptimize(table->match(h, 0));
}
BENCHMARK(BM_RouteMatchPrefixRoutes)->Arg(10)->Arg(100)->Arg(10000);

void BM_RouteMatchVirtualHosts(benchmark::State& state) {
  envoy::config::route::v3::RouteConfiguration c;
  const int n = static_cast<int>(state.range(0));
  for (int i = 0; i < n; ++i) {
    auto* vh = c.add_virtual_hosts();
    vh->set_name("vh" + std::to_string(i));
    vh->add_domains("host" + std::to_string(i) + ".example.com");
    auto* r = vh->add_routes();
    r->mutable_match()->set_prefix("/");
    r->mutable_route()->set_cluster("c" + std::to_string(i));
  }
  auto table = compileOrDie(c);
  std::string host = "Host" + std::to_string(n - 1) + ".example.com";
  HeaderMap h;
  fill(h, host, "/index.html");
  for (auto _ : state) benchmark::DoNotOptimize(table->match(h, 0));
}
BENCHMARK(BM_RouteMatchVirtualHosts)->Arg(10)->Arg(10000);

}  // namespace
}  // namespace skiff::router
