// Active health checking (Envoy's Cluster.health_checks): HTTP and TCP checks
// of every host of a cluster, run on the main thread's loop with their own
// connections (not the workers' pools), as Envoy runs them.
//
//   main thread (per cluster, per host)           every worker
//   -----------------------------------           ------------
//   HealthCheckSession: a timer, a connection     Host::failed_hc_ (set when
//   check passes or fails ─▶ HostHealth           the host is made, from
//   the host's health changed ─▶ HealthCheckedHosts HealthCheckedHosts)
//   and a post to every worker ───────────────▶   Cluster::setHealthCheckFailed:
//                                                 the host leaves (or rejoins)
//   HealthCheckers::immediateFail ◀── a worker    the load balancer's hosts
//   saw x-envoy-immediate-health-check-fail
//
// A host of a cluster with a health check starts failed (Envoy's
// /failed_active_hc) until its first check passes; a host kept across an
// update (EDS, or a changed cluster keeping the address) keeps its health.
// A worker reads HealthCheckedHosts only when it makes a host, never per
// request: the load balancer sees one more reason for Host::healthy() to be
// false, counted with the outlier ejections (Cluster::chooseHost). A passing
// HTTP check whose answer says x-envoy-degraded makes the host degraded
// instead (HealthCheckers::onDegradedChanged, Host::degraded_hc_).
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/config/config.h"
#include "proxy/stats/stats.h"

namespace skiff {
class Worker;
}

namespace skiff::upstream {

// Why a check failed (Envoy's HealthCheckFailureType): a status outside the
// expected ones (kActive), one of the retriable ones, a connection that
// failed or closed mid-check, the check's timeout, or a worker's response
// with x-envoy-immediate-health-check-fail (kPassive).
enum class HcFailure : uint8_t { kActive, kRetriable, kNetwork, kNetworkTimeout, kPassive };

// What a check did to the host's health (Envoy's HealthTransition).
enum class HcTransition : uint8_t { kUnchanged, kChanged, kChangePending };

// One host's health under one checker: Envoy's thresholds. The first check
// of a host decides at once; after it, healthy_threshold passes in a row
// make a failed host healthy; unhealthy_threshold network failures or
// retriable statuses in a row make a healthy host failed, and any other
// failure does at once.
class HostHealth {
 public:
  explicit HostHealth(bool failed) : failed_(failed) {}
  bool failed() const { return failed_; }
  HcTransition onSuccess(uint32_t healthy_threshold);
  HcTransition onFailure(HcFailure failure, uint32_t unhealthy_threshold);

 private:
  bool failed_;
  bool first_check_ = true;
  uint32_t successes_ = 0;  // In a row, while failed.
  uint32_t failures_ = 0;   // Counted ones in a row, while healthy.
};

// Envoy's choice of the time to the next check: until the cluster has made a
// connection (traffic), no_traffic_healthy_interval after a pass that left
// the host healthy, else no_traffic_interval; then interval after a pass,
// unhealthy_interval after a failure, or the edge intervals when the check
// moved the host toward a change it has not made yet.
uint64_t healthCheckBaseMs(const config::HealthCheckConfig& config, bool traffic, bool passed,
                           HcTransition transition);
// Envoy's jitter on that time: plus random() modulo interval_jitter_percent
// % of it, plus random() modulo interval_jitter; at least 1 ms.
uint64_t healthCheckJitteredMs(const config::HealthCheckConfig& config, uint64_t base_ms,
                               const std::function<uint64_t()>& random);
// Whether status is in one of the [start, end) ranges.
bool statusInRanges(int status, const std::vector<std::pair<int64_t, int64_t>>& ranges);
// Envoy's TCP check: every block of receive is found in data, each after the
// one before it.
bool tcpReceiveMatches(std::string_view data, const std::vector<std::string>& receive);

// The hosts that passed their checks, per cluster with a health check, for
// workers to read when they make a host (a new host of such a cluster starts
// failed unless it is here). Written on the main thread when a host's health
// changes, before every worker is told; never read per request.
class HealthCheckedHosts {
 public:
  static HealthCheckedHosts& instance();
  bool failed(const std::string& cluster, const std::string& address) const;
  void set(const std::string& cluster, const std::string& address, bool failed);
  // The hosts whose last passing check said x-envoy-degraded.
  bool degraded(const std::string& cluster, const std::string& address) const;
  void setDegraded(const std::string& cluster, const std::string& address, bool degraded);
  void forgetCluster(const std::string& cluster);

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::set<std::string>> healthy_;   // Guarded by mu_.
  std::map<std::string, std::set<std::string>> degraded_;  // Guarded by mu_.
};

// Where workers report an upstream response carrying
// x-envoy-immediate-health-check-fail. Called on worker threads.
class HealthCheckReports {
 public:
  virtual ~HealthCheckReports() = default;
  virtual void immediateFail(const std::string& cluster, const std::string& address) = 0;
  // The process's receiver, or null (reports are dropped). Set before
  // workers start, cleared after they stop.
  static void set(HealthCheckReports* reports);
  static HealthCheckReports* get();
};

class HealthCheckSession;

// The server's health checkers, one per cluster with health_checks, each
// with a session per host, on the main loop.
class HealthCheckers : public HealthCheckReports {
 public:
  // each_worker: runs a function on every worker (posted). traffic: whether
  // a cluster has made an upstream connection yet (no_traffic_interval).
  // passed: a check of a host passed (outlier detection may uneject it).
  using EachWorker = std::function<size_t(std::function<void(Worker&)>)>;
  using Traffic = std::function<bool(const std::string& cluster)>;
  using Passed = std::function<void(const std::string& cluster, const std::string& address)>;
  HealthCheckers(Worker& main, EachWorker each_worker, Traffic traffic, Passed passed);
  ~HealthCheckers() override;
  HealthCheckers(const HealthCheckers&) = delete;
  HealthCheckers& operator=(const HealthCheckers&) = delete;

  // A new snapshot's clusters: checkers start, stop, or restart with a new
  // config; hosts kept (by address) keep their health. STRICT_DNS hosts
  // come through setHosts.
  void update(const config::ClusterMap& clusters);
  void setHosts(const std::string& cluster, const std::vector<sockaddr_storage>& addrs);
  // Whether a host failed its checks (for /clusters): false without a check.
  bool failed(const std::string& cluster, const std::string& address) const;
  // Whether its last passing check was degraded (for /clusters).
  bool degraded(const std::string& cluster, const std::string& address) const;
  // Envoy's cluster initialization waits for this: every host the cluster
  // had (for STRICT_DNS: once resolved) was checked once, pass or fail.
  // True for a cluster without a checker.
  bool firstRoundDone(const std::string& cluster) const;
  // Called (posted on the main loop) when a cluster's first round is done.
  void setOnFirstRound(std::function<void(const std::string& cluster)> fn) {
    on_first_round_ = std::move(fn);
  }
  // Stops every session (shutdown).
  void clear();

  // HealthCheckReports (worker threads).
  void immediateFail(const std::string& cluster, const std::string& address) override;

  // The parts of one cluster's checker that its sessions use.
  struct Stats {
    Stats(stats::Store& store, const std::string& prefix);
    stats::Counter& attempt;
    stats::Counter& success;
    stats::Counter& failure;
    stats::Counter& passive_failure;
    stats::Counter& network_failure;
    stats::Counter& verify_cluster;  // Always 0: service_name_matcher is refused.
    stats::Gauge& healthy;
    stats::Gauge& degraded;  // Hosts whose last passing check said x-envoy-degraded.
  };
  struct Checker {
    HealthCheckers* owner = nullptr;
    std::string name;
    std::shared_ptr<const config::ClusterConfig> cluster;
    std::unique_ptr<Stats> stats;
    bool traffic = false;  // Latched once the cluster made a connection.
    std::map<std::string, std::unique_ptr<HealthCheckSession>> sessions;  // By address.
    // A changed STRICT_DNS cluster: its hosts' health until its hosts come.
    std::map<std::string, bool> carried;
    // Hosts whose endpoint disables active health checks: never checked,
    // always healthy.
    std::set<std::string> disabled;
    bool hosts_known = false;       // STRICT_DNS: false until the first resolution.
    bool first_round_done = false;  // Latched (firstRoundDone).
  };
  // One host to check: its address, where its checks go (health_check_config
  // port_value), or none (disable_active_health_check).
  struct Target {
    sockaddr_storage addr;
    sockaddr_storage check_addr;
    bool disabled = false;
  };
  // From a session: the check's outcome changed the host's health.
  void onHealthChanged(Checker& checker, const std::string& address, bool failed);
  // From a session: a passing check's x-envoy-degraded came or went.
  void onDegradedChanged(Checker& checker, const std::string& address, bool degraded);
  void onPassed(Checker& checker, const std::string& address);
  // From a session's first result, or after its hosts changed: latches
  // first_round_done once every session has a result.
  void maybeFirstRoundDone(Checker& checker);
  bool traffic(Checker& checker);
  Worker& main() { return main_; }

 private:
  void start(const std::string& name, std::shared_ptr<const config::ClusterConfig> cluster,
             std::map<std::string, bool> carried);
  // Sessions for exactly these hosts: new ones start failed (or with the
  // health carried), gone ones stop; a kept host whose checks go elsewhere
  // now starts a new session with its health.
  void setSessions(Checker& checker, const std::vector<Target>& targets);
  static std::vector<Target> endpointTargets(const config::ClusterConfig& cluster);
  void setHealthyGauge(Checker& checker);

  Worker& main_;
  EachWorker each_worker_;
  Traffic traffic_;
  Passed passed_;
  std::function<void(const std::string&)> on_first_round_;
  std::map<std::string, std::unique_ptr<Checker>> checkers_;
};

}  // namespace skiff::upstream
