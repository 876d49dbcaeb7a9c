// The main thread: loads the bootstrap, resolves what must be resolved
// before serving (port 0, STRICT_DNS), starts the workers, runs the admin
// server and turns signals into a graceful drain (DESIGN.md, "Shape").
#pragma once

#include <uv.h>

#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "proxy/admin/admin_server.h"
#include "proxy/config/config.h"
#include "proxy/upstream/health_checker.h"
#include "proxy/upstream/outlier_detector.h"
#include "proxy/worker/worker.h"
#include "xds/ads_client.h"
#include "xds/dynamic_config.h"

namespace skiff {

struct ServerOptions {
  std::string config_path;
  uint32_t concurrency = 0;     // 0: one worker per core.
  uint32_t drain_time_s = 600;  // Envoy's default.
  std::string admin_address_path;
  bool validate_only = false;
};

class Server : public AdminSource,
               public xds::AdsClient::Watcher,
               public xds::DynamicConfig::Callbacks {
 public:
  explicit Server(ServerOptions options);
  ~Server() override;

  // Runs until drained; returns the process exit code.
  int run();

  // AdminSource
  bool ready() const override;
  std::string state() const override;
  std::string statsText() override;
  std::string statsJson() override;
  std::string statsPrometheus() override;
  std::string configDump() override;
  std::string listenersText(bool json) override;
  std::string clustersText() override;
  std::string serverInfo() override;
  void quit() override;
  void drainListeners() override;

 private:
  // xds::AdsClient::Watcher: what the control plane sends goes to dynamic_.
  std::string onResources(const std::string& type_url, const std::vector<xds::XdsResource>& updated,
                          const std::vector<std::string>& removed,
                          const std::string& version_info) override;
  void onStreamStatus(bool connected) override;
  // xds::DynamicConfig::Callbacks
  void subscribe(const std::string& type_url, const std::set<std::string>& names,
                 bool wildcard) override;
  void updateSubscription(const std::string& type_url, const std::set<std::string>& added,
                          const std::set<std::string>& removed) override;
  void warmCluster(const std::string& name,
                   std::shared_ptr<const config::ClusterConfig> cluster) override;
  void holdReplies(const std::string& type_url, bool hold) override;
  void publish(std::shared_ptr<const config::Snapshot> snapshot) override;
  void onInitialized() override;
  void startXds(const envoy::config::core::v3::Node& node);
  // LIVE once every worker listens and the first xDS configuration is in.
  void maybeGoLive();
  void releaseStartupPages();

  struct DnsCluster;
  bool prepareListeners(std::string& error);
  void startDns();
  void resolve(DnsCluster& dns);
  void finishDnsRound(DnsCluster& dns);
  void postHosts(const DnsCluster& dns);
  // The outlier detector's host list for a STRICT_DNS cluster.
  void setOutlierHosts(const std::string& cluster, const std::vector<sockaddr_storage>& addrs);
  // Stops dns_[i] and drops it from dns_; it is freed once its timer and
  // lookups end.
  void retireDns(size_t i);
  // The hosts of the STRICT_DNS versions the snapshot activates (set on the
  // main thread's cluster manager; the workers set them with the snapshot).
  using ActivatedHosts = std::vector<std::pair<std::string, std::vector<sockaddr_storage>>>;
  ActivatedHosts updateDnsClusters(const config::Snapshot& snapshot);
  bool canStartWorkers() const;
  void startWorkers();
  void beginDrain();
  void teardownMain();
  void collect(std::map<std::string, uint64_t>& counters, std::map<std::string, int64_t>& gauges);

  ServerOptions options_;
  std::shared_ptr<const config::Snapshot> snapshot_;
  // The newest snapshot every worker has applied (what /listeners shows).
  std::shared_ptr<const config::Snapshot> served_;
  std::unique_ptr<Worker> main_;  // The main thread's loop (admin, DNS, signals).
  // Outlier detectors (on main_'s loop; cleared before it closes).
  std::unique_ptr<upstream::OutlierDetectors> outliers_;
  // Active health checkers (on main_'s loop; cleared before it closes).
  std::unique_ptr<upstream::HealthCheckers> health_checks_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<AdminServer> admin_;
  std::unique_ptr<xds::DynamicConfig> dynamic_;  // With dynamic_resources only.
  std::unique_ptr<xds::AdsClient> ads_;
  std::vector<int> port_reservations_;  // Bound sockets that hold port-0 picks.
  std::vector<std::unique_ptr<DnsCluster>> dns_;
  size_t dns_pending_ = 0;
  bool dns_started_ = false;  // startDns has counted the static STRICT_DNS clusters.
  uv_signal_t sigterm_;
  uv_signal_t sigint_;
  uv_signal_t sigusr1_;  // Reopens access log files.
  uv_async_t worker_event_;
  // Once live: fires when xDS has been quiet for a while after a change, to
  // unmap the parsing code the change ran (releaseReadOnlyImagePages).
  uv_timer_t release_pages_;
  std::atomic<uint32_t> workers_ready_{0};
  std::atomic<uint32_t> workers_done_{0};
  std::atomic<bool> worker_failed_{false};
  std::string worker_error_;   // Written before workers_ready_ is bumped.
  bool handles_open_ = false;  // Signals, worker_event_ and release_pages_ are initialized.
  bool workers_listening_ = false;
  bool live_ = false;
  bool draining_ = false;
  int exit_code_ = 0;
  std::chrono::system_clock::time_point started_;
};

}  // namespace skiff
