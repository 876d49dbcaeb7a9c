// Upstream state of one worker: per cluster, its hosts, its load balancer and
// a keep-alive connection pool per host (DESIGN.md: per-worker pools, never
// shared). The host list comes from the config (STATIC) or from the main
// thread's DNS resolver (STRICT_DNS), posted as a whole new list.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <array>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/config/config.h"
#include "proxy/http/codec.h"
#include "proxy/net/connection.h"
#include "proxy/net/deadline_queue.h"
#include "proxy/stats/stats.h"
#include "proxy/upstream/hash_lb.h"
#include "proxy/upstream/outlier_detector.h"
#include "proxy/worker/worker.h"

namespace skiff::upstream {

class Cluster;
class Host;
class UpstreamClient;

// What a load balancer may look at beyond its cluster. ORIGINAL_DST clusters
// pick their host from the headers or the original destination; RING_HASH and
// MAGLEV ones hash the request by its route's hash policy (computed only
// there, so a route with a hash policy costs other clusters nothing).
struct LbContext {
  const HeaderMap* headers = nullptr;      // The request's, or null.
  const sockaddr* original_dst = nullptr;  // The restored local address, or null.
  // The route's hash_policy, or null (a hashing cluster then picks at random).
  const router::HashPolicy* hash_policy = nullptr;
  std::string_view downstream_address;  // The peer's "ip:port", for source_ip.
  // Takes the cookie a cookie entry with a ttl makes (the router), or null.
  router::CookieSink* cookie_sink = nullptr;
  // Envoy's downstream remote address (from x-forwarded-for when the
  // connection manager trusts it), as text, for a hash policy's source_ip;
  // empty: the peer's address stands for it. Held here, on the caller's
  // stack, so that a stream keeps no buffer for it; left uninitialized (a
  // request pays nothing for it) beyond remote_ip_length.
  std::array<char, 46> remote_ip;  // INET6_ADDRSTRLEN
  uint8_t remote_ip_length = 0;
  // A pick again for a retry that wants another host (previous_hosts): a
  // hashing cluster moves that many steps from the hash's host, as Envoy.
  uint32_t attempt = 0;
};

// The hosts ORIGINAL_DST clusters made, across workers, for /clusters and
// the membership gauges. Each worker makes its own hosts (share nothing);
// this counts, per cluster and address, the workers that hold one. It is
// touched when a host is made or removed, never per request.
class OriginalDstHosts {
 public:
  static OriginalDstHosts& instance();
  // 1 when address is new to cluster (no worker held it), else 0.
  int add(const std::string& cluster, const std::string& address);
  // -1 when no worker holds address any more, else 0.
  int remove(const std::string& cluster, const std::string& address);
  std::vector<std::string> list(const std::string& cluster) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::map<std::string, uint32_t>> hosts_;  // Guarded by mu_.
};

// Why a pool could not give a stream.
enum class PoolFailure { kConnectFailure, kConnectTimeout, kOverflow };

// Which protocol a request needs from the pool. kAny: whatever the
// connection negotiates (auto_config, ALPN over TLS). kTcp: no HTTP, the
// connection is the tunnel of a terminated CONNECT (tcp_tunnel_codec.h).
enum class Want { kHttp1, kHttp2, kAny, kTcp };

class PoolCallbacks {
 public:
  virtual ~PoolCallbacks() = default;
  // A connection is ready for one request. client stays the caller's until
  // it calls UpstreamClient::release() or ::abandon().
  virtual void onPoolReady(UpstreamClient& client) = 0;
  // transport_failure: why the connection's transport failed (a TLS
  // handshake, in Envoy's words for %UPSTREAM_TRANSPORT_FAILURE_REASON%), or
  // empty; valid during the call.
  virtual void onPoolFailure(PoolFailure reason, std::string_view transport_failure) = 0;
};

// Envoy's cluster.<name>.* counters that skiff keeps.
struct ClusterStats {
  explicit ClusterStats(stats::Store& store, const std::string& name);
  stats::Counter& upstream_cx_total;
  stats::Gauge& upstream_cx_active;
  stats::Counter& upstream_cx_connect_fail;
  stats::Counter& upstream_cx_connect_timeout;
  stats::Counter& upstream_cx_destroy;
  stats::Counter& upstream_rq_total;
  stats::Gauge& upstream_rq_active;
  stats::Counter& upstream_rq_pending_total;
  stats::Counter& upstream_rq_pending_overflow;
  stats::Gauge& upstream_rq_pending_active;
  stats::Counter& upstream_rq_timeout;
  stats::Counter& upstream_rq_completed;
  stats::Counter& upstream_rq_1xx;
  stats::Counter& upstream_rq_2xx;
  stats::Counter& upstream_rq_3xx;
  stats::Counter& upstream_rq_4xx;
  stats::Counter& upstream_rq_5xx;
  // Retries (filters/router): each retry made; a retried request whose last
  // attempt was not retriable; one not retried for max_retries; one whose
  // retries ran out; one whose body outgrew the retry buffer; per_try_timeout.
  stats::Counter& upstream_rq_retry;
  stats::Counter& upstream_rq_retry_success;
  stats::Counter& upstream_rq_retry_overflow;
  stats::Counter& upstream_rq_retry_limit_exceeded;
  stats::Counter& retry_or_shadow_abandoned;
  stats::Counter& upstream_rq_per_try_timeout;
  stats::Counter& upstream_cx_none_healthy;
  // A pick made over every host because too few were healthy
  // (common_lb_config.healthy_panic_threshold).
  stats::Counter& lb_healthy_panic;
  stats::Gauge& membership_total;
  stats::Gauge& membership_healthy;
  stats::Gauge& membership_degraded;
  stats::Gauge& membership_excluded;
  stats::Counter& ssl_handshake;
  stats::Counter& upstream_cx_http1_total;
  stats::Counter& upstream_cx_http2_total;
  stats::Store& store;
  std::string prefix;  // "cluster.<name>." for counters made on demand.
};

// One upstream connection with its client codec. Owned by its host's pool
// (it deletes itself, deferred, once closed); lent to routers one stream at
// a time: HTTP/1 carries one stream, HTTP/2 up to the peer's limit.
class UpstreamClient : public Deletable,
                       public TcpConnection::Callbacks,
                       public http::CodecOwner,
                       public Schedulable {
 public:
  UpstreamClient(Host& host, Worker& worker, Want want);
  ~UpstreamClient() override;

  http::ClientConnection& codec() { return *codec_; }
  // Whether this connection can carry a request that wants w (only once
  // connected: before that its protocol may be unknown).
  bool serves(Want w) const;
  Host& host() { return *host_; }
  // The connection's own address (a getsockname; for access logs).
  std::string localAddress() const { return conn_.localAddress(); }
  // The borrower's stream ended (cleanly, or reset by the borrower first):
  // the connection goes back to the pool, or closes if it cannot be reused.
  void release();
  // The borrower gave up mid-stream without a clean end: it resets its
  // stream; an HTTP/1 connection then closes, an HTTP/2 one carries on.
  void abandon();

  // TcpConnection::Callbacks
  void onRead(BufferChain& data) override;
  void onEof() override;
  void onClosed(TcpConnection::CloseReason reason) override;
  void onConnected() override;
  void onTlsHandshakeDone() override;
  void onAboveWriteBufferHighWatermark() override;
  void onBelowWriteBufferLowWatermark() override;
  // http::CodecOwner
  void write(BufferChain& data) override;
  void scheduleDispatch() override;
  void readDisable(bool disable) override;
  void closeAfterFlush() override;
  void shutdownAfterFlush() override { conn_.shutdownAfterFlush(); }
  // Schedulable: bytes the codec held while its stream stopped reading.
  void onScheduled() override;

 private:
  friend class Host;
  std::shared_ptr<Host> host_;  // Keeps a removed host alive until we close.
  Worker& worker_;
  TcpConnection conn_;
  std::unique_ptr<http::ClientConnection> codec_;  // Made once the protocol is known.
  Want want_;                                      // What it was opened for.
  bool up_ = false;       // Connected (and TLS handshake done): streams may start.
  uint32_t streams_ = 0;  // Streams lent out now.
  void makeCodec(bool h2);
  void becomeReady();
  bool counted_active_ = false;
  bool ready_ = false;  // In the host's ready list (connected, has room).
  bool dispatch_scheduled_ = false;
  // Links in the host's ready list, which is intrusive so that lending and
  // giving back a connection (once per request) allocates no list node.
  UpstreamClient* ready_prev_ = nullptr;
  UpstreamClient* ready_next_ = nullptr;
  // common_http_protocol_options.idle_timeout, while no stream is lent out.
  Deadline idle_deadline_;
};

// What an attempt on a host came to, short of a response (outlier
// detection's local-origin results): a connection (or a stream on one) was
// had, or failed (connect failure or timeout, a reset), or the router's
// timeout ended the attempt.
enum class LocalOrigin : uint8_t { kConnectSuccess, kConnectFailed, kTimeout };

// One endpoint of a cluster, with its connection pool on this worker.
class Host : public std::enable_shared_from_this<Host> {
 public:
  friend class UpstreamClient;
  Host(Cluster& cluster, const sockaddr_storage& addr, uint32_t weight);

  const std::string& address() const { return address_; }
  const ::sockaddr* socketAddress() const { return reinterpret_cast<const ::sockaddr*>(&addr_); }
  uint32_t weight() const { return weight_; }
  uint32_t activeRequests() const { return active_requests_; }
  Cluster& cluster() { return *cluster_; }
  using EdsHealth = config::ClusterConfig::Endpoint::EdsHealth;
  // Whether load balancers may pick it first: not ejected by outlier
  // detection, not failed or degraded by active health checks, and healthy
  // by EDS's health_status. Every load balancer goes through
  // Cluster::chooseHost, whose host sets come from these.
  bool healthy() const {
    return !ejected_ && !failed_hc_ && !degraded_hc_ && eds_health_ == EdsHealth::kHealthy;
  }
  // Degraded by EDS (DEGRADED) or by its active health checks
  // (x-envoy-degraded), and nothing failed or excludes it: picked as healthy
  // hosts run short.
  bool degraded() const {
    return !ejected_ && !failed_hc_ &&
           (eds_health_ == EdsHealth::kDegraded ||
            (degraded_hc_ && eds_health_ == EdsHealth::kHealthy));
  }
  // EDS says DRAINING: not counted in the cluster's health, picked only in panic.
  bool excluded() const { return eds_health_ == EdsHealth::kDraining; }
  bool ejected() const { return ejected_; }
  bool failedHealthCheck() const { return failed_hc_; }
  EdsHealth edsHealth() const { return eds_health_; }
  uint32_t priority() const { return priority_; }
  // From the config (EDS or load_assignment), for a new or a kept host.
  void setEdsHealth(EdsHealth health, uint32_t priority) {
    eds_health_ = health;
    priority_ = priority;
  }

  // Outlier detection: the router tells the host what each attempt came to.
  // Without outlier_detection on the cluster each is one flag test.
  // A response's status; for a gRPC request, its grpc-status mapped to an
  // HTTP status as Envoy does (another request's grpc-status is no status).
  // With a health check, a response with x-envoy-immediate-health-check-fail
  // fails the host's check at once (the same one flag test without either).
  void onUpstreamResponse(const HeaderMap& headers, const HeaderMap& request) {
    if (watch_responses_) [[unlikely]]
      putResponse(headers, request);
  }
  // timeout_status: the status the router answers a timeout with (504, or
  // 204 with x-envoy-upstream-rq-timeout-alt-response), which is what counts
  // for a timeout when local-origin errors are not split.
  void onLocalOrigin(LocalOrigin result, int timeout_status = 504) {
    if (detect_) [[unlikely]]
      putLocalOrigin(result, timeout_status);
  }
  // From the main thread's detector (posted): ejected, or back. Coming back
  // starts the error counts again.
  void setEjected(bool ejected);
  // From the main thread's health checker (posted): failed, or healthy.
  void setHealthCheckFailed(bool failed) { failed_hc_ = failed; }
  void setHealthCheckDegraded(bool degraded) { degraded_hc_ = degraded; }
  bool healthCheckDegraded() const { return degraded_hc_; }
  // The requests counted since the last call (for success rate and failure
  // percentage), which start again from zero.
  RequestCounts takeRequestCounts();

  // Asks the pool for a connection. Returns false when the request was
  // answered synchronously (ready or failed) — or true when it waits, in
  // which case cancel(callbacks) withdraws it.
  void newStream(PoolCallbacks& callbacks, Want want);
  void cancel(PoolCallbacks& callbacks);
  // The host left the cluster: close idle connections, keep busy ones, and
  // still serve the requests already waiting for a connection.
  void retire();
  // Shutdown: the requests still waiting fail.
  void failPending();
  void setWeight(uint32_t weight) { weight_ = weight; }
  // Shutdown: close every connection, busy or not.
  void closeAll();

  // Used by UpstreamClient.
  void onClientFailed(UpstreamClient& client, PoolFailure reason,
                      std::string_view transport_failure);
  // The client connected, or a stream on it ended: give it to waiters.
  void onClientAvailable(UpstreamClient& client);
  void onClientClosed(UpstreamClient& client);
  void requestStarted();
  void requestEnded();

  int64_t smooth_weight = 0;  // Round-robin state (smooth weighted RR).
  bool chosen = false;        // ORIGINAL_DST: chosen since the last cleanup.

 private:
  void connectOne(Want want);
  // Lends client to cb for one stream.
  void assign(UpstreamClient& client, PoolCallbacks& cb);
  void addReady(UpstreamClient& client);
  void removeReady(UpstreamClient& client);
  void armIdleTimer(UpstreamClient& client);
  void putResponse(const HeaderMap& headers, const HeaderMap& request);
  void putStatus(int status);
  void putLocalOrigin(LocalOrigin result, int timeout_status);
  void report(OutlierKind kind);
  Cluster* cluster_;
  sockaddr_storage addr_;
  std::string address_;
  uint32_t weight_;
  uint32_t active_requests_ = 0;
  uint32_t connecting_ = 0;
  UpstreamClient* ready_head_ = nullptr;  // The ready list; head: the warmest (LIFO).
  struct Pending {
    PoolCallbacks* callbacks;
    Want want;
  };
  std::list<Pending> pending_;
  std::vector<UpstreamClient*> all_;
  bool retired_ = false;
  // Outlier detection (this worker's view): the cluster has it; the errors
  // in a row of each kind; ejected by the main thread's detector.
  bool detect_ = false;
  bool ejected_ = false;
  // Active health checking: the cluster has it; the host failed its checks
  // (HealthCheckedHosts when the host is made, then posted changes).
  bool health_checked_ = false;
  bool failed_hc_ = false;
  bool degraded_hc_ = false;  // Its last passing check said x-envoy-degraded.
  EdsHealth eds_health_ = EdsHealth::kHealthy;
  uint32_t priority_ = 0;
  bool watch_responses_ = false;  // detect_ || health_checked_.
  uint32_t consecutive_5xx_ = 0;
  uint32_t consecutive_gateway_failure_ = 0;
  uint32_t consecutive_local_origin_failure_ = 0;
  RequestCounts requests_;  // This interval's, until the main thread takes them.
};

class Cluster {
 public:
  Cluster(Worker& worker, std::shared_ptr<const config::ClusterConfig> config);
  ~Cluster();

  const config::ClusterConfig& config() const { return *config_; }
  const std::string& name() const { return config_->name; }
  ClusterStats& stats() { return stats_; }
  Worker& worker() { return worker_; }

  // Picks a host by the cluster's lb_policy: from every host while all are
  // healthy and of priority 0, else from the set chooseSet draws; nullptr
  // when there is none (for ORIGINAL_DST: when context names no destination).
  std::shared_ptr<Host> chooseHost(const LbContext& context = {});
  // This worker's hosts, and the healthy ones among them: the health check
  // filter's cluster_min_healthy_percentages.
  size_t hostCount() const { return hosts_.size(); }
  size_t healthyHostCount() const { return hosts_.size() - ejected_; }
  // Outlier detection (posted from the main thread): the hosts at address
  // are ejected, or back.
  void setEjected(const std::string& address, bool ejected);
  // Active health checking (posted from the main thread): the hosts at
  // address failed their checks, or passed.
  void setHealthCheckFailed(const std::string& address, bool failed);
  void setHealthCheckDegraded(const std::string& address, bool degraded);
  // Every host's requests since the last call (hosts with none left out).
  HostRequestCounts takeRequestCounts();
  // Replaces the host list (addresses already resolved), with each host's
  // EDS health and priority when endpoints is given (else healthy, 0).
  void setHosts(const std::vector<sockaddr_storage>& addrs, const std::vector<uint32_t>& weights,
                const std::vector<const config::ClusterConfig::Endpoint*>* endpoints = nullptr);
  // A config that differs only in endpoints (same definition_hash): takes
  // its endpoints as the host list (STATIC, EDS).
  void setConfig(std::shared_ptr<const config::ClusterConfig> config);
  // Replaced or removed: every host retires; requests in flight finish.
  void retire();
  // Whether a request, a waiting request or a connection still uses it.
  bool inUse() const;
  // Shutdown: every host retires, waiters fail, connections close.
  void retireAll();

  // How many streams one new connection is expected to carry: one for
  // HTTP/1; for HTTP/2 many (the peer's real limit is known only after its
  // SETTINGS, and a full connection simply makes the pool open another).
  size_t streamsPerConnection() const {
    return config_->upstream_protocol == config::ClusterConfig::UpstreamProtocol::kHttp1 ? 1 : 100;
  }
  // The pool want for a request arriving on a downstream protocol.
  Want want(http::Protocol downstream) const;

  // Circuit breaker state across hosts (per worker).
  uint32_t connections = 0;
  uint32_t pending_requests = 0;
  uint32_t active_requests = 0;
  uint32_t active_retries = 0;  // Retries scheduled or running (max_retries).

 private:
  // ORIGINAL_DST: the host for the context's destination, made if new.
  std::shared_ptr<Host> chooseOriginalDst(const LbContext& context);
  // ORIGINAL_DST, every cleanup_interval: a host not chosen since the last
  // sweep and with no request in flight leaves the cluster.
  void sweepOriginalDst();
  void removeOriginalDst(size_t i);
  void countOriginalDst(int delta);
  void closeCleanupTimer();
  // After hosts_ or a host's health changed: the counts, plain_,
  // priorities_ and the membership gauges.
  void countHealthy();
  // Envoy's share of requests for each priority and tier (its
  // recalculatePerPriorityState), from the counts in priorities_.
  void computeLoads();

  // RING_HASH / MAGLEV: a table over a list of hosts. hosts are raw
  // pointers, so that they do not count as users of a host (inUse); a
  // table is rebuilt before any of them leaves hosts_.
  struct HashTable {
    std::unique_ptr<RingHashTable> ring;  // kRingHash
    std::unique_ptr<MaglevTable> maglev;  // kMaglev
    std::vector<Host*> hosts;             // What the table's indexes name.
  };
  void buildHashTable(const std::vector<std::shared_ptr<Host>>& hosts, HashTable& table);
  void reportHashGauges(const HashTable& table);
  // The hosts a load balancer picks from, and their hash table.
  struct HostSet {
    std::vector<std::shared_ptr<Host>> hosts;
    HashTable hash;  // RING_HASH / MAGLEV only.
  };
  // The hosts of one priority, sorted by health, and the percent of
  // requests each tier takes.
  struct Priority {
    HostSet all;
    HostSet healthy;
    HostSet degraded;
    size_t excluded = 0;  // Of all, EDS DRAINING.
    bool panic = false;   // Healthy and degraded below healthy_panic_threshold.
    uint32_t healthy_load = 0;
    uint32_t degraded_load = 0;
    uint32_t panic_load = 0;  // While every priority panics.
  };
  // Which set of which priority a pick draws from, by a number from 0 to
  // 99 (the request's hash for hashing policies, else random): Envoy's
  // choosePriority over the loads, then the tier, or all of the priority's
  // hosts in panic (counted in lb_healthy_panic). Empty: no host (503 UH).
  const HostSet& chooseSet(uint64_t draw);
  // A hash policy's hash of the request, or a random one.
  uint64_t requestHash(const LbContext& context);
  std::shared_ptr<Host> chooseHashed(const LbContext& context, uint64_t hash,
                                     const HashTable& table);

  Worker& worker_;
  std::shared_ptr<const config::ClusterConfig> config_;
  ClusterStats stats_;
  std::vector<std::shared_ptr<Host>> hosts_;
  HashTable hash_all_;  // Over hosts_ (a hashing cluster only).
  // Hosts of hosts_ that are not healthy(): ejected by outlier detection,
  // failed by active health checks, or not healthy by EDS; of them, the
  // degraded() and the excluded() ones.
  size_t ejected_ = 0;
  size_t degraded_ = 0;
  size_t excluded_ = 0;
  // Every host healthy and of priority 0: a pick draws from hosts_ (the
  // only cost of health and priorities then: this test). Else from
  // priorities_, indexed by priority.
  bool plain_ = true;
  bool total_panic_ = false;  // Every priority panics: load by host count.
  std::vector<Priority> priorities_;
  size_t rr_next_ = 0;
  uv_timer_t* cleanup_timer_ = nullptr;  // ORIGINAL_DST, while it has hosts.
};

class ClusterManager {
 public:
  ClusterManager(Worker& worker, const config::ClusterMap& clusters);
  ~ClusterManager();
  Cluster* get(std::string_view name);
  // A new snapshot's clusters: new ones start; a config that differs only
  // in endpoints swaps hosts in place; a changed or removed cluster retires,
  // finishes what it carries, and is freed once nothing uses it.
  void update(const config::ClusterMap& next);
  // The same for only the clusters named (changed, added or removed).
  void update(const config::ClusterMap& next, const std::vector<std::string>& changed);
  // Shutdown: every host retires (idle connections close, waiters fail).
  void retireAll();
  // Upstream connections still open (connecting, busy or idle).
  uint32_t connections() const;
  // From the main thread (posted): a STRICT_DNS cluster resolved anew.
  void setHosts(const std::string& cluster, const std::vector<sockaddr_storage>& addrs);
  // From the main thread's outlier detector (posted).
  void setEjected(const std::string& cluster, const std::string& address, bool ejected);
  // From the main thread's health checker (posted).
  void setHealthCheckFailed(const std::string& cluster, const std::string& address, bool failed);
  void setHealthCheckDegraded(const std::string& cluster, const std::string& address,
                              bool degraded);
  HostRequestCounts takeRequestCounts(const std::string& cluster);

 private:
  static constexpr uint64_t kReapIntervalMs = 1000;
  void retire(std::unique_ptr<Cluster> cluster);
  void reap();
  void stopReapTimer();

  Worker& worker_;
  std::map<std::string, std::unique_ptr<Cluster>, std::less<>> clusters_;
  std::vector<std::unique_ptr<Cluster>> retired_;  // Replaced or removed, still in use.
  uv_timer_t* reap_timer_ = nullptr;               // Runs while retired_ is not empty.
};

}  // namespace skiff::upstream
