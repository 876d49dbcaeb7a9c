#include "xds/translator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>

#include "envoy/extensions/filters/http/router/v3/router.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "envoy/extensions/upstreams/http/v3/http_protocol_options.pb.h"
#include "filters/router/router.h"
#include "xds/bootstrap_loader.h"

namespace skiff::xds {
namespace {

using envoy::config::bootstrap::v3::Bootstrap;
using envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
using std::chrono::milliseconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

// An edge proxy: one listener routing on path and on a header to two
// clusters, one STATIC and one STRICT_DNS.
constexpr const char* kEdge = R"(
node: {id: edge-1, cluster: edge, metadata: {team: web}}
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 9901}}
static_resources:
  listeners:
  - name: ingress
    address: {socket_address: {address: 0.0.0.0, port_value: 10000}}
    per_connection_buffer_limit_bytes: 65536
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          codec_type: AUTO
          server_name: edge
          server_header_transformation: APPEND_IF_ABSENT
          use_remote_address: true
          xff_num_trusted_hops: 1
          skip_xff_append: true
          generate_request_id: false
          preserve_external_request_id: true
          max_request_headers_kb: 32
          stream_idle_timeout: 30s
          request_timeout: 10s
          drain_timeout: 2s
          common_http_protocol_options: {idle_timeout: 120s}
          http_protocol_options: {}
          route_config:
            name: local
            virtual_hosts:
            - name: app
              domains: ["*"]
              routes:
              - match:
                  prefix: /api
                  headers: [{name: x-canary, string_match: {exact: "1"}}]
                route: {cluster: api_canary}
              - match: {path: /healthz}
                direct_response: {status: 200, body: {inline_string: ok}}
              - match: {prefix: /api}
                route: {cluster: api, timeout: 5s}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: api
    type: STATIC
    connect_timeout: 0.25s
    lb_policy: LEAST_REQUEST
    least_request_lb_config: {choice_count: 3}
    per_connection_buffer_limit_bytes: 32768
    load_assignment:
      cluster_name: api
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8081}}}
          load_balancing_weight: 3
        - endpoint: {address: {socket_address: {address: "::1", port_value: 8082}}}
    circuit_breakers:
      thresholds: [{priority: DEFAULT, max_connections: 100, max_pending_requests: 50, max_requests: 200}]
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        common_http_protocol_options: {idle_timeout: 30s}
        explicit_http_config: {http_protocol_options: {}}
  - name: api_canary
    type: STRICT_DNS
    dns_refresh_rate: 10s
    dns_lookup_family: V4_ONLY
    lb_policy: RANDOM
    load_assignment:
      cluster_name: api_canary
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: localhost, port_value: 8083}}}
)";

// The real router needs the whole runtime; these tests only need a terminal
// filter registered under the router's type URL.
class FakeRouterFactory : public filters::HttpFilterFactory {
 public:
  std::unique_ptr<filters::HttpFilter> create() const override { return nullptr; }
  bool isTerminal() const override { return true; }
};

const filters::FilterRegistry& testRegistry() {
  static const filters::FilterRegistry* registry = [] {
    auto* r = new filters::FilterRegistry();
    r->registerHttpFilter(
        filters::kRouterTypeUrl,
        [](const google::protobuf::Any&,
           const std::string&) -> Result<std::shared_ptr<const filters::HttpFilterFactory>> {
          return std::shared_ptr<const filters::HttpFilterFactory>(
              std::make_shared<FakeRouterFactory>());
        });
    return r;
  }();
  return *registry;
}

const std::string kHcmPath =
    "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";

Bootstrap edge() {
  auto b = loadBootstrapYaml(kEdge);
  EXPECT_TRUE(b.isOk()) << b.status().message();
  return b.isOk() ? *b : Bootstrap();
}

// Unpacks the listener's HttpConnectionManager, lets fn change it, packs it back.
void editHcm(Bootstrap& b, const std::function<void(HttpConnectionManager&)>& fn) {
  auto* any = b.mutable_static_resources()
                  ->mutable_listeners(0)
                  ->mutable_filter_chains(0)
                  ->mutable_filters(0)
                  ->mutable_typed_config();
  HttpConnectionManager hcm;
  ASSERT_TRUE(any->UnpackTo(&hcm));
  fn(hcm);
  any->PackFrom(hcm);
}

std::string translateError(const Bootstrap& b) {
  auto result = translateBootstrap(b, testRegistry());
  EXPECT_FALSE(result.isOk());
  if (result.isOk()) {
    return "";
  }
  EXPECT_EQ(result.status().source(), ErrorSource::kConfig);
  return result.status().message();
}

TEST(TranslateBootstrap, EdgeProxy) {
  auto result = translateBootstrap(edge(), testRegistry());
  ASSERT_TRUE(result.isOk()) << result.status().message();
  const config::Snapshot& s = **result;

  EXPECT_EQ(s.node_id, "edge-1");
  EXPECT_EQ(s.node_cluster, "edge");
  EXPECT_TRUE(s.admin.enabled);
  EXPECT_EQ(s.admin.address.address, "127.0.0.1");
  EXPECT_EQ(s.admin.address.port, 9901u);

  ASSERT_EQ(s.listeners.size(), 1u);
  const config::ListenerConfig& l = *s.listeners[0];
  EXPECT_EQ(l.name, "ingress");
  EXPECT_EQ(l.address.address, "0.0.0.0");
  EXPECT_EQ(l.address.port, 10000u);
  EXPECT_EQ(l.per_connection_buffer_limit_bytes, 65536u);
  ASSERT_EQ(l.filter_chains.size(), 1u);
  EXPECT_EQ(l.default_filter_chain, nullptr);
  EXPECT_EQ(l.tls, nullptr);
  EXPECT_EQ(l.filter_chains[0]->tls, nullptr);
  EXPECT_TRUE(l.filter_chains[0]->server_names.empty());
  EXPECT_EQ(l.selectFilterChain(""), l.filter_chains[0].get());
  const config::HttpConnectionManagerConfig& h = l.filter_chains[0]->http;
  EXPECT_EQ(h.stat_prefix, "ingress_http");
  EXPECT_EQ(h.codec_type, config::HttpConnectionManagerConfig::CodecType::kAuto);
  EXPECT_EQ(h.server_name, "edge");
  EXPECT_EQ(h.server_header_transformation,
            config::HttpConnectionManagerConfig::ServerHeaderTransformation::kAppendIfAbsent);
  EXPECT_TRUE(h.use_remote_address);
  EXPECT_EQ(h.xff_num_trusted_hops, 1u);
  EXPECT_TRUE(h.skip_xff_append);
  EXPECT_FALSE(h.generate_request_id);
  EXPECT_TRUE(h.preserve_external_request_id);
  EXPECT_EQ(h.max_request_headers_kb, 32u);
  EXPECT_EQ(h.stream_idle_timeout, milliseconds(30000));
  EXPECT_EQ(h.request_timeout, milliseconds(10000));
  EXPECT_EQ(h.drain_timeout, milliseconds(2000));
  EXPECT_EQ(h.idle_timeout, milliseconds(120000));
  EXPECT_EQ(h.http2.max_header_list_size_kb, 32u);
  ASSERT_EQ(h.http_filters.size(), 1u);
  EXPECT_EQ(h.http_filters[0].name, "envoy.filters.http.router");
  ASSERT_NE(h.http_filters[0].factory, nullptr);
  EXPECT_TRUE(h.http_filters[0].factory->isTerminal());
  ASSERT_NE(h.route_table, nullptr);
  EXPECT_EQ(h.route_table->name(), "local");
  EXPECT_THAT(h.route_table->referencedClusters(), UnorderedElementsAre("api", "api_canary"));

  ASSERT_EQ(s.clusters.size(), 2u);
  const config::ClusterConfig& api = *s.clusters.at("api");
  EXPECT_EQ(api.name, "api");
  EXPECT_EQ(api.type, config::ClusterConfig::Type::kStatic);
  EXPECT_EQ(api.lb_policy, config::ClusterConfig::LbPolicy::kLeastRequest);
  EXPECT_EQ(api.least_request_choice_count, 3u);
  EXPECT_EQ(api.connect_timeout, milliseconds(250));
  EXPECT_EQ(api.per_connection_buffer_limit_bytes, 32768u);
  ASSERT_EQ(api.endpoints.size(), 2u);
  EXPECT_EQ(api.endpoints[0].address.address, "127.0.0.1");
  EXPECT_EQ(api.endpoints[0].address.port, 8081u);
  EXPECT_EQ(api.endpoints[0].weight, 3u);
  EXPECT_EQ(api.endpoints[1].address.address, "::1");
  EXPECT_EQ(api.endpoints[1].weight, 1u);
  EXPECT_EQ(api.max_connections, 100u);
  EXPECT_EQ(api.max_pending_requests, 50u);
  EXPECT_EQ(api.max_requests, 200u);
  EXPECT_EQ(api.upstream_idle_timeout, milliseconds(30000));
  EXPECT_EQ(api.upstream_protocol, config::ClusterConfig::UpstreamProtocol::kHttp1);
  EXPECT_EQ(api.tls, nullptr);

  const config::ClusterConfig& canary = *s.clusters.at("api_canary");
  EXPECT_EQ(canary.type, config::ClusterConfig::Type::kStrictDns);
  EXPECT_EQ(canary.lb_policy, config::ClusterConfig::LbPolicy::kRandom);
  EXPECT_EQ(canary.dns_refresh_rate, milliseconds(10000));
  EXPECT_EQ(canary.dns_lookup_family, config::ClusterConfig::DnsLookupFamily::kV4Only);
  EXPECT_EQ(canary.connect_timeout, milliseconds(5000));
  EXPECT_EQ(canary.max_connections, 1024u);
  ASSERT_EQ(canary.endpoints.size(), 1u);
  EXPECT_EQ(canary.endpoints[0].address.address, "localhost");

  EXPECT_THAT(s.config_dump_json,
              HasSubstr(R"({"configs":[{"@type":"type.googleapis.com/envoy.admin.v3.)"
                        R"(BootstrapConfigDump","bootstrap":{"node":{"id":"edge-1")"));
  EXPECT_THAT(s.config_dump_json,
              HasSubstr(R"("static_resources":{"listeners":[{"name":"ingress")"));
  EXPECT_THAT(s.config_dump_json, HasSubstr(R"("@type":"type.googleapis.com/envoy.extensions.)"
                                            R"(filters.http.router.v3.Router")"));
}

TEST(TranslateBootstrap, EmptyBootstrapIsAnEmptySnapshot) {
  auto result = translateBootstrap(Bootstrap(), testRegistry());
  ASSERT_TRUE(result.isOk()) << result.status().message();
  EXPECT_TRUE((*result)->listeners.empty());
  EXPECT_TRUE((*result)->clusters.empty());
  EXPECT_FALSE((*result)->admin.enabled);
}

TEST(TranslateBootstrap, UnknownFieldIsRefusedByTheLoader) {
  auto result = loadBootstrapYaml("static_resources: {clusters: [{name: a, lb_polcy: RANDOM}]}");
  ASSERT_FALSE(result.isOk());
  EXPECT_THAT(result.status().message(), HasSubstr("lb_polcy"));
}

TEST(TranslateBootstrap, UnsupportedFieldsAreAllNamed) {
  Bootstrap b = edge();
  b.mutable_layered_runtime();
  b.mutable_static_resources()->mutable_clusters(1)->mutable_outlier_detection();
  b.mutable_admin()->add_access_log()->set_name("log");
  EXPECT_EQ(translateError(b),
            "static_resources.clusters[1].outlier_detection: not supported yet\n"
            "admin.access_log: not supported yet\n"
            "layered_runtime: not supported yet");
}

TEST(TranslateBootstrap, Maglev) {
  Bootstrap b = edge();
  b.mutable_static_resources()->mutable_clusters(1)->set_lb_policy(
      envoy::config::cluster::v3::Cluster::MAGLEV);
  EXPECT_EQ(translateError(b),
            "static_resources.clusters[1].lb_policy: MAGLEV is not supported yet");
}

TEST(TranslateBootstrap, TwoChainsWithoutServerNames) {
  Bootstrap b = edge();
  auto* listener = b.mutable_static_resources()->mutable_listeners(0);
  *listener->add_filter_chains() = listener->filter_chains(0);
  EXPECT_EQ(translateError(b),
            "static_resources.listeners[0].filter_chains[1]: has the same filter_chain_match as "
            "static_resources.listeners[0].filter_chains[0] (neither names server_names)");
}

TEST(TranslateBootstrap, Http3Codec) {
  Bootstrap b = edge();
  editHcm(b, [](HttpConnectionManager& hcm) { hcm.set_codec_type(HttpConnectionManager::HTTP3); });
  EXPECT_EQ(translateError(b), kHcmPath + ".codec_type: HTTP3 is not supported yet");
}

TEST(TranslateBootstrap, Rds) {
  Bootstrap b = edge();
  editHcm(b,
          [](HttpConnectionManager& hcm) { hcm.mutable_rds()->set_route_config_name("routes"); });
  EXPECT_EQ(translateError(b), kHcmPath + ".rds: not supported yet");
}

TEST(TranslateBootstrap, UnknownTypedConfigTypeUrl) {
  Bootstrap b = edge();
  editHcm(b, [](HttpConnectionManager& hcm) {
    hcm.mutable_http_filters(0)->mutable_typed_config()->set_type_url(
        "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer");
  });
  EXPECT_EQ(translateError(b),
            kHcmPath +
                ".http_filters[0].typed_config: unknown type URL "
                "'type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer'");
}

TEST(TranslateBootstrap, TypedConfigThatIsNotAnHttpFilter) {
  Bootstrap b = edge();
  editHcm(b, [](HttpConnectionManager& hcm) {
    hcm.mutable_http_filters(0)->mutable_typed_config()->PackFrom(
        envoy::extensions::upstreams::http::v3::HttpProtocolOptions());
  });
  EXPECT_EQ(translateError(b),
            kHcmPath +
                ".http_filters[0].typed_config: no HTTP filter is registered for type URL "
                "'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions'");
}

TEST(TranslateBootstrap, NetworkFilterMustBeTheHttpConnectionManager) {
  Bootstrap b = edge();
  b.mutable_static_resources()
      ->mutable_listeners(0)
      ->mutable_filter_chains(0)
      ->mutable_filters(0)
      ->mutable_typed_config()
      ->PackFrom(envoy::extensions::filters::http::router::v3::Router());
  EXPECT_EQ(translateError(b),
            kHcmPath +
                ": the only supported network filter is "
                "envoy.filters.network.http_connection_manager (type.googleapis.com/"
                "envoy.extensions.filters.network.http_connection_manager.v3."
                "HttpConnectionManager), got "
                "'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router'");
}

TEST(TranslateBootstrap, RouterNotLast) {
  Bootstrap b = edge();
  editHcm(b, [](HttpConnectionManager& hcm) {
    auto* second = hcm.add_http_filters();
    *second = hcm.http_filters(0);
    second->set_name("router2");
  });
  EXPECT_EQ(translateError(b),
            kHcmPath +
                ".http_filters[0]: 'envoy.filters.http.router' is a terminal filter and "
                "must be the last in http_filters");
}

TEST(TranslateBootstrap, NoHttpFilters) {
  Bootstrap b = edge();
  editHcm(b, [](HttpConnectionManager& hcm) { hcm.clear_http_filters(); });
  EXPECT_EQ(translateError(b), kHcmPath +
                                   ".http_filters: must end with the router filter "
                                   "(envoy.filters.http.router)");
}

TEST(TranslateBootstrap, DuplicateCluster) {
  Bootstrap b = edge();
  auto* clusters = b.mutable_static_resources()->mutable_clusters();
  *clusters->Add() = clusters->Get(0);
  EXPECT_EQ(translateError(b),
            "static_resources.clusters[2].name: duplicate cluster name 'api' (first defined at "
            "static_resources.clusters[0])");
}

TEST(TranslateBootstrap, DuplicateListener) {
  Bootstrap b = edge();
  auto* listeners = b.mutable_static_resources()->mutable_listeners();
  *listeners->Add() = listeners->Get(0);
  listeners->Mutable(1)->mutable_address()->mutable_socket_address()->set_port_value(10001);
  *listeners->Add() = listeners->Get(0);
  listeners->Mutable(2)->set_name("other");
  EXPECT_EQ(translateError(b),
            "static_resources.listeners[1].name: duplicate listener name 'ingress' (first defined "
            "at static_resources.listeners[0])\n"
            "static_resources.listeners[2].address: 0.0.0.0:10000 is already used by "
            "static_resources.listeners[0]");
}

TEST(TranslateBootstrap, DirectResponseFromFile) {
  Bootstrap b = edge();
  editHcm(b, [](HttpConnectionManager& hcm) {
    hcm.mutable_route_config()
        ->mutable_virtual_hosts(0)
        ->mutable_routes(1)
        ->mutable_direct_response()
        ->mutable_body()
        ->set_filename("/etc/passwd");
  });
  EXPECT_THAT(translateError(b),
              HasSubstr(".routes[1].direct_response.body.filename: is not supported"));
}

TEST(TranslateBootstrap, RouteToMissingCluster) {
  Bootstrap b = edge();
  editHcm(b, [](HttpConnectionManager& hcm) {
    hcm.mutable_route_config()
        ->mutable_virtual_hosts(0)
        ->mutable_routes(2)
        ->mutable_route()
        ->set_cluster("nope");
  });
  EXPECT_EQ(
      translateError(b),
      kHcmPath + ".route_config.virtual_hosts[0].routes[2].route.cluster: unknown cluster 'nope'");
}

TEST(TranslateBootstrap, MissingClusterAllowedWhenValidateClustersIsFalse) {
  Bootstrap b = edge();
  editHcm(b, [](HttpConnectionManager& hcm) {
    hcm.mutable_route_config()->mutable_validate_clusters()->set_value(false);
    hcm.mutable_route_config()
        ->mutable_virtual_hosts(0)
        ->mutable_routes(2)
        ->mutable_route()
        ->set_cluster("nope");
  });
  auto result = translateBootstrap(b, testRegistry());
  EXPECT_TRUE(result.isOk()) << result.status().message();
}

TEST(TranslateBootstrap, StaticClusterWithHostname) {
  Bootstrap b = edge();
  b.mutable_static_resources()
      ->mutable_clusters(0)
      ->mutable_load_assignment()
      ->mutable_endpoints(0)
      ->mutable_lb_endpoints(1)
      ->mutable_endpoint()
      ->mutable_address()
      ->mutable_socket_address()
      ->set_address("backend.local");
  EXPECT_EQ(translateError(b),
            "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[1].endpoint."
            "address.socket_address.address: 'backend.local' is not an IP address (a STATIC "
            "cluster needs IP addresses; use STRICT_DNS for names)");
}

TEST(TranslateBootstrap, BadPorts) {
  Bootstrap b = edge();
  b.mutable_static_resources()
      ->mutable_listeners(0)
      ->mutable_address()
      ->mutable_socket_address()
      ->set_port_value(70000);
  b.mutable_static_resources()
      ->mutable_clusters(1)
      ->mutable_load_assignment()
      ->mutable_endpoints(0)
      ->mutable_lb_endpoints(0)
      ->mutable_endpoint()
      ->mutable_address()
      ->mutable_socket_address()
      ->set_port_value(0);
  EXPECT_EQ(translateError(b),
            "static_resources.clusters[1].load_assignment.endpoints[0].lb_endpoints[0].endpoint."
            "address.socket_address.port_value: an upstream endpoint needs a port (1-65535)\n"
            "static_resources.listeners[0].address.socket_address.port_value: 70000 is not a "
            "valid port (0-65535)");
}

TEST(TranslateBootstrap, ListenerOnPortZeroIsFine) {
  Bootstrap b = edge();
  b.mutable_static_resources()
      ->mutable_listeners(0)
      ->mutable_address()
      ->mutable_socket_address()
      ->set_port_value(0);
  auto result = translateBootstrap(b, testRegistry());
  ASSERT_TRUE(result.isOk()) << result.status().message();
  EXPECT_EQ((*result)->listeners[0]->address.port, 0u);
}

TEST(TranslateBootstrap, ValueChecks) {
  Bootstrap b = edge();
  auto* api = b.mutable_static_resources()->mutable_clusters(0);
  api->mutable_least_request_lb_config()->mutable_choice_count()->set_value(1);
  api->mutable_connect_timeout()->set_seconds(-1);
  api->mutable_load_assignment()
      ->mutable_endpoints(0)
      ->mutable_lb_endpoints(0)
      ->mutable_load_balancing_weight()
      ->set_value(0);
  editHcm(b, [](HttpConnectionManager& hcm) {
    hcm.clear_stat_prefix();
    hcm.mutable_max_request_headers_kb()->set_value(9000);
  });
  EXPECT_EQ(translateError(b),
            "static_resources.clusters[0].least_request_lb_config.choice_count: must be at least "
            "2, got 1\n"
            "static_resources.clusters[0].connect_timeout: must not be negative\n"
            "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0]."
            "load_balancing_weight: must be at least 1\n" +
                kHcmPath + ".stat_prefix: is required\n" + kHcmPath +
                ".max_request_headers_kb: must be 1-8192, got 9000");
}

TEST(TranslateBootstrap, ProtocolOptionsKeyMustMatch) {
  Bootstrap b = edge();
  auto* options =
      b.mutable_static_resources()->mutable_clusters(0)->mutable_typed_extension_protocol_options();
  (*options)["envoy.extensions.upstreams.http.v3.Other"] =
      options->at("envoy.extensions.upstreams.http.v3.HttpProtocolOptions");
  EXPECT_EQ(translateError(b),
            "static_resources.clusters[0].typed_extension_protocol_options[\"envoy.extensions."
            "upstreams.http.v3.Other\"]: only envoy.extensions.upstreams.http.v3."
            "HttpProtocolOptions is supported");
}

TEST(TranslateBootstrap, RouterFieldsAreRefused) {
  Bootstrap b = edge();
  editHcm(b, [](HttpConnectionManager& hcm) {
    envoy::extensions::filters::http::router::v3::Router router;
    router.set_suppress_envoy_headers(true);
    hcm.mutable_http_filters(0)->mutable_typed_config()->PackFrom(router);
  });
  EXPECT_EQ(translateError(b),
            kHcmPath + ".http_filters[0].typed_config.suppress_envoy_headers: not supported yet");
}

TEST(TranslateCluster, StandsAlone) {
  envoy::config::cluster::v3::Cluster c;
  c.set_name("x");
  auto result = translateCluster(c, "clusters[0]");
  ASSERT_TRUE(result.isOk()) << result.status().message();
  EXPECT_EQ((*result)->name, "x");
  c.clear_name();
  result = translateCluster(c, "clusters[0]");
  ASSERT_FALSE(result.isOk());
  EXPECT_EQ(result.status().message(), "clusters[0].name: is required");
}

}  // namespace
}  // namespace skiff::xds

namespace skiff::xds {
namespace {

// The example configs in conf/ are what users copy: each must load and
// translate.
TEST(TranslateBootstrap, ExampleConfigs) {
  std::string root = __FILE__;
  root = root.substr(0, root.rfind("/test/unit/xds/"));
  for (const char* name : {"default.yaml", "edge.yaml", "front-proxy.yaml"}) {
    const std::string path = root + "/conf/" + name;
    auto bootstrap = loadBootstrapFile(path);
    ASSERT_TRUE(bootstrap.isOk()) << bootstrap.status().message();
    auto snapshot = translateBootstrap(*bootstrap, testRegistry());
    EXPECT_TRUE(snapshot.isOk()) << path << ":\n" << snapshot.status().message();
  }
}

}  // namespace
}  // namespace skiff::xds
