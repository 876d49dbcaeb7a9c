// The configuration a control plane sends over ADS, held on the main thread
// and turned into snapshots for the workers (DESIGN.md, "xDS").
//
// It keeps every accepted Listener, RouteConfiguration, Cluster and
// ClusterLoadAssignment with its version, translates only the resources that
// changed (by a hash of their encoding), and decides what is warm:
//   - an EDS cluster waits for its endpoints;
//   - a STRICT_DNS cluster waits for the end of its first DNS round, which
//     the server runs (a failed round ends it too);
//   - a listener waits for the route configurations its rds names;
// the EDS cluster and the listener bounded by initial_fetch_timeout, after which they start with
// what they have (no hosts: 503 UH; no routes: 404 NR), as Envoy's do. Until a new version warms,
// the previous one keeps serving.
//
// Every accepted change produces one new snapshot: the bootstrap's static
// resources plus every warm dynamic one. It is made from the last one by
// setting only the entries that changed (persistent maps), and it lists
// them, so a worker applies only those: an update costs what changed, not
// the size of the configuration. Workers apply it clusters first, then
// listeners, then routes; a removed cluster retires only once nothing uses
// it, so the order is make before break.
//
// A resource that fails to decode, uses a field skiff does not implement, or
// does not translate is refused: its last good version stays, and the
// error, naming each field by its path (`clusters[backend].lb_policy:
// LOAD_BALANCING_POLICY_CONFIG is not supported yet`), goes back as the
// NACK's error_detail. The other resources of the same response are
// applied, as Envoy applies them (a response the ADS client cannot decode
// at all changes nothing). Secrets are the exception: a secret that breaks
// a listener or cluster that names it refuses every secret of the response.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/config/config.h"
#include "proxy/stats/stats.h"
#include "proxy/worker/worker.h"
#include "xds/ads_client.h"

namespace google::protobuf {
class Message;
}

namespace skiff::xds {

inline constexpr std::string_view kSecretType =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

class DynamicConfig {
 public:
  // What the server does with the results.
  class Callbacks {
   public:
    virtual ~Callbacks() = default;
    // Ask the control plane for these resources (wildcard: all of the type).
    virtual void subscribe(const std::string& type_url, const std::set<std::string>& names,
                           bool wildcard) = 0;
    // Change a named subscription by the names added and removed.
    virtual void updateSubscription(const std::string& type_url, const std::set<std::string>& added,
                                    const std::set<std::string>& removed) = 0;
    // Start initializing this version of a STRICT_DNS cluster: its first DNS
    // round, whose hosts are kept until a snapshot holds this version, and
    // whose end is reported to onClusterInitialized (maybe from within this
    // call). Null: stop what is warming for this name (a version that
    // serves already is not touched).
    virtual void warmCluster(const std::string& name,
                             std::shared_ptr<const config::ClusterConfig> cluster) = 0;
    // Hold (or send again) the ACKs and NACKs of type_url's responses.
    virtual void holdReplies(const std::string& type_url, bool hold) = 0;
    // A new snapshot for every worker.
    virtual void publish(std::shared_ptr<const config::Snapshot> snapshot) = 0;
    // The first configuration is complete (or initial_fetch_timeout passed):
    // the server may report ready.
    virtual void onInitialized() = 0;
  };

  // base: the bootstrap's snapshot (static resources, ads settings). stats
  // is the main thread's store.
  DynamicConfig(Worker& main, std::shared_ptr<const config::Snapshot> base, stats::Store& stats,
                Callbacks& callbacks);
  ~DynamicConfig();
  DynamicConfig(const DynamicConfig&) = delete;
  DynamicConfig& operator=(const DynamicConfig&) = delete;

  // Subscribes to clusters and starts the initial fetch timer; listeners,
  // and the routes static listeners name, once the clusters of the first
  // CDS response are initialized (as in Envoy).
  void start();
  // Closes timers and reserved sockets (before the main loop closes).
  void stop();

  // From the ADS client (AdsClient::Watcher): returns "" to accept, or the
  // error to NACK with.
  std::string onResources(const std::string& type_url, const std::vector<XdsResource>& updated,
                          const std::vector<std::string>& removed, const std::string& version_info);
  void onStreamStatus(bool connected);
  // The first DNS round of a cluster given to warmCluster ended (failed or
  // not): that version is warm.
  void onClusterInitialized(const std::string& name,
                            const std::shared_ptr<const config::ClusterConfig>& cluster);

  bool initialized() const { return initialized_; }
  // The dynamic part of /config_dump: Envoy's ClustersConfigDump,
  // ListenersConfigDump, RoutesConfigDump, EndpointsConfigDump and
  // SecretsConfigDump (private keys redacted) objects,
  // comma-separated, for the server to add after the bootstrap's.
  std::string configDumpJson() const;

 private:
  // One accepted resource of any type.
  struct Resource {
    std::string version;
    std::string last_updated;  // RFC 3339, UTC.
    uint64_t hash = 0;         // Of the resource's encoding: same hash, same resource.
    // Of the bytes as received: the same bytes again are skipped before
    // they are decoded (state of the world resends everything).
    uint64_t raw_hash = 0;
    std::shared_ptr<const google::protobuf::Message> proto;  // For /config_dump.
  };
  struct ClusterEntry : Resource {
    // As translated (no EDS endpoints); null while a secret it names (SDS)
    // has not arrived.
    std::shared_ptr<const config::ClusterConfig> config;
    std::set<std::string> secrets;                        // Secrets its TLS context names.
    std::shared_ptr<const config::ClusterConfig> merged;  // config + its endpoints, when warm.
    uint64_t merged_endpoints_hash = 0;                   // Which endpoints merged holds.
    std::shared_ptr<const config::ClusterConfig> active;  // What workers run (last warm).
    std::shared_ptr<const google::protobuf::Message> active_proto;
    std::string active_version;  // Of active (version may be one still warming).
    std::string active_last_updated;
    uint64_t warming_since_ms = 0;  // Loop time when this version arrived.
    // STRICT_DNS: the config given to warmCluster, and whether its first
    // DNS round has ended.
    std::shared_ptr<const config::ClusterConfig> dns_warming;
    bool dns_initialized = false;
  };
  struct ListenerEntry : Resource {
    config::SocketAddress address;  // Port resolved (a port 0 pick is kept across versions).
    // Port resolved; null while a secret it names (SDS) has not arrived.
    std::shared_ptr<const config::ListenerConfig> config;
    std::set<std::string> secrets;  // Secrets its filter chains' TLS contexts name.
    std::shared_ptr<const config::ListenerConfig> active;
    std::shared_ptr<const google::protobuf::Message> active_proto;
    std::string active_version;
    std::string active_last_updated;
    std::vector<std::string> rds_names;  // Route configurations its chains name.
    uint64_t warming_since_ms = 0;
    int reservation_fd = -1;  // Holds the port while the listener exists.
  };
  struct RouteEntry : Resource {
    std::shared_ptr<const router::RouteTable> table;
  };
  struct EndpointEntry : Resource {
    std::vector<config::ClusterConfig::Endpoint> endpoints;
  };
  struct SecretEntry : Resource {
    std::shared_ptr<const google::protobuf::Message> secret;  // A tls.v3.Secret.
  };
  using Secrets = std::map<std::string, SecretEntry>;
  // Envoy's update_* counters and version gauge for one subscription.
  struct UpdateStats {
    stats::Counter& update_attempt;
    stats::Counter& update_success;
    stats::Counter& update_rejected;
    stats::Counter& update_failure;
    stats::Gauge& version;
    UpdateStats(stats::Store& store, const std::string& prefix);
  };

  std::string applyClusters(const std::vector<XdsResource>& updated,
                            const std::vector<std::string>& removed);
  std::string applyListeners(const std::vector<XdsResource>& updated,
                             const std::vector<std::string>& removed);
  std::string applyRoutes(const std::vector<XdsResource>& updated,
                          const std::vector<std::string>& removed);
  std::string applyEndpoints(const std::vector<XdsResource>& updated,
                             const std::vector<std::string>& removed);
  // A changed secret re-translates every listener and cluster that names
  // it; if one of them fails, the secrets are refused.
  std::string applySecrets(const std::vector<XdsResource>& updated,
                           const std::vector<std::string>& removed);
  // Translate e.proto with its SDS secrets written in as inline
  // certificates. False (and errors) when it does not translate; true with
  // e.config null when a secret is still missing.
  bool translateCluster(ClusterEntry& e, const std::string& path, const Secrets& secrets,
                        std::vector<std::string>& errors) const;
  bool translateListener(ListenerEntry& e, const std::string& path,
                         const std::set<std::string>& known, const Secrets& secrets,
                         std::vector<std::string>& errors) const;
  // Which resources each holder names: a cluster its EDS service and
  // secrets, a listener its route configurations and secrets. Kept per
  // holder, so that one holder changing costs its own names; `added` and
  // `removed` collect what became named or unnamed since they were last
  // cleared, for the subscriptions to follow.
  class NameIndex {
   public:
    // Replaces what holder names (nothing: the holder is gone).
    void set(const std::string& holder, std::set<std::string> names);
    const std::set<std::string>& holdersOf(const std::string& resource) const;
    // Every named resource, with its holders.
    const std::map<std::string, std::set<std::string>>& resources() const { return holders_; }
    std::set<std::string> added;
    std::set<std::string> removed;

   private:
    std::map<std::string, std::set<std::string>> names_;    // Holder -> resources.
    std::map<std::string, std::set<std::string>> holders_;  // Resource -> holders.
  };

  // Re-reads what one cluster or listener names into the indexes.
  void indexCluster(const std::string& name);
  void indexListener(const std::string& name);
  // Subscribes to what became named and drops (and unsubscribes) what no
  // holder names any more.
  void updateSubscriptions();
  // Publishes a snapshot with the dirty and warming entries brought up to
  // date; arms the warming timer for what still warms.
  void rebuild();
  // initial_fetch_timeout is set and has passed since since_ms.
  bool fetchTimedOut(uint64_t since_ms, uint64_t now) const {
    return initial_fetch_timeout_ms_ > 0 && now - since_ms >= initial_fetch_timeout_ms_;
  }
  bool clusterWarm(const ClusterEntry& entry, uint64_t now) const;
  bool listenerWarm(const ListenerEntry& entry, uint64_t now) const;
  // *_warming: something of that kind never served yet still warms.
  void checkInitialized(bool clusters_warming, bool listeners_warming);
  // Asks for listeners and the routes static listeners name (Envoy: once
  // the cluster manager is initialized).
  void startListeners();
  // Every route configuration a static listener names has arrived (a
  // dynamic listener's make it warm, bounded by initial_fetch_timeout).
  bool staticRoutesIn() const;
  void armInitTimer();
  std::set<std::string> knownClusters() const;
  void countUpdate(const std::string& type_url, const std::vector<XdsResource>& updated,
                   const std::string& version_info, bool accepted);
  std::vector<UpdateStats*> statsFor(const std::string& type_url,
                                     const std::vector<XdsResource>& updated);
  UpdateStats& namedStats(const std::string& prefix);

  Worker& main_;
  std::shared_ptr<const config::Snapshot> base_;
  stats::Store& stats_;
  Callbacks& callbacks_;
  uint64_t initial_fetch_timeout_ms_;

  std::map<std::string, ClusterEntry> clusters_;
  std::map<std::string, ListenerEntry> listeners_;
  std::map<std::string, RouteEntry> routes_;
  std::map<std::string, EndpointEntry> endpoints_;  // By cluster_name (EDS service name).
  Secrets secrets_;
  std::map<std::string, std::string> versions_;  // Last accepted version_info per type.

  // The snapshot last published (the bootstrap's until then).
  std::shared_ptr<const config::Snapshot> current_;
  // Names changed since the last rebuild.
  std::set<std::string> dirty_clusters_;
  std::set<std::string> dirty_listeners_;
  std::set<std::string> dirty_routes_;
  // Names whose newest version is not serving yet.
  std::set<std::string> warming_cluster_names_;
  std::set<std::string> warming_listener_names_;
  NameIndex eds_index_;  // Holders: cluster names.
  NameIndex rds_index_;  // Holders: "listener NAME", "static listener NAME".
  NameIndex sds_index_;  // Holders: "cluster NAME", "listener NAME".
  bool cds_received_ = false;
  bool lds_received_ = false;
  bool cds_timed_out_ = false;      // No CDS response within initial_fetch_timeout.
  bool listeners_started_ = false;  // LDS (and static listeners' RDS) asked for.
  bool cds_replies_held_ = false;   // CDS ACKs wait while a cluster warms.
  bool initialized_ = false;
  bool rebuilding_ = false;  // A cluster initialized from within rebuild() waits for its end.
  uv_timer_t* warm_timer_ = nullptr;  // Fires when the next warming entry times out.
  uv_timer_t* init_timer_ = nullptr;  // initial_fetch_timeout for the first configuration.

  std::map<std::string, std::unique_ptr<UpdateStats>> update_stats_;  // By stat prefix.
  stats::Gauge& connected_state_;
  stats::Gauge& active_clusters_;
  stats::Gauge& warming_clusters_;
  stats::Gauge& active_listeners_;
  stats::Gauge& warming_listeners_;
};

}  // namespace skiff::xds
