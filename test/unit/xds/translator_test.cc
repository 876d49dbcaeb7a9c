#include "xds/translator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>

#include "envoy/extensions/filters/http/router/v3/router.pb.h"
#include "envoy/extensions/filters/listener/http_inspector/v3/http_inspector.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "envoy/extensions/upstreams/http/v3/http_protocol_options.pb.h"
#include "filters/router/router.h"
#include "xds/bootstrap_loader.h"
#include "xds/field_support.h"

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
          delayed_close_timeout: 0.25s
          common_http_protocol_options: {idle_timeout: 120s}
          http_protocol_options: {enable_trailers: true}
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
    r->registerHttpFilter(filters::kRouterTypeUrl,
                          [](const google::protobuf::Any&, const filters::FilterFactoryContext&)
                              -> Result<std::shared_ptr<const filters::HttpFilterFactory>> {
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
  const config::ListenerConfig& l = *s.listeners.begin()->second;
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
  EXPECT_EQ(h.delayed_close_timeout, milliseconds(250));
  EXPECT_EQ(h.idle_timeout, milliseconds(120000));
  EXPECT_TRUE(h.http1_enable_trailers);
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
  b.mutable_static_resources()->mutable_clusters(1)->mutable_upstream_connection_options();
  b.mutable_admin()->add_access_log()->set_name("log");
  EXPECT_EQ(translateError(b),
            "static_resources.clusters[1].upstream_connection_options: not supported yet\n"
            "admin.access_log: not supported yet\n"
            "layered_runtime: not supported yet");
}

TEST(TranslateBootstrap, UpgradeConfigs) {
  Bootstrap b = edge();
  editHcm(b, [](HttpConnectionManager& hcm) {
    hcm.add_upgrade_configs()->set_upgrade_type("WebSocket");
    auto* connect = hcm.add_upgrade_configs();
    connect->set_upgrade_type("CONNECT");
    connect->mutable_enabled()->set_value(false);
  });
  auto result = translateBootstrap(b, testRegistry());
  ASSERT_TRUE(result.isOk()) << result.status().message();
  const auto& u = (*result)->listeners.begin()->second->filter_chains[0]->http.upgrade_configs;
  ASSERT_EQ(u.size(), 2u);
  EXPECT_EQ(u[0].type, "websocket");  // Compared case-insensitively.
  EXPECT_TRUE(u[0].enabled);
  EXPECT_EQ(u[1].type, "connect");
  EXPECT_FALSE(u[1].enabled);
}

TEST(TranslateBootstrap, UpgradeConfigErrors) {
  Bootstrap b = edge();
  editHcm(b, [](HttpConnectionManager& hcm) {
    hcm.add_upgrade_configs()->set_upgrade_type("websocket");
    hcm.add_upgrade_configs()->set_upgrade_type("WEBSOCKET");
    hcm.add_upgrade_configs();
    hcm.add_upgrade_configs()->set_upgrade_type("h2c");
    hcm.mutable_upgrade_configs(3)->add_filters()->set_name("envoy.filters.http.router");
  });
  EXPECT_EQ(translateError(b), kHcmPath + ".upgrade_configs[3].filters: not supported yet");
  editHcm(b, [](HttpConnectionManager& hcm) { hcm.mutable_upgrade_configs(3)->clear_filters(); });
  EXPECT_EQ(translateError(b), kHcmPath +
                                   ".upgrade_configs[1].upgrade_type: \"WEBSOCKET\" is configured "
                                   "twice\n" +
                                   kHcmPath +
                                   ".upgrade_configs[2].upgrade_type: must not be empty");
}

TEST(TranslateBootstrap, InternalAddressConfig) {
  Bootstrap b = edge();
  auto result = translateBootstrap(b, testRegistry());
  ASSERT_TRUE(result.isOk()) << result.status().message();
  // Not set: no address is internal (Envoy since 1.36).
  EXPECT_TRUE(
      (*result)->listeners.begin()->second->filter_chains[0]->http.internal_address_ranges.empty());
  editHcm(b, [](HttpConnectionManager& hcm) {
    auto* c = hcm.mutable_internal_address_config();
    c->set_unix_sockets(true);
    auto* r = c->add_cidr_ranges();
    r->set_address_prefix("10.0.0.0");
    r->mutable_prefix_len()->set_value(8);
    c->add_cidr_ranges()->set_address_prefix("fd00::");  // No length: 0, every IPv6 address.
  });
  result = translateBootstrap(b, testRegistry());
  ASSERT_TRUE(result.isOk()) << result.status().message();
  const auto& ranges =
      (*result)->listeners.begin()->second->filter_chains[0]->http.internal_address_ranges;
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_TRUE(http::isInternalAddress("10.9.9.9", ranges));
  EXPECT_TRUE(http::isInternalAddress("2001:db8::1", ranges));
  EXPECT_FALSE(http::isInternalAddress("11.0.0.1", ranges));
  editHcm(b, [](HttpConnectionManager& hcm) {
    auto* r = hcm.mutable_internal_address_config()->add_cidr_ranges();
    r->set_address_prefix("10.0.0.0");
    r->mutable_prefix_len()->set_value(33);
  });
  EXPECT_EQ(translateError(b), kHcmPath +
                                   ".internal_address_config.cidr_ranges[2]: \"10.0.0.0/33\" is "
                                   "not an IP address and prefix length");
}

TEST(TranslateBootstrap, MaglevTableSize) {
  Bootstrap b = edge();
  auto* c = b.mutable_static_resources()->mutable_clusters(0);
  c->clear_least_request_lb_config();
  c->set_lb_policy(envoy::config::cluster::v3::Cluster::MAGLEV);
  auto result = translateBootstrap(b, testRegistry());
  ASSERT_TRUE(result.isOk()) << result.status().message();
  const auto& api = *(*result)->clusters.at("api");
  EXPECT_EQ(api.lb_policy, config::ClusterConfig::LbPolicy::kMaglev);
  EXPECT_EQ(api.maglev_table_size, 65537u);  // Envoy's default.

  c->mutable_maglev_lb_config()->mutable_table_size()->set_value(101);
  result = translateBootstrap(b, testRegistry());
  ASSERT_TRUE(result.isOk()) << result.status().message();
  EXPECT_EQ((*result)->clusters.at("api")->maglev_table_size, 101u);

  // Envoy: "The table size of maglev must be prime number".
  c->mutable_maglev_lb_config()->mutable_table_size()->set_value(65536);
  EXPECT_EQ(translateError(b),
            "static_resources.clusters[0].maglev_lb_config.table_size: must be a prime number up "
            "to 5000011, got 65536");
  c->mutable_maglev_lb_config()->mutable_table_size()->set_value(5000077);  // Prime, too big.
  EXPECT_THAT(translateError(b), HasSubstr("got 5000077"));
  c->set_lb_policy(envoy::config::cluster::v3::Cluster::ROUND_ROBIN);
  c->mutable_maglev_lb_config()->mutable_table_size()->set_value(101);
  EXPECT_EQ(translateError(b),
            "static_resources.clusters[0].maglev_lb_config: only a MAGLEV cluster uses it");
}

TEST(TranslateBootstrap, RingHashSizes) {
  Bootstrap b = edge();
  auto* c = b.mutable_static_resources()->mutable_clusters(0);
  c->clear_least_request_lb_config();
  c->set_lb_policy(envoy::config::cluster::v3::Cluster::RING_HASH);
  auto result = translateBootstrap(b, testRegistry());
  ASSERT_TRUE(result.isOk()) << result.status().message();
  const auto& api = *(*result)->clusters.at("api");
  EXPECT_EQ(api.lb_policy, config::ClusterConfig::LbPolicy::kRingHash);
  EXPECT_EQ(api.ring_hash_minimum_size, 1024u);
  EXPECT_EQ(api.ring_hash_maximum_size, 8u * 1024 * 1024);

  auto* ring = c->mutable_ring_hash_lb_config();
  ring->mutable_minimum_ring_size()->set_value(64);
  ring->mutable_maximum_ring_size()->set_value(128);
  result = translateBootstrap(b, testRegistry());
  ASSERT_TRUE(result.isOk()) << result.status().message();
  EXPECT_EQ((*result)->clusters.at("api")->ring_hash_minimum_size, 64u);
  EXPECT_EQ((*result)->clusters.at("api")->ring_hash_maximum_size, 128u);

  ring->mutable_minimum_ring_size()->set_value(256);
  EXPECT_EQ(translateError(b),
            "static_resources.clusters[0].ring_hash_lb_config.minimum_ring_size: 256 is more "
            "than maximum_ring_size 128");
  ring->mutable_minimum_ring_size()->set_value(64);
  ring->set_hash_function(envoy::config::cluster::v3::Cluster::RingHashLbConfig::MURMUR_HASH_2);
  EXPECT_EQ(translateError(b),
            "static_resources.clusters[0].ring_hash_lb_config.hash_function: MURMUR_HASH_2 is not "
            "supported yet");
  ring->set_hash_function(envoy::config::cluster::v3::Cluster::RingHashLbConfig::XX_HASH);
  c->mutable_common_lb_config()
      ->mutable_consistent_hashing_lb_config()
      ->set_use_hostname_for_hashing(true);
  c->mutable_common_lb_config()
      ->mutable_consistent_hashing_lb_config()
      ->mutable_hash_balance_factor()
      ->set_value(150);
  EXPECT_EQ(translateError(b),
            "static_resources.clusters[0].common_lb_config.consistent_hashing_lb_config."
            "use_hostname_for_hashing: not supported yet\n"
            "static_resources.clusters[0].common_lb_config.consistent_hashing_lb_config."
            "hash_balance_factor: not supported yet");
  c->clear_common_lb_config();
  c->set_lb_policy(envoy::config::cluster::v3::Cluster::RANDOM);
  EXPECT_EQ(translateError(b),
            "static_resources.clusters[0].ring_hash_lb_config: only a RING_HASH cluster uses it");
}

TEST(TranslateBootstrap, RouteHashPolicy) {
  Bootstrap b = edge();
  editHcm(b, [](HttpConnectionManager& hcm) {
    auto* action =
        hcm.mutable_route_config()->mutable_virtual_hosts(0)->mutable_routes(2)->mutable_route();
    action->add_hash_policy()->mutable_header()->set_header_name("x-user");
    action->add_hash_policy()->mutable_filter_state()->set_key("k");
    auto* cookie = action->add_hash_policy()->mutable_cookie();
    cookie->set_name("session");
    cookie->mutable_ttl()->set_seconds(60);
    action->add_hash_policy()->mutable_connection_properties()->set_source_ip(true);
    action->mutable_hash_policy(3)->set_terminal(true);
  });
  EXPECT_EQ(translateError(b),
            kHcmPath +
                ".route_config.virtual_hosts[0].routes[2].route.hash_policy[1].filter_state: not "
                "supported yet");
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

TEST(TranslateBootstrap, RdsNeedsAnAdsConfigSource) {
  Bootstrap b = edge();
  editHcm(b,
          [](HttpConnectionManager& hcm) { hcm.mutable_rds()->set_route_config_name("routes"); });
  EXPECT_EQ(translateError(b),
            kHcmPath + ".rds.config_source: only ads: {} is supported as a config source\n" +
                kHcmPath + ".rds.config_source.resource_api_version: only V3 is supported");
}

TEST(TranslateBootstrap, RdsOverAdsNamesTheRouteConfiguration) {
  Bootstrap b = edge();
  editHcm(b, [](HttpConnectionManager& hcm) {
    hcm.mutable_rds()->set_route_config_name("routes");
    hcm.mutable_rds()->mutable_config_source()->mutable_ads();
    hcm.mutable_rds()->mutable_config_source()->set_resource_api_version(
        envoy::config::core::v3::V3);
  });
  auto s = translateBootstrap(b, testRegistry());
  ASSERT_TRUE(s.isOk()) << s.status().message();
  const auto& http = (*s)->listeners.begin()->second->filter_chains[0]->http;
  EXPECT_EQ(http.rds_route_config_name, "routes");
  EXPECT_EQ(http.route_table, nullptr);
}

// An ADS bootstrap: CDS and LDS over one delta stream to a static cluster;
// an EDS cluster; static routes may name clusters CDS sends later.
constexpr const char* kAds = R"(
node: {id: "sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local", cluster: app}
dynamic_resources:
  ads_config:
    api_type: DELTA_GRPC
    transport_api_version: V3
    grpc_services: [{envoy_grpc: {cluster_name: xds}}]
  cds_config: {ads: {}, resource_api_version: V3, initial_fetch_timeout: 3s}
  lds_config: {ads: {}, resource_api_version: V3}
static_resources:
  clusters:
  - name: xds
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment:
      cluster_name: xds
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 18000}}}}]}]
  - name: mesh
    type: EDS
    eds_cluster_config: {service_name: mesh-v1, eds_config: {ads: {}, resource_api_version: V3}}
)";

TEST(TranslateBootstrap, AdsDynamicResources) {
  auto b = loadBootstrapYaml(kAds);
  ASSERT_TRUE(b.isOk()) << b.status().message();
  auto s = translateBootstrap(*b, testRegistry());
  ASSERT_TRUE(s.isOk()) << s.status().message();
  const config::AdsConfig& ads = (*s)->ads;
  EXPECT_TRUE(ads.enabled);
  EXPECT_TRUE(ads.delta);
  EXPECT_TRUE(ads.cds);
  EXPECT_TRUE(ads.lds);
  EXPECT_EQ(ads.cluster, "xds");
  EXPECT_EQ(ads.initial_fetch_timeout, milliseconds(3000));
  const auto& mesh = *(*s)->clusters.at("mesh");
  EXPECT_EQ(mesh.type, config::ClusterConfig::Type::kEds);
  EXPECT_EQ(mesh.eds_service_name, "mesh-v1");
}

TEST(TranslateBootstrap, AdsClusterMustBeStatic) {
  auto b = loadBootstrapYaml(kAds);
  ASSERT_TRUE(b.isOk());
  b->mutable_dynamic_resources()
      ->mutable_ads_config()
      ->mutable_grpc_services(0)
      ->mutable_envoy_grpc()
      ->set_cluster_name("nowhere");
  b->mutable_dynamic_resources()->mutable_ads_config()->set_api_type(
      envoy::config::core::v3::ApiConfigSource::REST);
  EXPECT_EQ(translateError(*b),
            "dynamic_resources.ads_config.api_type: REST is not supported (GRPC or DELTA_GRPC)\n"
            "dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name: 'nowhere' is "
            "not a static cluster");
}

TEST(TranslateBootstrap, EdsClusterTakesNoLoadAssignment) {
  auto b = loadBootstrapYaml(kAds);
  ASSERT_TRUE(b.isOk());
  auto* mesh = b->mutable_static_resources()->mutable_clusters(1);
  mesh->mutable_load_assignment()->set_cluster_name("mesh");
  mesh->mutable_eds_cluster_config()->mutable_eds_config()->clear_ads();
  EXPECT_EQ(translateError(*b),
            "static_resources.clusters[1].eds_cluster_config.eds_config: only ads: {} is "
            "supported as a config source\n"
            "static_resources.clusters[1].load_assignment: an EDS cluster takes its endpoints "
            "from EDS; remove it");
}

TEST(TranslateCluster, DefinitionHashIgnoresEndpoints) {
  auto b = loadBootstrapYaml(kAds);
  ASSERT_TRUE(b.isOk());
  envoy::config::cluster::v3::Cluster c = b->static_resources().clusters(0);
  auto first = translateCluster(c, "c");
  c.mutable_load_assignment()
      ->mutable_endpoints(0)
      ->mutable_lb_endpoints(0)
      ->mutable_endpoint()
      ->mutable_address()
      ->mutable_socket_address()
      ->set_port_value(18001);
  auto second = translateCluster(c, "c");
  c.mutable_connect_timeout()->set_seconds(9);
  auto third = translateCluster(c, "c");
  ASSERT_TRUE(first.isOk() && second.isOk() && third.isOk());
  EXPECT_EQ((*first)->definition_hash, (*second)->definition_hash);
  EXPECT_NE((*first)->definition_hash, (*third)->definition_hash);
  EXPECT_EQ((*second)->endpoints[0].address.port, 18001u);
}

TEST(TranslateCluster, EndpointHealthStatusIsEnvoys) {
  using EdsHealth = config::ClusterConfig::Endpoint::EdsHealth;
  auto b = loadBootstrapYaml(kAds);
  ASSERT_TRUE(b.isOk());
  envoy::config::cluster::v3::Cluster c = b->static_resources().clusters(0);
  auto* lb = c.mutable_load_assignment()->mutable_endpoints(0)->mutable_lb_endpoints(0);
  auto before = translateCluster(c, "c");
  ASSERT_TRUE(before.isOk()) << before.status().message();
  EXPECT_EQ((*before)->endpoints[0].eds_health, EdsHealth::kHealthy);
  const std::pair<envoy::config::core::v3::HealthStatus, EdsHealth> cases[] = {
      {envoy::config::core::v3::UNKNOWN, EdsHealth::kHealthy},
      {envoy::config::core::v3::HEALTHY, EdsHealth::kHealthy},
      {envoy::config::core::v3::UNHEALTHY, EdsHealth::kFailed},
      {envoy::config::core::v3::TIMEOUT, EdsHealth::kFailed},
      {envoy::config::core::v3::DRAINING, EdsHealth::kDraining},
      {envoy::config::core::v3::DEGRADED, EdsHealth::kDegraded},
  };
  for (const auto& [status, health] : cases) {
    lb->set_health_status(status);
    auto result = translateCluster(c, "c");
    ASSERT_TRUE(result.isOk()) << result.status().message();
    EXPECT_EQ((*result)->endpoints[0].eds_health, health) << status;
    // A status change is an endpoint change: the cluster keeps its hosts.
    EXPECT_EQ((*result)->definition_hash, (*before)->definition_hash);
  }
}

TEST(TranslateCluster, EndpointPriorities) {
  using envoy::config::cluster::v3::Cluster;
  Cluster c;
  c.set_name("web");
  c.set_type(Cluster::STATIC);
  auto* cla = c.mutable_load_assignment();
  cla->set_cluster_name("web");
  for (uint32_t priority : {0u, 1u}) {
    auto* group = cla->add_endpoints();
    group->set_priority(priority);
    auto* a = group->add_lb_endpoints()->mutable_endpoint()->mutable_address();
    a->mutable_socket_address()->set_address("127.0.0.1");
    a->mutable_socket_address()->set_port_value(8000 + priority);
  }
  auto result = translateCluster(c, "c");
  ASSERT_TRUE(result.isOk()) << result.status().message();
  ASSERT_EQ((*result)->endpoints.size(), 2u);
  EXPECT_EQ((*result)->endpoints[0].priority, 0u);
  EXPECT_EQ((*result)->endpoints[1].priority, 1u);

  cla->mutable_endpoints(1)->set_priority(128);
  result = translateCluster(c, "c");
  ASSERT_FALSE(result.isOk());
  EXPECT_EQ(result.status().message(),
            "c.load_assignment.endpoints[1].priority: must be at most 127");

  // A STRICT_DNS cluster resolves its endpoints as one host list.
  cla->mutable_endpoints(1)->set_priority(1);
  cla->mutable_endpoints(0)->mutable_lb_endpoints(0)->set_health_status(
      envoy::config::core::v3::DRAINING);
  c.set_type(Cluster::STRICT_DNS);
  result = translateCluster(c, "c");
  ASSERT_FALSE(result.isOk());
  EXPECT_EQ(result.status().message(),
            "c.load_assignment.endpoints[0].lb_endpoints[0].health_status: is not supported on a "
            "STRICT_DNS cluster yet\n"
            "c.load_assignment.endpoints[1].priority: is not supported on a STRICT_DNS cluster "
            "yet");
}

TEST(HashResource, TwoEncodingsOfOneTypedConfigHashTheSame) {
  // A control plane may put an Any's fields in any order; the bytes differ,
  // the resource does not.
  HttpConnectionManager prefix;
  prefix.set_stat_prefix("ingress");
  HttpConnectionManager codec;
  codec.set_codec_type(HttpConnectionManager::HTTP2);
  envoy::config::listener::v3::FilterChain one;
  auto* any = one.add_filters()->mutable_typed_config();
  any->set_type_url("type.googleapis.com/" + prefix.GetTypeName());
  any->set_value(prefix.SerializeAsString() + codec.SerializeAsString());
  envoy::config::listener::v3::FilterChain two = one;
  two.mutable_filters(0)->mutable_typed_config()->set_value(codec.SerializeAsString() +
                                                            prefix.SerializeAsString());
  ASSERT_NE(one.SerializeAsString(), two.SerializeAsString());
  EXPECT_EQ(hashResource(one), hashResource(two));
  codec.set_codec_type(HttpConnectionManager::HTTP1);
  two.mutable_filters(0)->mutable_typed_config()->set_value(codec.SerializeAsString() +
                                                            prefix.SerializeAsString());
  EXPECT_NE(hashResource(one), hashResource(two));
}

TEST(TranslateRouteConfiguration, ChecksClustersOnlyWhenAsked) {
  envoy::config::route::v3::RouteConfiguration rc;
  rc.set_name("r");
  auto* vh = rc.add_virtual_hosts();
  vh->set_name("v");
  vh->add_domains("*");
  auto* route = vh->add_routes();
  route->mutable_match()->set_prefix("/");
  route->mutable_route()->set_cluster("later");
  EXPECT_TRUE(translateRouteConfiguration(rc, "route_configs[r]", {}).isOk());
  rc.mutable_validate_clusters()->set_value(true);
  auto refused = translateRouteConfiguration(rc, "route_configs[r]", {});
  ASSERT_FALSE(refused.isOk());
  EXPECT_EQ(refused.status().message(),
            "route_configs[r].virtual_hosts[0].routes[0].route.cluster: unknown cluster 'later'");
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
                ": the supported network filters are "
                "envoy.filters.network.http_connection_manager (type.googleapis.com/"
                "envoy.extensions.filters.network.http_connection_manager.v3."
                "HttpConnectionManager) and envoy.filters.network.tcp_proxy "
                "(type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy), got "
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
  EXPECT_EQ((*result)->listeners.begin()->second->address.port, 0u);
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
    router.set_suppress_envoy_headers(true);  // Implemented.
    router.set_respect_expected_rq_timeout(true);
    hcm.mutable_http_filters(0)->mutable_typed_config()->PackFrom(router);
  });
  EXPECT_EQ(translateError(b), kHcmPath +
                                   ".http_filters[0].typed_config.respect_expected_rq_timeout: "
                                   "not supported yet");
}

// --- Filter chains, TLS and HTTP/2 -----------------------------------------

// Certificates are made by the openssl command at test time, never committed.
class TranslateTls : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/skiff-xds-tls-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    const std::string script = "set -e; cd '" + dir_ + R"('
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }
key ca
openssl req -x509 -new -key ca.key -out ca.pem -days 3650 -subj /CN=skiff-test-ca
leaf() {
  key "$1"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$1"
  printf 'subjectAltName=%s\n' "$2" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
}
leaf a 'DNS:a.example.test'
leaf wild 'DNS:*.wild.test'
leaf fallback 'DNS:fallback.test'
)";
    std::ofstream(dir_ + "/make-certs.sh") << script;
    ASSERT_EQ(std::system(("bash " + dir_ + "/make-certs.sh").c_str()), 0);
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(dir_); }

  // yaml with every "$DIR" replaced by the certificate folder.
  static Bootstrap load(std::string yaml) {
    for (size_t at = yaml.find("$DIR"); at != std::string::npos; at = yaml.find("$DIR", at)) {
      yaml.replace(at, 4, dir_);
    }
    auto b = loadBootstrapYaml(yaml);
    EXPECT_TRUE(b.isOk()) << b.status().message();
    return b.isOk() ? *b : Bootstrap();
  }

  static std::shared_ptr<const config::Snapshot> translate(const Bootstrap& b) {
    auto result = translateBootstrap(b, testRegistry());
    EXPECT_TRUE(result.isOk()) << result.status().message();
    return result.isOk() ? *result : nullptr;
  }

  static inline std::string dir_;
};

// A filter chain: optional server names, optional TLS with cert name, and an
// HCM whose stat_prefix is the chain's name. Indented for "filter_chains:".
std::string chainYaml(const std::string& name, const std::string& server_names,
                      const std::string& cert, const std::string& indent = "    ") {
  std::string y = indent + "- name: " + name + "\n";
  if (!server_names.empty()) {
    y += indent + "  filter_chain_match: {server_names: [" + server_names + "]}\n";
  }
  if (!cert.empty()) {
    y += indent + "  transport_socket:\n" + indent + "    name: envoy.transport_sockets.tls\n" +
         indent + "    typed_config:\n" + indent +
         "      \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
         "DownstreamTlsContext\n" +
         indent + "      common_tls_context:\n" + indent +
         "        alpn_protocols: [h2, http/1.1]\n" + indent + "        tls_certificates:\n" +
         indent + "        - certificate_chain: {filename: $DIR/" + cert + ".pem}\n" + indent +
         "          private_key: {filename: $DIR/" + cert + ".key}\n";
  }
  y += indent + "  filters:\n" + indent +
       "  - name: envoy.filters.network.http_connection_manager\n" + indent +
       "    typed_config:\n" + indent +
       "      \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_"
       "manager.v3.HttpConnectionManager\n" +
       indent + "      stat_prefix: " + name + "\n" + indent +
       "      route_config: {virtual_hosts: [{name: v, domains: [\"*\"], routes: [{match: "
       "{prefix: /}, direct_response: {status: 200}}]}]}\n" +
       indent +
       "      http_filters: [{name: envoy.filters.http.router, typed_config: {\"@type\": "
       "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]\n";
  return y;
}

std::string listenerYaml(const std::string& chains, const std::string& default_chain = "") {
  std::string y = R"(
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
)";
  if (!chains.empty()) y += "    filter_chains:\n" + chains;
  if (!default_chain.empty()) {
    // chainYaml's "- name:" item, re-indented as a plain mapping.
    std::string d = default_chain;
    d.replace(d.find("- "), 2, "  ");
    y += "    default_filter_chain:\n" + d;
  }
  return y;
}

const std::string kListener = "static_resources.listeners[0]";

TEST_F(TranslateTls, SniChainsAndDefaultChain) {
  auto s = translate(load(listenerYaml(chainYaml("a", "a.example.test, A2.example.test", "a") +
                                           chainYaml("wild", "\"*.wild.test\"", "wild"),
                                       chainYaml("fallback", "", "fallback"))));
  ASSERT_NE(s, nullptr);
  const config::ListenerConfig& l = *s->listeners.begin()->second;
  ASSERT_EQ(l.filter_chains.size(), 2u);
  const config::FilterChainConfig& a = *l.filter_chains[0];
  const config::FilterChainConfig& wild = *l.filter_chains[1];
  ASSERT_NE(l.default_filter_chain, nullptr);
  const config::FilterChainConfig& fallback = *l.default_filter_chain;
  EXPECT_EQ(a.name, "a");
  EXPECT_THAT(a.server_names, ElementsAre("a.example.test", "A2.example.test"));
  EXPECT_EQ(a.http.stat_prefix, "a");
  EXPECT_EQ(wild.http.stat_prefix, "wild");
  EXPECT_EQ(fallback.http.stat_prefix, "fallback");
  ASSERT_NE(a.tls, nullptr);
  ASSERT_NE(wild.tls, nullptr);
  ASSERT_NE(fallback.tls, nullptr);
  EXPECT_TRUE(a.tls->server());
  EXPECT_THAT(a.tls->config().alpn_protocols, ElementsAre("h2", "http/1.1"));
  EXPECT_EQ(a.tls->config().certificates[0].cert_chain_file, dir_ + "/a.pem");

  EXPECT_EQ(l.selectFilterChain("a.example.test"), &a);
  EXPECT_EQ(l.selectFilterChain("a2.example.TEST"), &a);
  EXPECT_EQ(l.selectFilterChain("x.wild.test"), &wild);
  EXPECT_EQ(l.selectFilterChain("wild.test"), &fallback);
  EXPECT_EQ(l.selectFilterChain(""), &fallback);

  // The TLS context for a server name is the one of the chain chosen for it.
  ASSERT_NE(l.tls, nullptr);
  EXPECT_EQ(l.tls->select("a.example.test"), a.tls);
  EXPECT_EQ(l.tls->select("x.wild.test"), wild.tls);
  EXPECT_EQ(l.tls->select("other.test"), fallback.tls);
  EXPECT_EQ(l.tls->select(""), fallback.tls);
}

TEST_F(TranslateTls, ChainWithoutServerNamesIsTheTlsDefault) {
  auto s = translate(
      load(listenerYaml(chainYaml("any", "", "fallback") + chainYaml("a", "a.example.test", "a"),
                        chainYaml("last", "", "wild"))));
  ASSERT_NE(s, nullptr);
  const config::ListenerConfig& l = *s->listeners.begin()->second;
  ASSERT_EQ(l.filter_chains.size(), 2u);
  const config::FilterChainConfig& any = *l.filter_chains[0];
  EXPECT_EQ(l.selectFilterChain("nope.test"), &any);
  EXPECT_EQ(l.selectFilterChain("a.example.test"), l.filter_chains[1].get());
  EXPECT_EQ(l.tls->select("nope.test"), any.tls);
  EXPECT_EQ(l.tls->select(""), any.tls);
}

TEST_F(TranslateTls, OnlyNamedChainsHaveNoDefault) {
  auto s = translate(load(listenerYaml(chainYaml("a", "a.example.test", "a"))));
  ASSERT_NE(s, nullptr);
  const config::ListenerConfig& l = *s->listeners.begin()->second;
  EXPECT_EQ(l.selectFilterChain("other.test"), nullptr);
  EXPECT_EQ(l.tls->select("other.test"), nullptr);
  EXPECT_EQ(l.tls->select("a.example.test"), l.filter_chains[0]->tls);
}

TEST_F(TranslateTls, PlaintextChainsHaveNoSelector) {
  auto s = translate(load(listenerYaml("", chainYaml("d", "", ""))));
  ASSERT_NE(s, nullptr);
  const config::ListenerConfig& l = *s->listeners.begin()->second;
  EXPECT_TRUE(l.filter_chains.empty());
  EXPECT_EQ(l.tls, nullptr);
  EXPECT_EQ(l.selectFilterChain(""), l.default_filter_chain.get());
}

TEST_F(TranslateTls, ListenerErrors) {
  // The second chain is named, not the first.
  EXPECT_EQ(translateError(load(listenerYaml(chainYaml("a", "a.example.test", "a") +
                                             chainYaml("b", "b.test, A.Example.test", "wild")))),
            kListener +
                ".filter_chains[1].filter_chain_match.server_names[1]: 'A.Example.test' is "
                "already matched by " +
                kListener + ".filter_chains[0]");
  EXPECT_EQ(translateError(load(listenerYaml(chainYaml("a", "", "a") + chainYaml("b", "", "a")))),
            kListener + ".filter_chains[1]: has the same filter_chain_match as " + kListener +
                ".filter_chains[0] (neither names server_names)");
  EXPECT_EQ(translateError(
                load(listenerYaml(chainYaml("a", "a.example.test", "a"), chainYaml("d", "", "")))),
            kListener +
                ": mixing TLS and plaintext filter chains needs the "
                "envoy.filters.listener.tls_inspector listener filter");
  EXPECT_EQ(translateError(load(listenerYaml(chainYaml("a", "a.example.test", "")))),
            kListener +
                ".filter_chains[0].filter_chain_match.server_names: needs a TLS transport_socket "
                "(a plaintext connection has no server name)");
  EXPECT_EQ(translateError(load(listenerYaml(chainYaml("a", "\"*\", \"w*.test\"", "a")))),
            kListener +
                ".filter_chains[0].filter_chain_match.server_names[0]: '*': only exact names and "
                "a leading \"*.\" wildcard are supported (omit server_names to match any name)\n" +
                kListener +
                ".filter_chains[0].filter_chain_match.server_names[1]: 'w*.test': only exact "
                "names and a leading \"*.\" wildcard are supported (omit server_names to match "
                "any name)");
  EXPECT_EQ(translateError(load(listenerYaml("", chainYaml("d", "a.test", "a")))),
            kListener +
                ".default_filter_chain.filter_chain_match: has no effect on the default filter "
                "chain; remove it");
  EXPECT_EQ(translateError(load(R"(
static_resources:
  listeners: [{name: l, address: {socket_address: {address: 127.0.0.1, port_value: 0}}}]
)")),
            kListener +
                ".filter_chains: at least one filter chain (or a default_filter_chain) is "
                "required");
}

TEST_F(TranslateTls, TransportSocketErrors) {
  // A certificate that can't be read: TlsContext::create's error, with the path.
  std::string missing = listenerYaml(chainYaml("a", "", "nope"));
  EXPECT_THAT(
      translateError(load(missing)),
      ::testing::StartsWith(kListener + ".filter_chains[0].transport_socket.typed_config: "));
  EXPECT_THAT(translateError(load(missing)), HasSubstr("nope.pem"));

  // An UpstreamTlsContext on a listener.
  std::string upstream = listenerYaml(chainYaml("a", "", "a"));
  upstream.replace(upstream.find("DownstreamTlsContext"), 20, "UpstreamTlsContext");
  EXPECT_EQ(translateError(load(upstream)),
            kListener +
                ".filter_chains[0].transport_socket.typed_config: a filter chain's transport "
                "socket must be type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                "DownstreamTlsContext, got 'type.googleapis.com/envoy.extensions.transport_"
                "sockets.tls.v3.UpstreamTlsContext'");

  Bootstrap b = load(listenerYaml(chainYaml("a", "", "a")));
  b.mutable_static_resources()
      ->mutable_listeners(0)
      ->mutable_filter_chains(0)
      ->mutable_transport_socket()
      ->clear_typed_config();
  EXPECT_EQ(translateError(b),
            kListener +
                ".filter_chains[0].transport_socket.typed_config: is required "
                "(envoy.transport_sockets.tls with type.googleapis.com/envoy.extensions."
                "transport_sockets.tls.v3.DownstreamTlsContext)");
}

// The walker lets exactly tls_translator's fields through; the rest are
// refused by path, before or during translation.
TEST_F(TranslateTls, UnsupportedTlsFieldsAreNamed) {
  auto withTls = [](const std::string& extra) {
    std::string y = listenerYaml(chainYaml("a", "", "a"));
    const std::string at = "            alpn_protocols: [h2, http/1.1]\n";
    y.replace(y.find(at), at.size(), at + extra);
    return y;
  };
  const std::string ctx = kListener + ".filter_chains[0].transport_socket.typed_config";
  EXPECT_EQ(translateError(load(withTls("            validation_context:\n"
                                        "              trusted_ca: {environment_variable: CA}\n"))),
            ctx +
                ".common_tls_context.validation_context.trusted_ca.environment_variable: not "
                "supported yet");
  // SDS references: over ADS only (xds/dynamic_config writes secrets in).
  EXPECT_EQ(translateError(load(withTls(
                "            tls_certificate_sds_secret_configs: [{name: s, sds_config: {ads: "
                "{}}}]\n"))),
            ctx +
                ".common_tls_context.tls_certificate_sds_secret_configs: secrets over SDS work "
                "in resources from ADS only; a static file names its certificates inline or by "
                "filename");
  // safe_regex is a StringMatcher field routes use, so tls_translator refuses it.
  EXPECT_EQ(translateError(load(withTls(
                "            validation_context:\n"
                "              trusted_ca: {filename: $DIR/ca.pem}\n"
                "              match_typed_subject_alt_names:\n"
                "              - {san_type: DNS, matcher: {safe_regex: {regex: \"a.*\"}}}\n"))),
            ctx +
                ".common_tls_context.validation_context.match_typed_subject_alt_names[0].matcher."
                "safe_regex: not supported yet");
}

// A plaintext chain with filter_chain_match `match` (a YAML flow mapping).
std::string matchChain(const std::string& name, const std::string& match) {
  std::string y = chainYaml(name, "", "");
  const std::string first = "    - name: " + name + "\n";
  return first + "      filter_chain_match: " + match + "\n" + y.substr(first.size());
}

sockaddr_storage socketAddress(const char* ip, uint16_t port) {
  sockaddr_storage ss{};
  auto* in = reinterpret_cast<sockaddr_in*>(&ss);
  in->sin_family = AF_INET;
  in->sin_port = htons(port);
  EXPECT_EQ(inet_pton(AF_INET, ip, &in->sin_addr), 1) << ip;
  return ss;
}

TEST_F(TranslateTls, FilterChainMatchOnAddressesInEnvoysOrder) {
  auto s = translate(load(listenerYaml(
      matchChain("port", "{destination_port: 8080}") +
      matchChain("port_range",
                 "{destination_port: 9090, prefix_ranges: [{address_prefix: 10.0.0.0, "
                 "prefix_len: 8}]}") +
      matchChain("ip", "{prefix_ranges: [{address_prefix: 10.1.2.3, prefix_len: 32}]}") +
      matchChain("net", "{prefix_ranges: [{address_prefix: 10.1.0.0, prefix_len: 16}]}") +
      matchChain("src", "{source_prefix_ranges: [{address_prefix: 192.168.0.0, prefix_len: 16}]}") +
      matchChain("src_port",
                 "{source_prefix_ranges: [{address_prefix: 192.168.0.0, prefix_len: 16}], "
                 "source_ports: [5000]}") +
      chainYaml("any", "", ""))));
  ASSERT_NE(s, nullptr);
  const config::ListenerConfig& l = *s->listeners.begin()->second;
  EXPECT_TRUE(l.match_local_address);
  EXPECT_TRUE(l.match_peer_address);
  auto pick = [&](const char* local_ip, uint16_t local_port, const char* peer_ip,
                  uint16_t peer_port) -> std::string {
    sockaddr_storage local = socketAddress(local_ip, local_port);
    sockaddr_storage peer = socketAddress(peer_ip, peer_port);
    const config::FilterChainConfig* c = l.selectFilterChain(
        config::ListenerConfig::ConnectionInfo{reinterpret_cast<sockaddr*>(&local),
                                               reinterpret_cast<sockaddr*>(&peer),
                                               "",
                                               config::FilterChainConfig::Transport::kAny,
                                               {}});
    return c ? c->name : "(none)";
  };
  EXPECT_EQ(pick("10.1.2.3", 8080, "1.1.1.1", 1), "port");
  // The destination port comes first: it beats a /32 on the address.
  EXPECT_EQ(pick("10.1.2.3", 9090, "1.1.1.1", 1), "port_range");
  EXPECT_EQ(pick("10.1.2.3", 9091, "1.1.1.1", 1), "ip");  // The longest prefix.
  EXPECT_EQ(pick("10.1.9.9", 9091, "1.1.1.1", 1), "net");
  EXPECT_EQ(pick("11.0.0.1", 1, "192.168.1.1", 5000), "src_port");
  EXPECT_EQ(pick("11.0.0.1", 1, "192.168.1.1", 5001), "src");
  EXPECT_EQ(pick("11.0.0.1", 1, "8.8.8.8", 5000), "any");
  // Port 9090 leaves port_range alone, whose ranges do not hold 11.0.0.1:
  // no chain, as in Envoy (the chains without a port are not tried again).
  EXPECT_EQ(pick("11.0.0.1", 9090, "1.1.1.1", 1), "(none)");
}

TEST_F(TranslateTls, FilterChainMatchRefusals) {
  auto error = [&](const std::string& chains) {
    auto result = translateBootstrap(load(listenerYaml(chains)), testRegistry());
    return result.isOk() ? std::string("(accepted)") : result.status().message();
  };
  const std::string chains = kListener + ".filter_chains";
  EXPECT_EQ(
      error(matchChain("a", "{destination_port: 80}") + matchChain("b", "{destination_port: 80}")),
      chains + "[1]: has the same filter_chain_match as " + chains + "[0]");
  // One shared range is enough, as in Envoy's matching tree.
  EXPECT_EQ(error(matchChain("a",
                             "{prefix_ranges: [{address_prefix: 10.0.0.0, prefix_len: 8}, "
                             "{address_prefix: 11.0.0.0, prefix_len: 8}]}") +
                  matchChain("b", "{prefix_ranges: [{address_prefix: 11.9.9.9, prefix_len: 8}]}")),
            chains + "[1]: has the same filter_chain_match as " + chains + "[0]");
  EXPECT_EQ(error(matchChain("a", "{destination_port: 80}") +
                  matchChain("b", "{destination_port: 81}") + chainYaml("c", "", "")),
            "(accepted)");
  EXPECT_EQ(error(matchChain("a", "{prefix_ranges: [{address_prefix: 10.0.0.0, prefix_len: 33}]}")),
            chains +
                "[0].filter_chain_match.prefix_ranges[0]: \"10.0.0.0/33\" is not an IP "
                "address and prefix length");
  EXPECT_EQ(
      error(matchChain("a", "{source_ports: [0]}")),
      chains + "[0].filter_chain_match.source_ports[0]: must be a port from 1 to 65535, got 0");
  // A plaintext connection has no application protocols without
  // http_inspector: Envoy would never choose the chain.
  EXPECT_EQ(error(matchChain("p", "{application_protocols: [h2c]}")),
            chains +
                "[0].filter_chain_match.application_protocols: a plaintext chain matches them "
                "only with the envoy.filters.listener.http_inspector listener filter (or give "
                "the chain a TLS transport_socket: the ClientHello's ALPN)");
}

// A TLS chain with filter_chain_match `match`, serving cert a.test.
std::string tlsMatchChain(const std::string& name, const std::string& match) {
  std::string y = chainYaml(name, "", "a");
  const std::string first = "    - name: " + name + "\n";
  return first + "      filter_chain_match: " + match + "\n" + y.substr(first.size());
}

TEST_F(TranslateTls, TlsChainsMatchOnAddressesAlpnAndSourceTypeInEnvoysOrder) {
  auto s = translate(load(listenerYaml(
      tlsMatchChain("port", "{destination_port: 443}") +
      tlsMatchChain("port_h2", "{destination_port: 443, application_protocols: [h2]}") +
      tlsMatchChain("port_http11", "{destination_port: 443, application_protocols: [http/1.1]}") +
      tlsMatchChain("istio", "{application_protocols: [istio-peer-exchange, istio]}") +
      tlsMatchChain("direct",
                    "{direct_source_prefix_ranges: [{address_prefix: 10.0.0.0, prefix_len: 8}], "
                    "source_prefix_ranges: [{address_prefix: 10.9.0.0, prefix_len: 16}]}") +
      tlsMatchChain("src", "{source_prefix_ranges: [{address_prefix: 10.9.9.0, prefix_len: 24}]}") +
      tlsMatchChain("local", "{source_type: SAME_IP_OR_LOOPBACK}") +
      tlsMatchChain("external", "{source_type: EXTERNAL}"))));
  ASSERT_NE(s, nullptr);
  const config::ListenerConfig& l = *s->listeners.begin()->second;
  EXPECT_TRUE(l.choose_tls_chain_in_hello);
  EXPECT_TRUE(l.match_application_protocols);
  auto pick = [&](const char* local_ip, uint16_t local_port, const char* peer_ip,
                  std::vector<std::string_view> alpn) -> std::string {
    sockaddr_storage local = socketAddress(local_ip, local_port);
    sockaddr_storage peer = socketAddress(peer_ip, 40000);
    const config::FilterChainConfig* c = l.selectFilterChain(config::ListenerConfig::ConnectionInfo{
        reinterpret_cast<sockaddr*>(&local), reinterpret_cast<sockaddr*>(&peer), "a.test",
        config::FilterChainConfig::Transport::kTls, alpn});
    return c ? c->name : "(none)";
  };
  // The port first, then the protocols in the client's order of preference.
  EXPECT_EQ(pick("10.0.0.1", 443, "8.8.8.8", {"h2", "http/1.1"}), "port_h2");
  EXPECT_EQ(pick("10.0.0.1", 443, "8.8.8.8", {"http/1.1", "h2"}), "port_http11");
  EXPECT_EQ(pick("10.0.0.1", 443, "8.8.8.8", {"h3"}), "port");
  EXPECT_EQ(pick("10.0.0.1", 443, "8.8.8.8", {}), "port");
  EXPECT_EQ(pick("10.0.0.1", 8443, "8.8.8.8", {"istio", "h2"}), "istio");
  // Direct source before source type and source: the direct /8 wins, and
  // only then does its own source range have to hold.
  EXPECT_EQ(pick("10.0.0.1", 8443, "10.9.9.9", {"h2"}), "direct");
  EXPECT_EQ(pick("10.0.0.1", 8443, "10.8.0.1", {"h2"}), "(none)");
  // Source type: loopback, or the connection's own IP, is "same IP".
  EXPECT_EQ(pick("10.0.0.1", 8443, "127.0.0.1", {}), "local");
  EXPECT_EQ(pick("192.168.0.1", 8443, "192.168.0.1", {}), "local");
  EXPECT_EQ(pick("192.168.0.1", 8443, "192.168.0.2", {}), "external");

  // Two chains that both name h2 take the same connections, as in Envoy.
  auto result = translateBootstrap(
      load(listenerYaml(tlsMatchChain("p", "{application_protocols: [h2]}") +
                        tlsMatchChain("q", "{application_protocols: [istio, h2]}"))),
      testRegistry());
  ASSERT_FALSE(result.isOk());
  EXPECT_EQ(result.status().message(), kListener +
                                           ".filter_chains[1]: has the same "
                                           "filter_chain_match as " +
                                           kListener + ".filter_chains[0]");
}

TEST_F(TranslateTls, TransportProtocolWithTlsInspector) {
  const std::string inspector = R"(    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector
)";
  std::string tls = chainYaml("tls", "", "a");
  tls.replace(tls.find("    - name: tls\n"), 16,
              "    - name: tls\n      filter_chain_match: {transport_protocol: tls}\n");
  const std::string chains = tls + matchChain("plain", "{transport_protocol: raw_buffer}");
  auto s = translate(load(listenerYaml(chains) + inspector));
  ASSERT_NE(s, nullptr);
  const config::ListenerConfig& l = *s->listeners.begin()->second;
  EXPECT_TRUE(l.inspect_tls);
  EXPECT_TRUE(l.match_transport);
  ASSERT_NE(l.tls, nullptr);
  using T = config::FilterChainConfig::Transport;
  EXPECT_EQ(l.selectFilterChain({nullptr, nullptr, "a.test", T::kTls, {}})->name, "tls");
  EXPECT_EQ(l.selectFilterChain({nullptr, nullptr, "", T::kRawBuffer, {}})->name, "plain");

  auto error = [&](const std::string& yaml) {
    auto result = translateBootstrap(load(yaml), testRegistry());
    return result.isOk() ? std::string("(accepted)") : result.status().message();
  };
  const std::string fc = kListener + ".filter_chains";
  EXPECT_EQ(error(listenerYaml(chains)),
            fc +
                ": a filter_chain_match.transport_protocol 'tls' needs the "
                "envoy.filters.listener.tls_inspector listener filter\n" +
                kListener +
                ": mixing TLS and plaintext filter chains needs the "
                "envoy.filters.listener.tls_inspector listener filter");
  EXPECT_EQ(error(listenerYaml(matchChain("p", "{transport_protocol: tls}")) + inspector),
            fc + "[0].filter_chain_match.transport_protocol: 'tls' needs a TLS transport_socket "
                 "(skiff terminates TLS; passing it through is not supported yet)");
  std::string raw_tls = chainYaml("t", "", "a");
  raw_tls.replace(raw_tls.find("    - name: t\n"), 14,
                  "    - name: t\n      filter_chain_match: {transport_protocol: raw_buffer}\n");
  EXPECT_EQ(error(listenerYaml(raw_tls) + inspector),
            fc + "[0].filter_chain_match.transport_protocol: 'raw_buffer' takes plaintext "
                 "connections, which a TLS transport_socket cannot serve");
  // Without tls_inspector every connection is raw_buffer, in Envoy as in skiff.
  auto raw = translateBootstrap(
      load(listenerYaml(matchChain("p", "{transport_protocol: raw_buffer}"))), testRegistry());
  ASSERT_TRUE(raw.isOk()) << raw.status().message();
  EXPECT_EQ((*raw)
                ->listeners.begin()
                ->second->selectFilterChain({nullptr, nullptr, "", T::kRawBuffer, {}})
                ->name,
            "p");
  EXPECT_EQ(error(listenerYaml(matchChain("p", "{transport_protocol: quic}")) + inspector),
            fc + "[0].filter_chain_match.transport_protocol: 'quic' is not supported (\"tls\" or "
                 "\"raw_buffer\")");
}

const std::string kHttpInspector = R"(    - name: envoy.filters.listener.http_inspector
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector
)";
const std::string kTlsInspector = R"(    - name: envoy.filters.listener.tls_inspector
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector
)";

TEST_F(TranslateTls, HttpInspectorLetsPlaintextChainsMatchApplicationProtocols) {
  // Istio's inbound listener: HTTP on one chain, anything else on another,
  // TLS on a third.
  const std::string chains =
      matchChain("http",
                 "{transport_protocol: raw_buffer, application_protocols: [http/1.0, http/1.1, "
                 "h2c]}") +
      matchChain("tcp", "{transport_protocol: raw_buffer}") +
      tlsMatchChain("tls", "{transport_protocol: tls}");
  auto s = translate(load(listenerYaml(chains) + "    listener_filters:\n" + kTlsInspector +
                          kHttpInspector + "    listener_filters_timeout: 0.5s\n" +
                          "    continue_on_listener_filters_timeout: true\n"));
  ASSERT_NE(s, nullptr);
  const config::ListenerConfig& l = *s->listeners.begin()->second;
  EXPECT_TRUE(l.inspect_tls);
  EXPECT_TRUE(l.inspect_http);
  EXPECT_FALSE(l.inspect_http_first);
  EXPECT_EQ(l.listener_filters_timeout.count(), 500);
  EXPECT_TRUE(l.continue_on_listener_filters_timeout);
  using T = config::FilterChainConfig::Transport;
  auto pick = [&](T transport, std::vector<std::string_view> protocols) -> std::string {
    const config::FilterChainConfig* c =
        l.selectFilterChain({nullptr, nullptr, "", transport, protocols});
    return c ? c->name : "(none)";
  };
  EXPECT_EQ(pick(T::kRawBuffer, {"http/1.1"}), "http");
  EXPECT_EQ(pick(T::kRawBuffer, {"http/1.0"}), "http");
  EXPECT_EQ(pick(T::kRawBuffer, {"h2c"}), "http");
  EXPECT_EQ(pick(T::kRawBuffer, {}), "tcp");
  EXPECT_EQ(pick(T::kTls, {"h2"}), "tls");

  // Named first, it inspects TLS connections too (Envoy's order).
  s = translate(
      load(listenerYaml(chains) + "    listener_filters:\n" + kHttpInspector + kTlsInspector));
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(s->listeners.begin()->second->inspect_http_first);
  EXPECT_EQ(s->listeners.begin()->second->listener_filters_timeout.count(), 15000);
  EXPECT_FALSE(s->listeners.begin()->second->continue_on_listener_filters_timeout);

  // Plaintext only, without tls_inspector.
  s = translate(load(listenerYaml(matchChain("http", "{application_protocols: [http/1.1]}") +
                                  chainYaml("tcp", "", "")) +
                     "    listener_filters:\n" + kHttpInspector));
  ASSERT_NE(s, nullptr);
  EXPECT_FALSE(s->listeners.begin()->second->inspect_tls);
  EXPECT_TRUE(s->listeners.begin()->second->inspect_http);
  EXPECT_FALSE(s->listeners.begin()->second->inspect_http_first);

  // Chains all TLS: the bytes are a ClientHello, nothing to inspect.
  s = translate(
      load(listenerYaml(chainYaml("a", "", "a")) + "    listener_filters:\n" + kHttpInspector));
  ASSERT_NE(s, nullptr);
  EXPECT_FALSE(s->listeners.begin()->second->inspect_http);

  // Without http_inspector the plaintext chain is refused by path, naming it.
  auto result = translateBootstrap(
      load(listenerYaml(chains) + "    listener_filters:\n" + kTlsInspector), testRegistry());
  ASSERT_FALSE(result.isOk());
  EXPECT_EQ(result.status().message(),
            kListener +
                ".filter_chains[0].filter_chain_match.application_protocols: a plaintext chain "
                "matches them only with the envoy.filters.listener.http_inspector listener "
                "filter (or give the chain a TLS transport_socket: the ClientHello's ALPN)");
}

TEST_F(TranslateTls, HttpInspectorOverLds) {
  // LDS hands the translator a Listener decoded from the wire, the
  // inspector's Any packed in binary rather than written in YAML.
  Bootstrap b = load(listenerYaml(matchChain("http", "{application_protocols: [h2c]}") +
                                  chainYaml("tcp", "", "")));
  envoy::config::listener::v3::Listener listener = b.static_resources().listeners(0);
  listener.add_listener_filters()->mutable_typed_config()->PackFrom(
      envoy::extensions::filters::listener::http_inspector::v3::HttpInspector());
  listener.set_continue_on_listener_filters_timeout(true);
  EXPECT_THAT(findUnsupportedFields(listener, "l"), ElementsAre());
  auto result = translateListener(listener, "l", nullptr, testRegistry());
  ASSERT_TRUE(result.isOk()) << result.status().message();
  EXPECT_TRUE((*result)->inspect_http);
  EXPECT_TRUE((*result)->continue_on_listener_filters_timeout);
  EXPECT_EQ((*result)
                ->selectFilterChain({nullptr, nullptr, "",
                                     config::FilterChainConfig::Transport::kRawBuffer,
                                     std::vector<std::string_view>{"h2c"}})
                ->name,
            "http");
}

TEST_F(TranslateTls, TlsInspectorHttpInspectorAndOriginalDstAreAcceptedAndOthersAreNot) {
  std::string y = listenerYaml(chainYaml("a", "", "a"));
  y += R"(    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector
)";
  auto ok = translateBootstrap(load(y));
  ASSERT_TRUE(ok) << ok.status().message();
  EXPECT_TRUE(ok.value()->listeners.begin()->second->tls);
  EXPECT_FALSE(ok.value()->listeners.begin()->second->use_original_dst);

  y += R"(    - name: envoy.filters.listener.original_dst
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst
)";
  ok = translateBootstrap(load(y));
  ASSERT_TRUE(ok) << ok.status().message();
  EXPECT_TRUE(ok.value()->listeners.begin()->second->use_original_dst);

  std::string bad = listenerYaml(chainYaml("a", "", "a"));
  bad += R"(    listener_filters:
    - name: envoy.filters.listener.original_dst
      typed_config: {"@type": type.googleapis.com/google.protobuf.Empty}
)";
  auto err = translateBootstrap(load(bad));
  ASSERT_FALSE(err);
  EXPECT_NE(err.status().message().find(kListener + ".listener_filters[0]"), std::string::npos)
      << err.status().message();
}

TEST(TranslateHttp2, HcmOptions) {
  Bootstrap b = edge();
  editHcm(b, [](HttpConnectionManager& hcm) {
    hcm.set_codec_type(HttpConnectionManager::HTTP2);
    auto* h2 = hcm.mutable_http2_protocol_options();
    h2->mutable_hpack_table_size()->set_value(0);
    h2->mutable_max_concurrent_streams()->set_value(100);
    h2->mutable_initial_stream_window_size()->set_value(65535);
    h2->mutable_initial_connection_window_size()->set_value(1 << 20);
    h2->mutable_max_outbound_frames()->set_value(500);
    h2->mutable_max_outbound_control_frames()->set_value(50);
    h2->mutable_max_consecutive_inbound_frames_with_empty_payload()->set_value(0);
    h2->mutable_max_inbound_priority_frames_per_stream()->set_value(7);
    h2->mutable_max_inbound_window_update_frames_per_data_frame_sent()->set_value(3);
    h2->set_allow_connect(true);
  });
  auto result = translateBootstrap(b, testRegistry());
  ASSERT_TRUE(result.isOk()) << result.status().message();
  const config::HttpConnectionManagerConfig& h =
      (*result)->listeners.begin()->second->filter_chains[0]->http;
  EXPECT_EQ(h.codec_type, config::HttpConnectionManagerConfig::CodecType::kHttp2);
  EXPECT_EQ(h.http2.hpack_table_size, 0u);
  EXPECT_EQ(h.http2.max_concurrent_streams, 100u);
  EXPECT_EQ(h.http2.initial_stream_window_size, 65535u);
  EXPECT_EQ(h.http2.initial_connection_window_size, 1u << 20);
  EXPECT_EQ(h.http2.max_outbound_frames, 500u);
  EXPECT_EQ(h.http2.max_outbound_control_frames, 50u);
  EXPECT_EQ(h.http2.max_consecutive_inbound_frames_with_empty_payload, 0u);
  EXPECT_EQ(h.http2.max_inbound_priority_frames_per_stream, 7u);
  EXPECT_EQ(h.http2.max_inbound_window_update_frames_per_data_frame_sent, 3u);
  EXPECT_EQ(h.http2.max_header_list_size_kb, 32u);  // max_request_headers_kb
  EXPECT_TRUE(h.http2.allow_connect);
  // Not in Http2ProtocolOptions: the codec's defaults stay.
  EXPECT_EQ(h.http2.max_continuations, http::Http2Settings().max_continuations);
}

TEST(TranslateHttp2, HcmOptionErrors) {
  Bootstrap b = edge();
  editHcm(b, [](HttpConnectionManager& hcm) {
    auto* h2 = hcm.mutable_http2_protocol_options();
    h2->mutable_max_concurrent_streams()->set_value(0);
    h2->mutable_initial_stream_window_size()->set_value(100);
    h2->mutable_initial_connection_window_size()->set_value(2147483648u);
    h2->mutable_max_outbound_frames()->set_value(0);
    h2->mutable_max_inbound_window_update_frames_per_data_frame_sent()->set_value(0);
  });
  const std::string p = kHcmPath + ".http2_protocol_options";
  EXPECT_EQ(translateError(b),
            p + ".max_concurrent_streams: must be 1-2147483647, got 0\n" + p +
                ".initial_stream_window_size: must be 65535-2147483647, got 100\n" + p +
                ".initial_connection_window_size: must be 65535-2147483647, got 2147483648\n" + p +
                ".max_outbound_frames: must be at least 1, got 0\n" + p +
                ".max_inbound_window_update_frames_per_data_frame_sent: must be at least 1, got "
                "0");
}

TEST(TranslateHttp2, UnsupportedHttp2FieldsAreNamed) {
  Bootstrap b = edge();
  editHcm(b, [](HttpConnectionManager& hcm) {
    auto* h2 = hcm.mutable_http2_protocol_options();
    h2->set_allow_metadata(true);
    h2->mutable_connection_keepalive();
  });
  EXPECT_EQ(translateError(b), kHcmPath +
                                   ".http2_protocol_options.allow_metadata: not supported "
                                   "yet\n" +
                                   kHcmPath +
                                   ".http2_protocol_options.connection_keepalive: not supported "
                                   "yet");
}

// A cluster to append to kEdge's clusters; $OPTIONS and $TLS are replaced.
constexpr const char* kUpstreamCluster = R"(
static_resources:
  clusters:
  - name: up
    type: STATIC
    load_assignment:
      cluster_name: up
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8443}}}}]}]
)";

// tls: the UpstreamTlsContext's fields in flow style ("sni: x, ..."); nullopt
// for no transport_socket.
std::string upstreamYaml(const std::string& options,
                         const std::optional<std::string>& tls = std::nullopt) {
  std::string y = kUpstreamCluster;
  if (!options.empty()) {
    y += "    typed_extension_protocol_options:\n"
         "      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n"
         "        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3."
         "HttpProtocolOptions\n"
         "        " +
         options + "\n";
  }
  if (tls) {
    y += "    transport_socket:\n"
         "      name: envoy.transport_sockets.tls\n"
         "      typed_config: {\"@type\": type.googleapis.com/envoy.extensions.transport_sockets."
         "tls.v3.UpstreamTlsContext" +
         (tls->empty() ? "" : ", " + *tls) + "}\n";
  }
  return y;
}

const std::string kOptionsPath =
    "static_resources.clusters[0].typed_extension_protocol_options[\"envoy.extensions.upstreams."
    "http.v3.HttpProtocolOptions\"]";

TEST_F(TranslateTls, UpstreamProtocols) {
  using Protocol = config::ClusterConfig::UpstreamProtocol;
  auto cluster = [](const std::string& yaml) -> std::shared_ptr<const config::ClusterConfig> {
    auto s = translate(load(yaml));
    return s ? s->clusters.at("up") : nullptr;
  };
  auto plain = cluster(upstreamYaml(""));
  ASSERT_NE(plain, nullptr);
  EXPECT_EQ(plain->upstream_protocol, Protocol::kHttp1);
  EXPECT_EQ(plain->tls, nullptr);

  auto h2 = cluster(
      upstreamYaml("explicit_http_config: {http2_protocol_options: {max_concurrent_streams: 10, "
                   "initial_stream_window_size: 131072}}",
                   "sni: up.test, common_tls_context: {validation_context: {trusted_ca: {filename: "
                   "$DIR/ca.pem}}}"));
  ASSERT_NE(h2, nullptr);
  EXPECT_EQ(h2->upstream_protocol, Protocol::kHttp2);
  EXPECT_EQ(h2->http2.max_concurrent_streams, 10u);
  EXPECT_EQ(h2->http2.initial_stream_window_size, 131072u);
  ASSERT_NE(h2->tls, nullptr);
  EXPECT_FALSE(h2->tls->server());
  EXPECT_EQ(h2->tls->config().sni, "up.test");
  EXPECT_EQ(h2->tls->config().ca_file, dir_ + "/ca.pem");
  // No alpn_protocols: offer what the protocol needs, as Envoy's pools do.
  EXPECT_THAT(h2->tls->config().alpn_protocols, ElementsAre("h2"));

  auto h1 = cluster(upstreamYaml("explicit_http_config: {http_protocol_options: {}}", ""));
  ASSERT_NE(h1, nullptr);
  EXPECT_EQ(h1->upstream_protocol, Protocol::kHttp1);
  EXPECT_FALSE(h1->http1_enable_trailers);  // Envoy's default.
  auto trailers = cluster(
      upstreamYaml("explicit_http_config: {http_protocol_options: {enable_trailers: true}}", ""));
  ASSERT_NE(trailers, nullptr);
  EXPECT_TRUE(trailers->http1_enable_trailers);
  EXPECT_THAT(h1->tls->config().alpn_protocols, ElementsAre("http/1.1"));

  auto automatic =
      cluster(upstreamYaml("auto_config: {http_protocol_options: {}, http2_protocol_options: "
                           "{hpack_table_size: 0}}",
                           ""));
  ASSERT_NE(automatic, nullptr);
  EXPECT_EQ(automatic->upstream_protocol, Protocol::kAuto);
  EXPECT_FALSE(automatic->http1_enable_trailers);
  EXPECT_EQ(automatic->http2.hpack_table_size, 0u);
  EXPECT_THAT(automatic->tls->config().alpn_protocols, ElementsAre("h2", "http/1.1"));

  // alpn_protocols that are given are kept.
  auto given =
      cluster(upstreamYaml("auto_config: {}", "common_tls_context: {alpn_protocols: [h2]}"));
  ASSERT_NE(given, nullptr);
  EXPECT_THAT(given->tls->config().alpn_protocols, ElementsAre("h2"));

  auto downstream = cluster(upstreamYaml(
      "use_downstream_protocol_config: {http2_protocol_options: {max_outbound_frames: 9}}"));
  ASSERT_NE(downstream, nullptr);
  EXPECT_EQ(downstream->upstream_protocol, Protocol::kUseDownstream);
  EXPECT_EQ(downstream->http2.max_outbound_frames, 9u);

  // The deprecated cluster field.
  std::string deprecated = upstreamYaml("");
  deprecated += "    http2_protocol_options: {max_concurrent_streams: 5}\n";
  auto old = cluster(deprecated);
  ASSERT_NE(old, nullptr);
  EXPECT_EQ(old->upstream_protocol, Protocol::kHttp2);
  EXPECT_EQ(old->http2.max_concurrent_streams, 5u);
}

TEST_F(TranslateTls, UpstreamErrors) {
  EXPECT_EQ(translateError(load(upstreamYaml("auto_config: {}"))),
            kOptionsPath +
                ".auto_config: needs a TLS transport_socket on the cluster (ALPN chooses between "
                "HTTP/2 and HTTP/1.1)");
  EXPECT_EQ(translateError(load(upstreamYaml("common_http_protocol_options: {idle_timeout: 1s}"))),
            kOptionsPath +
                ": needs one of explicit_http_config, use_downstream_protocol_config, "
                "auto_config");
  EXPECT_EQ(translateError(load(upstreamYaml("explicit_http_config: {}"))),
            kOptionsPath +
                ".explicit_http_config: needs http_protocol_options or "
                "http2_protocol_options");
  EXPECT_EQ(translateError(load(upstreamYaml(
                "explicit_http_config: {http2_protocol_options: {max_concurrent_streams: 0}}"))),
            kOptionsPath +
                ".explicit_http_config.http2_protocol_options.max_concurrent_streams: must be "
                "1-2147483647, got 0");
  // Extended CONNECT toward an HTTP/2 upstream is not done yet.
  EXPECT_EQ(translateError(load(upstreamYaml(
                "explicit_http_config: {http2_protocol_options: {allow_connect: true}}"))),
            kOptionsPath +
                ".explicit_http_config.http2_protocol_options.allow_connect: true on a cluster "
                "(extended CONNECT toward an HTTP/2 upstream, RFC 8441) is not supported yet");
  std::string both = upstreamYaml("explicit_http_config: {http_protocol_options: {}}");
  both += "    http2_protocol_options: {}\n";
  EXPECT_EQ(translateError(load(both)),
            "static_resources.clusters[0].http2_protocol_options: cannot be combined with "
            "typed_extension_protocol_options[\"envoy.extensions.upstreams.http.v3."
            "HttpProtocolOptions\"]; use its explicit_http_config.http2_protocol_options");

  std::string wrong = upstreamYaml("", "common_tls_context: {}");
  wrong.replace(wrong.find("UpstreamTlsContext"), 18, "DownstreamTlsContext");
  EXPECT_EQ(translateError(load(wrong)),
            "static_resources.clusters[0].transport_socket.typed_config: a cluster's transport "
            "socket must be type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
            "UpstreamTlsContext, got 'type.googleapis.com/envoy.extensions.transport_sockets."
            "tls.v3.DownstreamTlsContext'");
  EXPECT_EQ(translateError(load(upstreamYaml("", "allow_renegotiation: true"))),
            "static_resources.clusters[0].transport_socket.typed_config.allow_renegotiation: "
            "true is not supported yet");
  EXPECT_EQ(translateError(load(upstreamYaml("", "max_session_keys: 2"))),
            "static_resources.clusters[0].transport_socket.typed_config.max_session_keys: not "
            "supported yet");
  EXPECT_THAT(
      translateError(load(upstreamYaml(
          "", "common_tls_context: {validation_context: {trusted_ca: {filename: $DIR/no.pem}}}"))),
      ::testing::StartsWith("static_resources.clusters[0].transport_socket.typed_config: "));
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

TEST(TranslateCluster, OriginalDst) {
  using envoy::config::cluster::v3::Cluster;
  Cluster c;
  c.set_name("passthrough");
  c.set_type(Cluster::ORIGINAL_DST);
  c.set_lb_policy(Cluster::CLUSTER_PROVIDED);
  auto result = translateCluster(c, "clusters[0]");
  ASSERT_TRUE(result.isOk()) << result.status().message();
  EXPECT_EQ((*result)->type, config::ClusterConfig::Type::kOriginalDst);
  EXPECT_EQ((*result)->lb_policy, config::ClusterConfig::LbPolicy::kClusterProvided);
  EXPECT_EQ((*result)->cleanup_interval.count(), 5000);  // Envoy's default.
  EXPECT_FALSE((*result)->use_http_header);

  c.mutable_cleanup_interval()->set_seconds(2);
  c.mutable_original_dst_lb_config()->set_use_http_header(true);
  c.mutable_original_dst_lb_config()->set_http_header_name("X-Dst");
  c.mutable_original_dst_lb_config()->mutable_upstream_port_override()->set_value(8080);
  result = translateCluster(c, "clusters[0]");
  ASSERT_TRUE(result.isOk()) << result.status().message();
  EXPECT_EQ((*result)->cleanup_interval.count(), 2000);
  EXPECT_TRUE((*result)->use_http_header);
  EXPECT_EQ((*result)->http_header_name, "x-dst");
  EXPECT_EQ((*result)->upstream_port_override, 8080u);

  // Only CLUSTER_PROVIDED, as in Envoy.
  Cluster bad = c;
  bad.set_lb_policy(Cluster::ROUND_ROBIN);
  result = translateCluster(bad, "clusters[0]");
  ASSERT_FALSE(result.isOk());
  EXPECT_EQ(result.status().message(),
            "clusters[0].lb_policy: ROUND_ROBIN is not valid for an ORIGINAL_DST cluster; only "
            "CLUSTER_PROVIDED is");
  // No endpoints, as in Envoy.
  bad = c;
  bad.mutable_load_assignment()->set_cluster_name("passthrough");
  result = translateCluster(bad, "clusters[0]");
  ASSERT_FALSE(result.isOk());
  EXPECT_EQ(result.status().message(),
            "clusters[0].load_assignment: an ORIGINAL_DST cluster makes its hosts from the "
            "original destinations of requests; remove it");
  bad = c;
  bad.mutable_original_dst_lb_config()->set_use_http_header(false);
  result = translateCluster(bad, "clusters[0]");
  ASSERT_FALSE(result.isOk());
  EXPECT_EQ(result.status().message(),
            "clusters[0].original_dst_lb_config.http_header_name: has no effect without "
            "use_http_header: true");

  // CLUSTER_PROVIDED and the ORIGINAL_DST options on another type.
  Cluster other;
  other.set_name("static");
  other.set_lb_policy(Cluster::CLUSTER_PROVIDED);
  result = translateCluster(other, "clusters[1]");
  ASSERT_FALSE(result.isOk());
  EXPECT_EQ(result.status().message(),
            "clusters[1].lb_policy: CLUSTER_PROVIDED is valid only for an ORIGINAL_DST cluster");
  other.set_lb_policy(Cluster::ROUND_ROBIN);
  other.mutable_cleanup_interval()->set_seconds(1);
  result = translateCluster(other, "clusters[1]");
  ASSERT_FALSE(result.isOk());
  EXPECT_EQ(result.status().message(),
            "clusters[1].cleanup_interval: only an ORIGINAL_DST cluster uses it");
  other.clear_cleanup_interval();
  other.mutable_original_dst_lb_config()->set_use_http_header(true);
  result = translateCluster(other, "clusters[1]");
  ASSERT_FALSE(result.isOk());
  EXPECT_EQ(result.status().message(),
            "clusters[1].original_dst_lb_config: only an ORIGINAL_DST cluster uses it");
}

TEST(TranslateCluster, OutlierDetection) {
  using envoy::config::cluster::v3::Cluster;
  Cluster c;
  c.set_name("web");
  auto result = translateCluster(c, "clusters[0]");
  ASSERT_TRUE(result.isOk()) << result.status().message();
  EXPECT_EQ((*result)->outlier_detection, nullptr);
  EXPECT_EQ((*result)->healthy_panic_threshold, 50u);

  // Envoy's defaults.
  c.mutable_outlier_detection();
  result = translateCluster(c, "clusters[0]");
  ASSERT_TRUE(result.isOk()) << result.status().message();
  ASSERT_NE((*result)->outlier_detection, nullptr);
  const config::OutlierDetectionConfig& d = *(*result)->outlier_detection;
  EXPECT_EQ(d.consecutive_5xx, 5u);
  EXPECT_EQ(d.consecutive_gateway_failure, 5u);
  EXPECT_EQ(d.enforcing_consecutive_5xx, 100u);
  EXPECT_EQ(d.enforcing_consecutive_gateway_failure, 0u);
  EXPECT_EQ(d.interval.count(), 10000);
  EXPECT_EQ(d.base_ejection_time.count(), 30000);
  EXPECT_EQ(d.max_ejection_time.count(), 300000);
  EXPECT_EQ(d.max_ejection_percent, 10u);
  EXPECT_FALSE(d.split_external_local_origin_errors);
  EXPECT_EQ(d.enforcing_success_rate, 100u);
  EXPECT_EQ(d.success_rate_minimum_hosts, 5u);
  EXPECT_EQ(d.success_rate_request_volume, 100u);
  EXPECT_EQ(d.success_rate_stdev_factor, 1900u);
  EXPECT_EQ(d.failure_percentage_threshold, 85u);
  EXPECT_EQ(d.failure_percentage_minimum_hosts, 5u);
  EXPECT_EQ(d.failure_percentage_request_volume, 50u);
  EXPECT_EQ(d.enforcing_failure_percentage, 0u);

  // Istio's DestinationRule outlierDetection, as istiod sends it.
  auto* od = c.mutable_outlier_detection();
  od->mutable_consecutive_5xx()->set_value(3);
  od->mutable_consecutive_gateway_failure()->set_value(0);
  od->mutable_enforcing_consecutive_gateway_failure()->set_value(0);
  od->mutable_interval()->set_nanos(200000000);
  od->mutable_base_ejection_time()->set_seconds(600);
  od->mutable_max_ejection_percent()->set_value(100);
  od->mutable_enforcing_success_rate()->set_value(0);
  c.mutable_common_lb_config()->mutable_healthy_panic_threshold()->set_value(0);
  result = translateCluster(c, "clusters[0]");
  ASSERT_TRUE(result.isOk()) << result.status().message();
  EXPECT_EQ((*result)->outlier_detection->consecutive_5xx, 3u);
  EXPECT_EQ((*result)->outlier_detection->interval.count(), 200);
  // max_ejection_time defaults to base_ejection_time when that is larger.
  EXPECT_EQ((*result)->outlier_detection->max_ejection_time.count(), 600000);
  EXPECT_EQ((*result)->outlier_detection->enforcing_success_rate, 0u);
  EXPECT_EQ((*result)->healthy_panic_threshold, 0u);
  c.mutable_common_lb_config()->mutable_healthy_panic_threshold()->set_value(33.5);
  result = translateCluster(c, "clusters[0]");
  ASSERT_TRUE(result.isOk()) << result.status().message();
  EXPECT_EQ((*result)->healthy_panic_threshold, 34u);  // Rounded, as Envoy does.

  Cluster bad = c;
  bad.mutable_outlier_detection()->mutable_max_ejection_time()->set_seconds(1);
  result = translateCluster(bad, "clusters[0]");
  ASSERT_FALSE(result.isOk());
  EXPECT_EQ(result.status().message(),
            "clusters[0].outlier_detection.max_ejection_time: cannot be smaller than "
            "base_ejection_time");
  bad = c;
  bad.mutable_outlier_detection()->mutable_failure_percentage_threshold()->set_value(101);
  result = translateCluster(bad, "clusters[0]");
  ASSERT_FALSE(result.isOk());
  EXPECT_EQ(result.status().message(),
            "clusters[0].outlier_detection.failure_percentage_threshold: must be at most 100, "
            "got 101");
  bad = c;
  bad.mutable_outlier_detection()->mutable_max_ejection_percent()->set_value(101);
  result = translateCluster(bad, "clusters[0]");
  ASSERT_FALSE(result.isOk());
  EXPECT_EQ(result.status().message(),
            "clusters[0].outlier_detection.max_ejection_percent: must be at most 100, got 101");
  bad = c;
  bad.mutable_outlier_detection()->mutable_interval()->Clear();
  result = translateCluster(bad, "clusters[0]");
  ASSERT_FALSE(result.isOk());
  EXPECT_EQ(result.status().message(),
            "clusters[0].outlier_detection.interval: must be greater than zero");
  bad = c;
  bad.mutable_common_lb_config()->mutable_healthy_panic_threshold()->set_value(101);
  result = translateCluster(bad, "clusters[0]");
  ASSERT_FALSE(result.isOk());
  EXPECT_EQ(result.status().message(),
            "clusters[0].common_lb_config.healthy_panic_threshold.value: must be between 0 and "
            "100");
  bad.set_type(Cluster::ORIGINAL_DST);
  bad.set_lb_policy(Cluster::CLUSTER_PROVIDED);
  bad.clear_common_lb_config();
  result = translateCluster(bad, "clusters[0]");
  ASSERT_FALSE(result.isOk());
  EXPECT_EQ(result.status().message(),
            "clusters[0].outlier_detection: is not supported on an ORIGINAL_DST cluster yet");
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

// A listener whose one network filter is envoy.filters.network.tcp_proxy
// with `fields` (YAML flow-mapping entries).
std::string tcpProxyYaml(const std::string& fields) {
  return R"(
static_resources:
  listeners:
  - name: tcp
    address: {socket_address: {address: 127.0.0.1, port_value: 10001}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, )" +
         fields + R"(}
  clusters:
  - name: db
    type: STATIC
    connect_timeout: 1s
    load_assignment: {cluster_name: db, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 5432}}}}]}]}
)";
}

Result<std::shared_ptr<const config::Snapshot>> translateTcpProxy(const std::string& fields) {
  auto b = loadBootstrapYaml(tcpProxyYaml(fields));
  if (!b.isOk()) return b.status();
  return translateBootstrap(*b, testRegistry());
}

TEST(TranslateTcpProxy, ClusterAndDefaults) {
  auto result = translateTcpProxy("stat_prefix: db_tcp, cluster: db");
  ASSERT_TRUE(result.isOk()) << result.status().message();
  const config::ListenerConfig& l = *(*result)->listeners.begin()->second;
  ASSERT_EQ(l.filter_chains.size(), 1u);
  const config::TcpProxyConfig* tp = l.filter_chains[0]->tcp_proxy.get();
  ASSERT_NE(tp, nullptr);
  EXPECT_EQ(tp->stat_prefix, "db_tcp");
  ASSERT_EQ(tp->clusters.size(), 1u);
  EXPECT_EQ(tp->clusters[0].name, "db");
  EXPECT_EQ(tp->total_weight, 1u);
  // Envoy's defaults: an hour of idleness, one connect attempt, no limit on
  // the connection's duration.
  EXPECT_EQ(tp->idle_timeout, milliseconds(3600 * 1000));
  EXPECT_EQ(tp->max_connect_attempts, 1u);
  EXPECT_EQ(tp->max_downstream_connection_duration, milliseconds(0));
}

TEST(TranslateTcpProxy, WeightedClustersAndTimeouts) {
  auto result = translateTcpProxy(
      "stat_prefix: w, weighted_clusters: {clusters: [{name: db, weight: 3}, {name: later, weight: "
      "1}]}, idle_timeout: 0s, max_connect_attempts: 4, max_downstream_connection_duration: 90s");
  ASSERT_TRUE(result.isOk()) << result.status().message();
  const config::ListenerConfig& l = *(*result)->listeners.begin()->second;
  const config::TcpProxyConfig* tp = l.filter_chains[0]->tcp_proxy.get();
  ASSERT_NE(tp, nullptr);
  ASSERT_EQ(tp->clusters.size(), 2u);
  // A cluster the static config does not name is accepted, as Envoy does
  // (it may come over CDS); its connections count in downstream_cx_no_route.
  EXPECT_EQ(tp->clusters[1].name, "later");
  EXPECT_EQ(tp->clusters[0].weight, 3u);
  EXPECT_EQ(tp->total_weight, 4u);
  EXPECT_EQ(tp->idle_timeout, milliseconds(0));
  EXPECT_EQ(tp->max_connect_attempts, 4u);
  EXPECT_EQ(tp->max_downstream_connection_duration, milliseconds(90000));
}

TEST(TranslateTcpProxy, Errors) {
  const std::string path = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";
  auto no_cluster = translateTcpProxy("stat_prefix: x");
  ASSERT_FALSE(no_cluster.isOk());
  EXPECT_THAT(no_cluster.status().message(),
              HasSubstr(path + ": cluster or weighted_clusters is required"));
  auto no_prefix = translateTcpProxy("cluster: db");
  ASSERT_FALSE(no_prefix.isOk());
  EXPECT_THAT(no_prefix.status().message(), HasSubstr(path + ".stat_prefix"));
  for (const char* field :
       {"hash_policy: [{source_ip: {}}]", "on_demand: {}", "tunneling_config: {hostname: a}",
        "downstream_idle_timeout: 1s", "access_log_flush_interval: 1s",
        "metadata_match: {filter_metadata: {a: {}}}"}) {
    auto r = translateTcpProxy(std::string("stat_prefix: x, cluster: db, ") + field);
    ASSERT_FALSE(r.isOk()) << field;
    const std::string name(field, std::string_view(field).find(':'));
    EXPECT_THAT(r.status().message(), HasSubstr(path + "." + name)) << field;
  }
}

}  // namespace skiff::xds
