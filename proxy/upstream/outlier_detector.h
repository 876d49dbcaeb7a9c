// Outlier detection (Envoy's cluster outlier_detection): passive health by
// consecutive errors, success rate and failure percentage.
//
// Envoy's detector runs once per cluster on the main thread, and every worker
// sees the same ejections. skiff's share-nothing workers split it in two:
//
//   worker (per host, plain counters)          main thread (per cluster)
//   ---------------------------------          -------------------------
//   Host::onUpstreamResponse / onLocalOrigin   OutlierDetector::onReport
//   counts errors in a row; at the threshold   decides: already ejected?
//   posts (cluster, address, kind) ─────────▶  max_ejection_percent, the
//   and starts counting again                  enforcing_* chance; ejects
//                                              and posts to every worker ──▶
//   Cluster::setEjected: the host leaves       Cluster::setEjected
//   (or rejoins) the load balancer's hosts     interval timer: unejects
//
// So each worker counts its own consecutive errors (a host with N errors in a
// row spread over two workers is not reported), while ejections are
// cluster-wide, as in Envoy. With one worker it is Envoy's behaviour.
//
// Success rate and failure percentage need every worker's requests: each
// interval the main thread asks every worker for its hosts' request counts
// of the interval (Cluster::takeRequestCounts, which starts them again), and
// judges once all have answered, over their sums.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "proxy/config/config.h"
#include "proxy/stats/stats.h"

namespace skiff {
class Worker;
}

namespace skiff::upstream {

// Why a host was reported (Envoy's OutlierEjectionType, consecutive kinds).
enum class OutlierKind : uint8_t {
  kConsecutive5xx,
  kConsecutiveGatewayFailure,
  kConsecutiveLocalOriginFailure,
  kSuccessRate,
  kSuccessRateLocalOrigin,
  kFailurePercentage,
  kFailurePercentageLocalOrigin,
};

// One host's requests over an interval: every result and the successes (a
// status under 500), and with split_external_local_origin_errors the
// local-origin results apart (a connection made is a success).
struct RequestCounts {
  uint64_t total = 0;
  uint64_t success = 0;
  uint64_t local_total = 0;
  uint64_t local_success = 0;
};
using HostRequestCounts = std::vector<std::pair<std::string, RequestCounts>>;

// Where workers' hosts report a run of errors. Called on worker threads.
class OutlierReports {
 public:
  virtual ~OutlierReports() = default;
  virtual void report(const std::string& cluster, const std::string& address, OutlierKind kind) = 0;
  // The process's receiver (the server's detectors), or null: reports are
  // dropped. Set before workers start, cleared after they stop.
  static void set(OutlierReports* reports);
  static OutlierReports* get();
};

// Envoy's max_ejection_percent rule: one more ejection is allowed when the
// hosts ejected after it are at most max_percent of the cluster's hosts, or,
// with always_eject_one_host, when none is ejected yet. (So with the default
// 10%, a cluster of fewer than 10 hosts ejects none unless it is set.)
bool mayEject(size_t ejected_now, size_t hosts, uint32_t max_percent, bool always_eject_one_host);

// How long an ejection lasts: base_ejection_time times the host's back-off
// (1 for a first ejection, one more per ejection that follows within
// max_ejection_time, one less per interval spent healthy), capped at
// max_ejection_time; plus the jitter drawn for it.
uint64_t ejectionMs(const config::OutlierDetectionConfig& config, uint32_t backoff);

// Envoy's success-rate ejection threshold over the hosts' success rates
// (percent): their mean minus stdev_factor population standard deviations.
// mean: set to the mean.
double successRateThreshold(const std::vector<double>& rates, double stdev_factor, double& mean);

// One cluster's detector, on the main thread.
class OutlierDetector {
 public:
  // Tells every worker that address was ejected (true) or came back (false).
  using Notify = std::function<void(const std::string& address, bool ejected)>;
  // random: for the enforcing_* chances and the jitter.
  OutlierDetector(std::shared_ptr<const config::ClusterConfig> cluster, stats::Store& store,
                  Notify notify, std::function<uint64_t()> random);
  ~OutlierDetector();
  OutlierDetector(const OutlierDetector&) = delete;
  OutlierDetector& operator=(const OutlierDetector&) = delete;

  const std::shared_ptr<const config::ClusterConfig>& cluster() const { return cluster_; }
  // A config that differs only in endpoints: keeps every host's state.
  void setCluster(std::shared_ptr<const config::ClusterConfig> cluster) {
    cluster_ = std::move(cluster);
  }
  // The cluster's hosts (formatted addresses). A host that leaves forgets
  // its state (an ejected one stops counting as ejected); a new one starts
  // healthy.
  void setHosts(const std::vector<std::string>& addresses);
  // A worker's report: may eject the host (now: a monotonic clock, ms).
  void onReport(const std::string& address, OutlierKind kind, uint64_t now_ms);
  // Every interval, with the interval's requests summed over workers: hosts
  // whose ejection time is over come back; success rate and failure
  // percentage may eject; hosts healthy for an interval lower their
  // back-off.
  void onInterval(uint64_t now_ms, const std::map<std::string, RequestCounts>& counts = {});
  // An active health check of address passed: with
  // successful_active_health_check_uneject_host (Envoy's default), an
  // ejected host comes back, as when its ejection time is over.
  void onHealthCheckPassed(const std::string& address, uint64_t now_ms);
  bool ejected(const std::string& address) const;
  size_t ejectedCount() const { return ejected_; }
  size_t hostCount() const { return hosts_.size(); }
  // What /clusters shows, as Envoy (-1: not known): a host's success rate
  // over the last interval (the local-origin one with the split), and the
  // cluster's mean and ejection threshold.
  double successRate(const std::string& address, bool local_origin) const;
  double successRateAverage(bool local_origin) const { return average_[local_origin]; }
  double successRateEjectionThreshold(bool local_origin) const { return threshold_[local_origin]; }

 private:
  struct HostState {
    bool ejected = false;
    uint32_t backoff = 0;  // Envoy's ejectTimeBackoff.
    uint64_t ejected_at_ms = 0;
    uint64_t jitter_ms = 0;
    bool unejected = false;  // Came back at least once (unejected_at_ms is set).
    uint64_t unejected_at_ms = 0;
    // Over the last interval, percent; -1: too few requests to tell.
    double success_rate = -1;
    double local_origin_success_rate = -1;
  };
  struct Stats {
    Stats(stats::Store& store, const std::string& prefix);
    stats::Gauge& ejections_active;
    stats::Counter& ejections_total;  // Deprecated in Envoy, still kept.
    stats::Counter& ejections_overflow;
    stats::Counter& ejections_enforced_total;
    stats::Counter& ejections_consecutive_5xx;  // Deprecated in Envoy, still kept.
    stats::Counter& ejections_detected_consecutive_5xx;
    stats::Counter& ejections_enforced_consecutive_5xx;
    stats::Counter& ejections_detected_consecutive_gateway_failure;
    stats::Counter& ejections_enforced_consecutive_gateway_failure;
    stats::Counter& ejections_detected_consecutive_local_origin_failure;
    stats::Counter& ejections_enforced_consecutive_local_origin_failure;
    stats::Counter& ejections_success_rate;  // Deprecated in Envoy, still kept.
    stats::Counter& ejections_detected_success_rate;
    stats::Counter& ejections_enforced_success_rate;
    stats::Counter& ejections_detected_local_origin_success_rate;
    stats::Counter& ejections_enforced_local_origin_success_rate;
    stats::Counter& ejections_detected_failure_percentage;
    stats::Counter& ejections_enforced_failure_percentage;
    stats::Counter& ejections_detected_local_origin_failure_percentage;
    stats::Counter& ejections_enforced_local_origin_failure_percentage;
  };
  void countDetected(OutlierKind kind);
  void eject(const std::string& address, HostState& host, OutlierKind kind, uint64_t now_ms);
  void uneject(const std::string& address, HostState& host, uint64_t now_ms);
  // Envoy's processSuccessRateEjections, over external or local-origin results.
  void judgeRates(bool local_origin, const std::map<std::string, RequestCounts>& counts,
                  uint64_t now_ms);
  const config::OutlierDetectionConfig& config() const { return *cluster_->outlier_detection; }

  std::shared_ptr<const config::ClusterConfig> cluster_;
  Stats stats_;
  Notify notify_;
  std::function<uint64_t()> random_;
  std::map<std::string, HostState> hosts_;
  size_t ejected_ = 0;
  double average_[2] = {-1, -1};    // By local_origin.
  double threshold_[2] = {-1, -1};  // By local_origin.
};

// The server's detectors, one per cluster that has outlier_detection, each
// with its interval timer on the main loop; and the receiver of workers'
// reports (posted to the main loop).
class OutlierDetectors : public OutlierReports {
 public:
  // main: the main thread's loop. each_worker: runs a function on every
  // worker (posted) and says how many there are.
  using EachWorker = std::function<size_t(std::function<void(Worker&)>)>;
  OutlierDetectors(Worker& main, EachWorker each_worker);
  ~OutlierDetectors() override;

  // A new snapshot's clusters: detectors start, stop, or (endpoints only)
  // keep their state with the new host list. STRICT_DNS hosts come through
  // setHosts.
  void update(const config::ClusterMap& clusters);
  void setHosts(const std::string& cluster, const std::vector<std::string>& addresses);
  // An active health check of a host passed (OutlierDetector::onHealthCheckPassed).
  void onHealthCheckPassed(const std::string& cluster, const std::string& address);
  // Whether a host is ejected (for /clusters).
  bool ejected(const std::string& cluster, const std::string& address) const;
  // A cluster's detector, or null.
  const OutlierDetector* find(const std::string& cluster) const;
  // Stops every timer (shutdown).
  void clear();

  // OutlierReports (worker threads).
  void report(const std::string& cluster, const std::string& address, OutlierKind kind) override;

 private:
  struct Entry {
    OutlierDetectors* owner = nullptr;
    std::string name;
    std::unique_ptr<OutlierDetector> detector;
    uv_timer_t* timer = nullptr;
    uint64_t generation = 0;                      // Which detector the workers' answers are for.
    size_t pending = 0;                           // Workers yet to answer this interval.
    std::map<std::string, RequestCounts> counts;  // Their answers so far, summed.
  };
  void start(const std::string& name, std::shared_ptr<const config::ClusterConfig> cluster);
  void stop(Entry& entry);
  // The interval timer: asks every worker for its counts.
  void onTimer(Entry& entry);
  void onCounts(const std::string& name, uint64_t generation, const HostRequestCounts& counts);
  static std::vector<std::string> endpointAddresses(const config::ClusterConfig& cluster);

  Worker& main_;
  EachWorker each_worker_;
  std::map<std::string, Entry> entries_;
  uint64_t generation_ = 0;
};

}  // namespace skiff::upstream
