// DynamicConfig without a control plane: resources go straight into
// onResources, and the snapshots and subscriptions it produces are checked.
// Warming timeouts run on a real Worker loop.
#include "xds/dynamic_config.h"

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "envoy/config/listener/v3/listener.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"

namespace skiff::xds {
namespace {

using std::chrono::milliseconds;

XdsResource resource(const std::string& name, const std::string& version, const std::string& json) {
  XdsResource r;
  r.name = name;
  r.version = version;
  auto status = google::protobuf::util::JsonStringToMessage(json, &r.resource);
  EXPECT_TRUE(status.ok()) << status.message() << "\n" << json;
  return r;
}

XdsResource edsCluster(const std::string& name, const std::string& extra = "") {
  return resource(
      name, "1",
      R"({"@type":"type.googleapis.com/envoy.config.cluster.v3.Cluster","name":")" + name +
          R"(","type":"EDS","connect_timeout":"1s",)" + extra +
          R"("eds_cluster_config":{"eds_config":{"ads":{},"resource_api_version":"V3"}}})");
}

XdsResource cla(const std::string& name, const std::vector<int>& ports) {
  std::string eps;
  for (int p : ports) {
    if (!eps.empty()) eps += ",";
    eps += R"({"endpoint":{"address":{"socket_address":{"address":"127.0.0.1","port_value":)" +
           std::to_string(p) + "}}}}";
  }
  return resource(
      name, "1",
      R"({"@type":"type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment","cluster_name":")" +
          name + R"(","endpoints":[{"lb_endpoints":[)" + eps + "]}]}");
}

XdsResource listener(const std::string& name, const std::string& routes,
                     const std::string& stat_prefix = "ingress") {
  return resource(name, "1",
                  R"({"@type":"type.googleapis.com/envoy.config.listener.v3.Listener","name":")" +
                      name +
                      R"(","address":{"socket_address":{"address":"127.0.0.1","port_value":0}},
      "filter_chains":[{"filters":[{"name":"hcm","typed_config":{
        "@type":"type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix":")" +
                      stat_prefix + R"(","rds":{"route_config_name":")" + routes +
                      R"(","config_source":{"ads":{},"resource_api_version":"V3"}},
        "http_filters":[{"name":"router","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]})");
}

XdsResource routeConfig(const std::string& name, const std::string& cluster) {
  return resource(
      name, "1",
      R"({"@type":"type.googleapis.com/envoy.config.route.v3.RouteConfiguration","name":")" + name +
          R"(","virtual_hosts":[{"name":"v","domains":["*"],"routes":[{"match":{"prefix":"/"},"route":{"cluster":")" +
          cluster + R"("}}]}]})");
}

class Recorder : public DynamicConfig::Callbacks {
 public:
  void subscribe(const std::string& type_url, const std::set<std::string>& names,
                 bool wildcard) override {
    subscriptions[type_url] = names;
    wildcards[type_url] = wildcard;
  }
  void updateSubscription(const std::string& type_url, const std::set<std::string>& added,
                          const std::set<std::string>& removed) override {
    auto& names = subscriptions[type_url];
    for (const auto& n : removed) EXPECT_EQ(names.erase(n), 1u) << "not subscribed: " << n;
    for (const auto& n : added) EXPECT_TRUE(names.insert(n).second) << "already subscribed: " << n;
    wildcards[type_url] = false;
  }
  void warmCluster(const std::string& name,
                   std::shared_ptr<const config::ClusterConfig> cluster) override {
    warming[name] = cluster;
    if (on_warm && cluster) on_warm(name, cluster);
  }
  void holdReplies(const std::string& type_url, bool hold) override { held[type_url] = hold; }
  void publish(std::shared_ptr<const config::Snapshot> snapshot) override {
    snapshots.push_back(std::move(snapshot));
  }
  void onInitialized() override { ++initialized; }

  // What workers serve: the last snapshot published (none yet: nothing).
  const config::Snapshot& last() const {
    static const config::Snapshot kNothing;
    return snapshots.empty() ? kNothing : *snapshots.back();
  }

  std::map<std::string, std::set<std::string>> subscriptions;
  std::map<std::string, bool> wildcards;
  std::vector<std::shared_ptr<const config::Snapshot>> snapshots;
  // STRICT_DNS clusters resolving to warm, by name (null: stopped).
  std::map<std::string, std::shared_ptr<const config::ClusterConfig>> warming;
  // Called from warmCluster, as the server does when a round ends at once.
  std::function<void(const std::string&, const std::shared_ptr<const config::ClusterConfig>&)>
      on_warm;
  int initialized = 0;
  std::map<std::string, bool> held;  // holdReplies, by type URL.
};

class DynamicConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    worker_ = std::make_unique<Worker>(0, std::make_shared<config::Snapshot>());
    restartAds(milliseconds(60000));
  }
  // A fresh DynamicConfig over ADS with these subscriptions and initial_fetch_timeout.
  void restartAds(milliseconds fetch_timeout, bool cds = true, bool lds = true) {
    auto base = std::make_shared<config::Snapshot>();
    base->ads.enabled = true;
    base->ads.cds = cds;
    base->ads.lds = lds;
    base->ads.initial_fetch_timeout = fetch_timeout;
    makeConfig(base);
  }
  void TearDown() override {
    dynamic_.reset();
    worker_->shutdown();
  }
  void makeConfig(std::shared_ptr<config::Snapshot> base) {
    dynamic_.reset();
    dynamic_ = std::make_unique<DynamicConfig>(*worker_, base, stats_, recorder_);
    dynamic_->start();
  }
  std::string apply(std::string_view type, const std::vector<XdsResource>& updated,
                    const std::vector<std::string>& removed = {}, const std::string& v = "1") {
    return dynamic_->onResources(std::string(type), updated, removed, v);
  }

  std::unique_ptr<Worker> worker_;
  stats::Store stats_;
  Recorder recorder_;
  std::unique_ptr<DynamicConfig> dynamic_;
};

TEST_F(DynamicConfigTest, SubscribesClustersThenListenersByWildcard) {
  // Envoy asks for listeners once the clusters from CDS are initialized.
  EXPECT_TRUE(recorder_.wildcards.at(std::string(kClusterType)));
  EXPECT_EQ(recorder_.wildcards.count(std::string(kListenerType)), 0u);
  EXPECT_EQ(apply(kClusterType, {}), "");
  EXPECT_TRUE(recorder_.wildcards.at(std::string(kListenerType)));
  EXPECT_EQ(recorder_.initialized, 0);
}

TEST_F(DynamicConfigTest, EdsClusterWarmsUntilItsEndpointsArrive) {
  EXPECT_EQ(apply(kClusterType, {edsCluster("a")}), "");
  EXPECT_EQ(recorder_.subscriptions.at(std::string(kClusterLoadAssignmentType)),
            std::set<std::string>{"a"});
  EXPECT_EQ(recorder_.last().clusters.count("a"), 0u);  // Warming.
  EXPECT_EQ(stats_.gauge("cluster_manager.warming_clusters").value(), 1);
  EXPECT_EQ(apply(kClusterLoadAssignmentType, {cla("a", {8001, 8002})}), "");
  ASSERT_EQ(recorder_.last().clusters.count("a"), 1u);
  const auto& a = *recorder_.last().clusters.at("a");
  ASSERT_EQ(a.endpoints.size(), 2u);
  EXPECT_EQ(a.endpoints[1].address.port, 8002u);
  EXPECT_EQ(stats_.gauge("cluster_manager.warming_clusters").value(), 0);
  EXPECT_EQ(stats_.counter("cluster.a.update_success").value(), 1u);
}

XdsResource dnsCluster(const std::string& name, const std::string& host) {
  return resource(name, "1",
                  R"({"@type":"type.googleapis.com/envoy.config.cluster.v3.Cluster","name":")" +
                      name + R"(","type":"STRICT_DNS","connect_timeout":"1s",
      "load_assignment":{"cluster_name":")" +
                      name + R"(","endpoints":[{"lb_endpoints":[{"endpoint":{"address":
      {"socket_address":{"address":")" +
                      host + R"(","port_value":80}}}}]}]}})");
}

TEST_F(DynamicConfigTest, StrictDnsClusterWarmsUntilItsFirstDnsRoundEnds) {
  const auto* gauge = &stats_.gauge("cluster_manager.warming_clusters");
  EXPECT_EQ(apply(kClusterType, {dnsCluster("dns", "one.example")}), "");
  ASSERT_NE(recorder_.warming["dns"], nullptr);
  EXPECT_EQ(recorder_.last().clusters.get("dns"), nullptr);
  EXPECT_EQ(gauge->value(), 1);
  auto v1 = recorder_.warming["dns"];
  const std::string cds(kClusterType);
  EXPECT_EQ(recorder_.held.count(cds), 0u);  // At startup the CDS ACK does not wait.
  dynamic_->onClusterInitialized("dns", v1);
  ASSERT_NE(recorder_.last().clusters.get("dns"), nullptr);
  EXPECT_EQ(*recorder_.last().clusters.get("dns"), v1);
  EXPECT_EQ(gauge->value(), 0);

  // A new version warms beside the one serving, and CDS ACKs wait for it
  // (as Envoy's do); a late end of a replaced version's round changes
  // nothing.
  EXPECT_EQ(apply(kClusterType, {dnsCluster("dns", "two.example")}, {}, "2"), "");
  EXPECT_TRUE(recorder_.held.at(cds));
  auto v2 = recorder_.warming["dns"];
  ASSERT_NE(v2, v1);
  EXPECT_EQ(*recorder_.last().clusters.get("dns"), v1);
  EXPECT_EQ(apply(kClusterType, {dnsCluster("dns", "three.example")}, {}, "3"), "");
  auto v3 = recorder_.warming["dns"];
  dynamic_->onClusterInitialized("dns", v2);
  EXPECT_EQ(*recorder_.last().clusters.get("dns"), v1);
  EXPECT_EQ(gauge->value(), 1);
  EXPECT_TRUE(recorder_.held.at(cds));
  dynamic_->onClusterInitialized("dns", v3);
  EXPECT_EQ(*recorder_.last().clusters.get("dns"), v3);
  EXPECT_EQ(gauge->value(), 0);
  EXPECT_FALSE(recorder_.held.at(cds));

  // Removed: what warmed for it stops.
  EXPECT_EQ(apply(kClusterType, {dnsCluster("dns", "four.example")}, {}, "4"), "");
  EXPECT_NE(recorder_.warming["dns"], nullptr);
  EXPECT_EQ(apply(kClusterType, {}, {"dns"}, "5"), "");
  EXPECT_EQ(recorder_.warming["dns"], nullptr);
  EXPECT_EQ(recorder_.last().clusters.get("dns"), nullptr);
}

TEST_F(DynamicConfigTest, ListenersWaitForTheFirstDnsRoundOfAClusterPastTheFetchTimeout) {
  // Envoy: initial_fetch_timeout bounds the wait for the first CDS
  // response, not a STRICT_DNS cluster's initialization; LDS is asked for
  // once it is initialized.
  restartAds(milliseconds(20));
  EXPECT_EQ(apply(kClusterType, {dnsCluster("dns", "one.example")}), "");
  auto until = std::chrono::steady_clock::now() + milliseconds(100);
  while (std::chrono::steady_clock::now() < until) uv_run(worker_->loop(), UV_RUN_NOWAIT);
  EXPECT_EQ(recorder_.wildcards.count(std::string(kListenerType)), 0u);
  EXPECT_EQ(recorder_.initialized, 0);
  dynamic_->onClusterInitialized("dns", recorder_.warming["dns"]);
  EXPECT_TRUE(recorder_.wildcards.at(std::string(kListenerType)));
  EXPECT_EQ(recorder_.initialized, 0);
  EXPECT_EQ(apply(kListenerType, {}), "");
  EXPECT_EQ(recorder_.initialized, 1);
}

TEST_F(DynamicConfigTest, ListenersAreAskedForWhenNoClustersCameWithinTheFetchTimeout) {
  restartAds(milliseconds(20));
  EXPECT_EQ(recorder_.wildcards.count(std::string(kListenerType)), 0u);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (recorder_.wildcards.count(std::string(kListenerType)) == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    uv_run(worker_->loop(), UV_RUN_ONCE);
  }
  EXPECT_TRUE(recorder_.wildcards.at(std::string(kListenerType)));
  EXPECT_EQ(recorder_.initialized, 0);
  // Then the rest of the first configuration has initial_fetch_timeout too.
  deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (recorder_.initialized == 0 && std::chrono::steady_clock::now() < deadline) {
    uv_run(worker_->loop(), UV_RUN_ONCE);
  }
  EXPECT_EQ(recorder_.initialized, 1);
}

TEST_F(DynamicConfigTest, StrictDnsRoundThatEndsWithinWarmClusterActivatesAtOnce) {
  // A round with no lookup to wait for (none could start) ends inside
  // warmCluster: the same rebuild activates the cluster.
  recorder_.on_warm = [&](const std::string& name, const auto& cluster) {
    dynamic_->onClusterInitialized(name, cluster);
  };
  EXPECT_EQ(apply(kClusterType, {dnsCluster("dns", "one.example")}), "");
  ASSERT_NE(recorder_.last().clusters.get("dns"), nullptr);
  EXPECT_EQ(*recorder_.last().clusters.get("dns"), recorder_.warming["dns"]);
  EXPECT_EQ(stats_.gauge("cluster_manager.warming_clusters").value(), 0);
  EXPECT_EQ(recorder_.snapshots.size(), 1u);
}

TEST_F(DynamicConfigTest, EndpointChangeKeepsTheClusterDefinition) {
  apply(kClusterType, {edsCluster("a")});
  apply(kClusterLoadAssignmentType, {cla("a", {8001})});
  auto before = recorder_.last().clusters.at("a");
  apply(kClusterLoadAssignmentType, {cla("a", {8003})}, {}, "2");
  auto after = recorder_.last().clusters.at("a");
  EXPECT_NE(before, after);
  EXPECT_EQ(before->definition_hash, after->definition_hash);
  EXPECT_EQ(after->endpoints[0].address.port, 8003u);
  // The same cluster sent again is not translated again.
  apply(kClusterType, {edsCluster("a")}, {}, "3");
  EXPECT_EQ(recorder_.last().clusters.at("a"), after);
}

TEST_F(DynamicConfigTest, OneChangeMakesASnapshotListingOnlyThatChange) {
  std::vector<XdsResource> clusters;
  std::vector<XdsResource> endpoints;
  for (int i = 0; i < 50; ++i) {
    clusters.push_back(edsCluster("c" + std::to_string(i)));
    endpoints.push_back(cla("c" + std::to_string(i), {static_cast<uint16_t>(9000 + i)}));
  }
  apply(kClusterType, clusters);
  apply(kClusterLoadAssignmentType, endpoints);
  ASSERT_EQ(recorder_.last().clusters.size(), 50u);
  auto before = recorder_.snapshots.back();
  auto c7 = before->clusters.at("c7");

  EXPECT_EQ(apply(kClusterLoadAssignmentType, {cla("c3", {8003})}, {}, "2"), "");
  const config::Snapshot& after = recorder_.last();
  EXPECT_EQ(after.changed_since, before->generation);
  EXPECT_EQ(after.generation, before->generation + 1);
  EXPECT_EQ(after.changed_clusters, std::vector<std::string>{"c3"});
  EXPECT_TRUE(after.changed_listeners.empty());
  EXPECT_TRUE(after.changed_route_tables.empty());
  EXPECT_EQ(after.clusters.at("c3")->endpoints[0].address.port, 8003u);
  EXPECT_EQ(after.clusters.at("c7"), c7);                                  // Shared, not copied.
  EXPECT_EQ(before->clusters.at("c3")->endpoints[0].address.port, 9003u);  // Unchanged.

  // The same resources again (state of the world resends them): nothing to publish.
  size_t published = recorder_.snapshots.size();
  EXPECT_EQ(apply(kClusterLoadAssignmentType, endpoints, {}, "3"), "");  // c3 back to 9003.
  EXPECT_EQ(recorder_.snapshots.size(), published + 1);
  EXPECT_EQ(recorder_.last().changed_clusters, std::vector<std::string>{"c3"});
  EXPECT_EQ(apply(kClusterType, clusters, {}, "4"), "");
  EXPECT_EQ(apply(kClusterLoadAssignmentType, endpoints, {}, "5"), "");
  EXPECT_EQ(recorder_.snapshots.size(), published + 1);

  // Removing one cluster lists it, and unsubscribes only its endpoints.
  EXPECT_EQ(apply(kClusterType, {}, {"c9"}, "6"), "");
  EXPECT_EQ(recorder_.last().changed_clusters, std::vector<std::string>{"c9"});
  EXPECT_EQ(recorder_.last().clusters.count("c9"), 0u);
  EXPECT_EQ(recorder_.subscriptions.at(std::string(kClusterLoadAssignmentType)).size(), 49u);
}

TEST_F(DynamicConfigTest, UnsupportedFieldIsRefusedByPathAndTheRestApplies) {
  apply(kClusterType, {edsCluster("a")});
  size_t published = recorder_.snapshots.size();
  std::string error =
      apply(kClusterType,
            {edsCluster("a"), edsCluster("b", R"("lb_policy":"LOAD_BALANCING_POLICY_CONFIG",)"),
             edsCluster("c")},
            {}, "2");
  EXPECT_EQ(error, "clusters[b].lb_policy: LOAD_BALANCING_POLICY_CONFIG is not supported yet");
  EXPECT_EQ(stats_.counter("cluster_manager.cds.update_rejected").value(), 1u);
  // b is refused; c, good, is taken as Envoy takes it: it subscribes to its
  // endpoints and serves once they come.
  EXPECT_EQ(recorder_.subscriptions.at(std::string(kClusterLoadAssignmentType)),
            (std::set<std::string>{"a", "c"}));
  EXPECT_EQ(recorder_.snapshots.size(), published);  // c warms.
  EXPECT_EQ(apply(kClusterLoadAssignmentType, {cla("c", {8001})}), "");
  EXPECT_EQ(recorder_.last().clusters.count("c"), 1u);
  EXPECT_EQ(recorder_.last().clusters.count("b"), 0u);
}

TEST_F(DynamicConfigTest, UndecodableResourceIsRefused) {
  XdsResource r = edsCluster("a");
  r.resource.set_value("\xff\xff\xff");
  EXPECT_NE(apply(kClusterType, {r}).find("clusters[a]: cannot be decoded"), std::string::npos);
}

// The retry policy Istio puts on every sidecar route arrives over RDS and is
// accepted; one skiff lacks is NACKed by path.
TEST_F(DynamicConfigTest, IstioRetryPolicyOverRds) {
  EXPECT_EQ(apply(kClusterType, {}), "");
  EXPECT_EQ(apply(kListenerType, {listener("l", "r")}), "");
  const std::string head =
      R"({"@type":"type.googleapis.com/envoy.config.route.v3.RouteConfiguration","name":"r",
      "virtual_hosts":[{"name":"v","domains":["*"],"routes":[{"match":{"prefix":"/"},
      "route":{"cluster":"a","retry_policy":)";
  EXPECT_EQ(apply(kRouteConfigurationType,
                  {resource("r", "1",
                            head + R"({"retry_on":"connect-failure,refused-stream,unavailable,)"
                                   R"(cancelled,retriable-status-codes","num_retries":2,)"
                                   R"("retriable_status_codes":[503],"retry_host_predicate":[)"
                                   R"({"name":"envoy.retry_host_predicates.previous_hosts",)"
                                   R"("typed_config":{"@type":"type.googleapis.com/envoy.)"
                                   R"(extensions.retry.host.previous_hosts.v3.)"
                                   R"(PreviousHostsPredicate"}}],)"
                                   R"("host_selection_retry_max_attempts":"5"}}}]}]})")}),
            "");
  ASSERT_EQ(recorder_.last().route_tables.count("r"), 1u);
  std::string error = apply(
      kRouteConfigurationType,
      {resource("r", "2", head + R"({"retry_on":"5xx","retry_priority":{"name":"p"}}}}]}]})")}, {},
      "2");
  EXPECT_NE(error.find("routes[0].route.retry_policy.retry_priority: not supported yet"),
            std::string::npos)
      << error;
}

TEST_F(DynamicConfigTest, ListenerWaitsForItsRoutesAndKeepsItsPort) {
  EXPECT_EQ(apply(kClusterType, {}), "");
  EXPECT_EQ(apply(kListenerType, {listener("l", "r")}), "");
  EXPECT_EQ(recorder_.subscriptions.at(std::string(kRouteConfigurationType)),
            std::set<std::string>{"r"});
  EXPECT_TRUE(recorder_.last().listeners.empty());
  EXPECT_EQ(recorder_.initialized, 0);
  EXPECT_EQ(apply(kRouteConfigurationType, {routeConfig("r", "a")}), "");
  ASSERT_EQ(recorder_.last().listeners.size(), 1u);
  uint32_t port = recorder_.last().listeners.begin()->second->address.port;
  EXPECT_NE(port, 0u);  // Port 0 was picked and reserved.
  EXPECT_EQ(recorder_.last().route_tables.count("r"), 1u);
  EXPECT_EQ(recorder_.initialized, 1);
  // A new version on port 0 again keeps the port it got.
  EXPECT_EQ(apply(kListenerType, {listener("l", "r", "other_prefix")}, {}, "2"), "");
  EXPECT_EQ(recorder_.last().listeners.begin()->second->address.port, port);
  EXPECT_EQ(recorder_.last().listeners.begin()->second->filter_chains[0]->http.stat_prefix,
            "other_prefix");
}

TEST_F(DynamicConfigTest, ListenerWaitingForItsRoutesHoldsInitializationUntilItsOwnTimeout) {
  // Envoy's LDS timer is disarmed by the LDS response; a listener that
  // then waits for its routes is bounded by RDS's own timer, which starts
  // when the routes are asked for.
  restartAds(milliseconds(1000));
  auto spin = [&](milliseconds time) {
    auto until = std::chrono::steady_clock::now() + time;
    while (std::chrono::steady_clock::now() < until) uv_run(worker_->loop(), UV_RUN_NOWAIT);
  };
  EXPECT_EQ(apply(kClusterType, {}), "");  // Listeners asked for: their timer starts.
  spin(milliseconds(500));
  // The routes' timer starts from the loop's time: brought up to now, so
  // that it cannot be due before a second of real time has passed.
  uv_update_time(worker_->loop());
  const auto routes_asked = std::chrono::steady_clock::now();
  EXPECT_EQ(apply(kListenerType, {listener("l", "r")}), "");
  spin(milliseconds(700));  // Past the listeners' timer, within the listener's own.
  // On a loaded machine the spin may overrun the routes' second; only
  // within it does "not yet initialized" say anything.
  if (std::chrono::steady_clock::now() - routes_asked < milliseconds(1000)) {
    EXPECT_EQ(recorder_.initialized, 0);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (recorder_.initialized == 0 && std::chrono::steady_clock::now() < deadline) {
    uv_run(worker_->loop(), UV_RUN_ONCE);
  }
  EXPECT_EQ(recorder_.initialized, 1);
  EXPECT_EQ(recorder_.last().listeners.size(), 1u);  // Started with no routes (404 NR).
}

TEST_F(DynamicConfigTest, RemovedClusterLeavesAndIsUnsubscribed) {
  apply(kClusterType, {edsCluster("a"), edsCluster("b")});
  apply(kClusterLoadAssignmentType, {cla("a", {8001}), cla("b", {8002})});
  EXPECT_EQ(recorder_.last().clusters.size(), 2u);
  apply(kClusterType, {edsCluster("a")}, {"b"}, "2");
  EXPECT_EQ(recorder_.last().clusters.count("b"), 0u);
  EXPECT_EQ(recorder_.subscriptions.at(std::string(kClusterLoadAssignmentType)),
            std::set<std::string>{"a"});
}

TEST_F(DynamicConfigTest, WarmingEndsAtTheInitialFetchTimeout) {
  restartAds(milliseconds(30), /*cds=*/true, /*lds=*/false);
  apply(kClusterType, {edsCluster("slow")});
  EXPECT_EQ(recorder_.last().clusters.count("slow"), 0u);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (recorder_.last().clusters.count("slow") == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    uv_run(worker_->loop(), UV_RUN_ONCE);
  }
  ASSERT_EQ(recorder_.last().clusters.count("slow"), 1u);
  EXPECT_TRUE(recorder_.last().clusters.at("slow")->endpoints.empty());  // 503 UH until EDS.
  EXPECT_GE(recorder_.initialized, 1);
}

TEST_F(DynamicConfigTest, ListenerWaitingForASecretStaysWarmingWithoutSpinning) {
  restartAds(milliseconds(20), /*cds=*/false, /*lds=*/true);
  XdsResource l = listener("tls", "r");
  envoy::config::listener::v3::Listener proto;
  ASSERT_TRUE(l.resource.UnpackTo(&proto));
  auto* ts = proto.mutable_filter_chains(0)->mutable_transport_socket();
  ts->set_name("tls");
  envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext tls;
  auto* ref = tls.mutable_common_tls_context()->add_tls_certificate_sds_secret_configs();
  ref->set_name("cert");
  ref->mutable_sds_config()->mutable_ads();
  ref->mutable_sds_config()->set_resource_api_version(envoy::config::core::v3::V3);
  ts->mutable_typed_config()->PackFrom(tls);
  l.resource.PackFrom(proto);
  EXPECT_EQ(apply(kListenerType, {l}), "");
  EXPECT_EQ(recorder_.subscriptions.at(std::string(kSecretType)), std::set<std::string>{"cert"});
  // Past the initial fetch timeout it still waits (no certificate to serve
  // with), and the warming timer does not fire again and again.
  auto until = std::chrono::steady_clock::now() + milliseconds(200);
  while (std::chrono::steady_clock::now() < until) uv_run(worker_->loop(), UV_RUN_NOWAIT);
  EXPECT_TRUE(recorder_.last().listeners.empty());
  EXPECT_LT(recorder_.snapshots.size(), 5u);
  EXPECT_EQ(stats_.gauge("listener_manager.total_listeners_warming").value(), 1);
}

TEST_F(DynamicConfigTest, ConfigDumpShowsActiveAndWarming) {
  apply(kClusterType, {edsCluster("a")});
  std::string dump = dynamic_->configDumpJson();
  EXPECT_NE(dump.find(R"("dynamic_warming_clusters":[{"version_info":"1")"), std::string::npos)
      << dump;
  apply(kClusterLoadAssignmentType, {cla("a", {8001})});
  dump = dynamic_->configDumpJson();
  EXPECT_NE(dump.find(R"("dynamic_active_clusters":[{"version_info":"1")"), std::string::npos)
      << dump;
  EXPECT_NE(dump.find("EndpointsConfigDump"), std::string::npos);
}

TEST_F(DynamicConfigTest, ConfigDumpGivesTheServingVersionItsOwnVersionInfo) {
  apply(kClusterType, {});
  apply(kListenerType, {listener("l", "r")});
  apply(kRouteConfigurationType, {routeConfig("r", "a")});
  XdsResource next = listener("l", "r2");  // Warms until r2 comes.
  next.version = "2";
  ASSERT_EQ(apply(kListenerType, {next}, {}, "2"), "");
  std::string dump = dynamic_->configDumpJson();
  EXPECT_NE(dump.find(R"("active_state":{"version_info":"1")"), std::string::npos) << dump;
  EXPECT_NE(dump.find(R"("warming_state":{"version_info":"2")"), std::string::npos) << dump;
}

}  // namespace
}  // namespace skiff::xds
