#include "proxy/upstream/outlier_detector.h"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "proxy/net/connection.h"
#include "proxy/upstream/cluster_manager.h"
#include "proxy/worker/worker.h"

namespace skiff::upstream {

namespace {
std::atomic<OutlierReports*> g_reports{nullptr};
}  // namespace

void OutlierReports::set(OutlierReports* reports) { g_reports.store(reports); }
OutlierReports* OutlierReports::get() { return g_reports.load(); }

bool mayEject(size_t ejected_now, size_t hosts, uint32_t max_percent, bool always_eject_one_host) {
  if (always_eject_one_host && ejected_now == 0) return true;
  if (hosts == 0) return false;
  // Envoy compares a double: 100 * (ejected + 1) / hosts <= max_percent.
  // In integers, exactly the same.
  return 100 * (uint64_t{ejected_now} + 1) <=
         uint64_t{std::min<uint32_t>(max_percent, 100)} * hosts;
}

uint64_t ejectionMs(const config::OutlierDetectionConfig& config, uint32_t backoff) {
  const auto base = static_cast<uint64_t>(config.base_ejection_time.count());
  const auto max = static_cast<uint64_t>(config.max_ejection_time.count());
  return std::min(base * backoff, max);
}

double successRateThreshold(const std::vector<double>& rates, double stdev_factor, double& mean) {
  double sum = 0;
  for (double r : rates) sum += r;
  mean = rates.empty() ? 0 : sum / static_cast<double>(rates.size());
  double variance = 0;
  for (double r : rates) variance += (r - mean) * (r - mean);
  if (!rates.empty()) variance /= static_cast<double>(rates.size());
  return mean - stdev_factor * std::sqrt(variance);
}

// ---- OutlierDetector

OutlierDetector::Stats::Stats(stats::Store& s, const std::string& p)
    : ejections_active(s.gauge(p + "ejections_active")),
      ejections_total(s.counter(p + "ejections_total")),
      ejections_overflow(s.counter(p + "ejections_overflow")),
      ejections_enforced_total(s.counter(p + "ejections_enforced_total")),
      ejections_consecutive_5xx(s.counter(p + "ejections_consecutive_5xx")),
      ejections_detected_consecutive_5xx(s.counter(p + "ejections_detected_consecutive_5xx")),
      ejections_enforced_consecutive_5xx(s.counter(p + "ejections_enforced_consecutive_5xx")),
      ejections_detected_consecutive_gateway_failure(
          s.counter(p + "ejections_detected_consecutive_gateway_failure")),
      ejections_enforced_consecutive_gateway_failure(
          s.counter(p + "ejections_enforced_consecutive_gateway_failure")),
      ejections_detected_consecutive_local_origin_failure(
          s.counter(p + "ejections_detected_consecutive_local_origin_failure")),
      ejections_enforced_consecutive_local_origin_failure(
          s.counter(p + "ejections_enforced_consecutive_local_origin_failure")),
      ejections_success_rate(s.counter(p + "ejections_success_rate")),
      ejections_detected_success_rate(s.counter(p + "ejections_detected_success_rate")),
      ejections_enforced_success_rate(s.counter(p + "ejections_enforced_success_rate")),
      ejections_detected_local_origin_success_rate(
          s.counter(p + "ejections_detected_local_origin_success_rate")),
      ejections_enforced_local_origin_success_rate(
          s.counter(p + "ejections_enforced_local_origin_success_rate")),
      ejections_detected_failure_percentage(s.counter(p + "ejections_detected_failure_percentage")),
      ejections_enforced_failure_percentage(s.counter(p + "ejections_enforced_failure_percentage")),
      ejections_detected_local_origin_failure_percentage(
          s.counter(p + "ejections_detected_local_origin_failure_percentage")),
      ejections_enforced_local_origin_failure_percentage(
          s.counter(p + "ejections_enforced_local_origin_failure_percentage")) {}

OutlierDetector::OutlierDetector(std::shared_ptr<const config::ClusterConfig> cluster,
                                 stats::Store& store, Notify notify,
                                 std::function<uint64_t()> random)
    : cluster_(std::move(cluster)),
      stats_(store, "cluster." + cluster_->name + ".outlier_detection."),
      notify_(std::move(notify)),
      random_(std::move(random)) {}

OutlierDetector::~OutlierDetector() {
  // The gauge is the cluster's; a detector that replaces this one starts at 0.
  stats_.ejections_active.add(-static_cast<int64_t>(ejected_));
}

void OutlierDetector::setHosts(const std::vector<std::string>& addresses) {
  std::map<std::string, HostState> next;
  for (const std::string& a : addresses) {
    auto it = hosts_.find(a);
    next[a] = it == hosts_.end() ? HostState{} : it->second;
  }
  size_t ejected = 0;
  for (const auto& [a, h] : next) ejected += h.ejected ? 1 : 0;
  stats_.ejections_active.add(static_cast<int64_t>(ejected) - static_cast<int64_t>(ejected_));
  ejected_ = ejected;
  hosts_ = std::move(next);
}

double OutlierDetector::successRate(const std::string& address, bool local_origin) const {
  auto it = hosts_.find(address);
  if (it == hosts_.end()) return -1;
  return local_origin ? it->second.local_origin_success_rate : it->second.success_rate;
}

bool OutlierDetector::ejected(const std::string& address) const {
  auto it = hosts_.find(address);
  return it != hosts_.end() && it->second.ejected;
}

void OutlierDetector::onReport(const std::string& address, OutlierKind kind, uint64_t now_ms) {
  // The host may have left the cluster since the worker posted; an ejected
  // one is not detected again (Envoy's onConsecutiveErrorWorker).
  auto it = hosts_.find(address);
  if (it == hosts_.end() || it->second.ejected) return;
  countDetected(kind);
  eject(address, it->second, kind, now_ms);
  if (kind == OutlierKind::kConsecutive5xx) stats_.ejections_consecutive_5xx.inc();
}

void OutlierDetector::countDetected(OutlierKind kind) {
  switch (kind) {
    case OutlierKind::kConsecutive5xx:
      stats_.ejections_detected_consecutive_5xx.inc();
      break;
    case OutlierKind::kConsecutiveGatewayFailure:
      stats_.ejections_detected_consecutive_gateway_failure.inc();
      break;
    case OutlierKind::kConsecutiveLocalOriginFailure:
      stats_.ejections_detected_consecutive_local_origin_failure.inc();
      break;
    case OutlierKind::kSuccessRate:
      stats_.ejections_detected_success_rate.inc();
      break;
    case OutlierKind::kSuccessRateLocalOrigin:
      stats_.ejections_detected_local_origin_success_rate.inc();
      break;
    case OutlierKind::kFailurePercentage:
      stats_.ejections_detected_failure_percentage.inc();
      break;
    case OutlierKind::kFailurePercentageLocalOrigin:
      stats_.ejections_detected_local_origin_failure_percentage.inc();
      break;
  }
}

void OutlierDetector::eject(const std::string& address, HostState& host, OutlierKind kind,
                            uint64_t now_ms) {
  const config::OutlierDetectionConfig& c = config();
  if (!mayEject(ejected_, hosts_.size(), c.max_ejection_percent, c.always_eject_one_host)) {
    stats_.ejections_overflow.inc();
    return;
  }
  if (kind == OutlierKind::kConsecutive5xx || kind == OutlierKind::kSuccessRate) {
    stats_.ejections_total.inc();
  }
  uint32_t enforcing = 0;
  switch (kind) {
    case OutlierKind::kConsecutive5xx:
      enforcing = c.enforcing_consecutive_5xx;
      break;
    case OutlierKind::kConsecutiveGatewayFailure:
      enforcing = c.enforcing_consecutive_gateway_failure;
      break;
    case OutlierKind::kConsecutiveLocalOriginFailure:
      enforcing = c.enforcing_consecutive_local_origin_failure;
      break;
    case OutlierKind::kSuccessRate:
      enforcing = c.enforcing_success_rate;
      break;
    case OutlierKind::kSuccessRateLocalOrigin:
      enforcing = c.enforcing_local_origin_success_rate;
      break;
    case OutlierKind::kFailurePercentage:
      enforcing = c.enforcing_failure_percentage;
      break;
    case OutlierKind::kFailurePercentageLocalOrigin:
      enforcing = c.enforcing_failure_percentage_local_origin;
      break;
  }
  // Envoy's featureEnabled(key, percent): a draw below the percentage.
  if (enforcing < 100 && (enforcing == 0 || random_() % 100 >= enforcing)) return;
  ++ejected_;
  stats_.ejections_active.inc();
  stats_.ejections_enforced_total.inc();
  switch (kind) {
    case OutlierKind::kConsecutive5xx:
      stats_.ejections_enforced_consecutive_5xx.inc();
      break;
    case OutlierKind::kConsecutiveGatewayFailure:
      stats_.ejections_enforced_consecutive_gateway_failure.inc();
      break;
    case OutlierKind::kConsecutiveLocalOriginFailure:
      stats_.ejections_enforced_consecutive_local_origin_failure.inc();
      break;
    case OutlierKind::kSuccessRate:
      stats_.ejections_enforced_success_rate.inc();
      break;
    case OutlierKind::kSuccessRateLocalOrigin:
      stats_.ejections_enforced_local_origin_success_rate.inc();
      break;
    case OutlierKind::kFailurePercentage:
      stats_.ejections_enforced_failure_percentage.inc();
      break;
    case OutlierKind::kFailurePercentageLocalOrigin:
      stats_.ejections_enforced_local_origin_failure_percentage.inc();
      break;
  }
  host.ejected = true;
  host.ejected_at_ms = now_ms;
  const auto jitter_max = static_cast<uint64_t>(c.max_ejection_time_jitter.count());
  host.jitter_ms = jitter_max == 0 ? 0 : random_() % (jitter_max + 1);
  // Envoy's back-off grows while base * backoff < max + base: it stops one
  // step past the cap, so a host must stay healthy that much longer before
  // its ejections get shorter again.
  const auto base = static_cast<uint64_t>(c.base_ejection_time.count());
  const auto max = static_cast<uint64_t>(c.max_ejection_time.count());
  if (uint64_t{host.backoff} * base < max + base) ++host.backoff;
  notify_(address, true);
}

void OutlierDetector::onInterval(uint64_t now_ms,
                                 const std::map<std::string, RequestCounts>& counts) {
  const config::OutlierDetectionConfig& c = config();
  for (auto& [address, h] : hosts_) h.success_rate = h.local_origin_success_rate = -1;
  for (auto& [address, h] : hosts_) {
    if (!h.ejected) continue;
    if (ejectionMs(c, h.backoff) + h.jitter_ms <= now_ms - h.ejected_at_ms) {
      uneject(address, h, now_ms);
    }
  }
  judgeRates(false, counts, now_ms);
  judgeRates(true, counts, now_ms);
  const auto interval = static_cast<uint64_t>(c.interval.count());
  for (auto& [address, h] : hosts_) {
    if (!h.ejected && h.unejected && now_ms - h.unejected_at_ms >= interval && h.backoff > 0) {
      --h.backoff;
    }
  }
}

void OutlierDetector::uneject(const std::string& address, HostState& h, uint64_t now_ms) {
  h.ejected = false;
  h.unejected = true;
  h.unejected_at_ms = now_ms;
  --ejected_;
  stats_.ejections_active.dec();
  // The workers start their counts again (Envoy's unejectHost).
  notify_(address, false);
}

void OutlierDetector::onHealthCheckPassed(const std::string& address, uint64_t now_ms) {
  if (!config().successful_active_health_check_uneject_host) return;
  auto it = hosts_.find(address);
  if (it != hosts_.end() && it->second.ejected) uneject(address, it->second, now_ms);
}

void OutlierDetector::judgeRates(bool local_origin,
                                 const std::map<std::string, RequestCounts>& counts,
                                 uint64_t now_ms) {
  const config::OutlierDetectionConfig& c = config();
  average_[local_origin] = threshold_[local_origin] = -1;
  if (hosts_.size() < c.success_rate_minimum_hosts &&
      hosts_.size() < c.failure_percentage_minimum_hosts) {
    return;
  }
  struct Rated {
    const std::string* address;
    HostState* host;
    double rate;  // Successes, percent.
  };
  std::vector<Rated> by_rate;
  std::vector<Rated> by_failures;
  for (auto& [address, h] : hosts_) {
    if (h.ejected) continue;
    auto it = counts.find(address);
    if (it == counts.end()) continue;
    const uint64_t total = local_origin ? it->second.local_total : it->second.total;
    const uint64_t success = local_origin ? it->second.local_success : it->second.success;
    if (total == 0) continue;
    const double rate = static_cast<double>(success) * 100.0 / static_cast<double>(total);
    if (total >= std::min(c.success_rate_request_volume, c.failure_percentage_request_volume)) {
      (local_origin ? h.local_origin_success_rate : h.success_rate) = rate;
    }
    if (total >= c.success_rate_request_volume) by_rate.push_back({&address, &h, rate});
    if (total >= c.failure_percentage_request_volume) by_failures.push_back({&address, &h, rate});
  }
  if (!by_rate.empty() && by_rate.size() >= c.success_rate_minimum_hosts) {
    std::vector<double> rates;
    for (const Rated& r : by_rate) rates.push_back(r.rate);
    double mean = 0;
    const double threshold =
        successRateThreshold(rates, c.success_rate_stdev_factor / 1000.0, mean);
    average_[local_origin] = mean;
    threshold_[local_origin] = threshold;
    const OutlierKind kind =
        local_origin ? OutlierKind::kSuccessRateLocalOrigin : OutlierKind::kSuccessRate;
    for (const Rated& r : by_rate) {
      if (r.rate >= threshold) continue;
      stats_.ejections_success_rate.inc();
      countDetected(kind);
      eject(*r.address, *r.host, kind, now_ms);
    }
  }
  if (!by_failures.empty() && by_failures.size() >= c.failure_percentage_minimum_hosts) {
    const OutlierKind kind =
        local_origin ? OutlierKind::kFailurePercentageLocalOrigin : OutlierKind::kFailurePercentage;
    for (const Rated& r : by_failures) {
      if (100.0 - r.rate < c.failure_percentage_threshold) continue;
      countDetected(kind);
      // Envoy would eject it a second time when the success rate already
      // did; once is enough.
      if (!r.host->ejected) eject(*r.address, *r.host, kind, now_ms);
    }
  }
}

// ---- OutlierDetectors

OutlierDetectors::OutlierDetectors(Worker& main, EachWorker each_worker)
    : main_(main), each_worker_(std::move(each_worker)) {}

OutlierDetectors::~OutlierDetectors() { clear(); }

std::vector<std::string> OutlierDetectors::endpointAddresses(const config::ClusterConfig& cluster) {
  std::vector<std::string> out;
  for (const auto& ep : cluster.endpoints) {
    sockaddr_storage ss;
    if (parseIpAddress(ep.address.address, ep.address.port, ss)) {
      out.push_back(formatAddress(reinterpret_cast<const sockaddr*>(&ss)));
    }
  }
  return out;
}

void OutlierDetectors::update(const config::ClusterMap& clusters) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    const auto* cfg = clusters.get(it->first);
    if (cfg == nullptr || !(*cfg)->outlier_detection) {
      stop(it->second);
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [name, cfg] : clusters) {
    if (!cfg->outlier_detection) continue;
    auto it = entries_.find(name);
    if (it == entries_.end()) {
      start(name, cfg);
      continue;
    }
    const config::ClusterConfig& now = *it->second.detector->cluster();
    if (&now == cfg.get()) continue;
    // The same test as the workers' ClusterManager::update: a config that
    // differs only in endpoints keeps its hosts (and their ejections);
    // anything else is a new cluster, with fresh hosts.
    if (now.definition_hash == cfg->definition_hash && now.type == cfg->type &&
        cfg->type != config::ClusterConfig::Type::kStrictDns) {
      it->second.detector->setCluster(cfg);
      it->second.detector->setHosts(endpointAddresses(*cfg));
      continue;
    }
    stop(it->second);
    entries_.erase(it);
    start(name, cfg);
  }
}

void OutlierDetectors::start(const std::string& name,
                             std::shared_ptr<const config::ClusterConfig> cluster) {
  Entry& e = entries_[name];
  auto notify = [this, name](const std::string& address, bool ejected) {
    each_worker_([name, address, ejected](Worker& w) {
      w.clusterManager().setEjected(name, address, ejected);
    });
  };
  Worker* main = &main_;
  e.detector = std::make_unique<OutlierDetector>(cluster, main_.stats(), std::move(notify),
                                                 [main] { return main->random(); });
  if (cluster->type != config::ClusterConfig::Type::kStrictDns) {
    e.detector->setHosts(endpointAddresses(*cluster));
  }
  e.owner = this;
  e.name = name;
  e.generation = ++generation_;
  e.timer = new uv_timer_t;
  uv_timer_init(main_.loop(), e.timer);
  e.timer->data = &e;  // A std::map node: it stays where it is.
  const auto ms = static_cast<uint64_t>(cluster->outlier_detection->interval.count());
  uv_timer_start(
      e.timer,
      [](uv_timer_t* t) {
        auto* entry = static_cast<Entry*>(t->data);
        entry->owner->onTimer(*entry);
      },
      ms, ms);
}

void OutlierDetectors::onTimer(Entry& e) {
  if (e.pending > 0) {
    // A worker did not answer within an interval (it is stopping, or stuck):
    // its late answer is dropped, and this interval unejects without
    // judging rates over part of the requests.
    e.generation = ++generation_;
    e.pending = 0;
    e.detector->onInterval(uv_now(main_.loop()), {});
  }
  e.counts.clear();
  const std::string name = e.name;
  const uint64_t generation = e.generation;
  e.pending = each_worker_([this, name, generation](Worker& w) {
    HostRequestCounts counts = w.clusterManager().takeRequestCounts(name);
    main_.post([this, name, generation, counts = std::move(counts)] {
      onCounts(name, generation, counts);
    });
  });
  if (e.pending == 0) e.detector->onInterval(uv_now(main_.loop()), e.counts);
}

void OutlierDetectors::onCounts(const std::string& name, uint64_t generation,
                                const HostRequestCounts& counts) {
  auto it = entries_.find(name);
  if (it == entries_.end() || it->second.generation != generation || it->second.pending == 0) {
    return;  // For a detector that was stopped or replaced since.
  }
  Entry& e = it->second;
  for (const auto& [address, c] : counts) {
    RequestCounts& sum = e.counts[address];
    sum.total += c.total;
    sum.success += c.success;
    sum.local_total += c.local_total;
    sum.local_success += c.local_success;
  }
  if (--e.pending == 0) e.detector->onInterval(uv_now(main_.loop()), e.counts);
}

void OutlierDetectors::stop(Entry& entry) {
  if (entry.timer != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(entry.timer),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    entry.timer = nullptr;
  }
  entry.detector.reset();
}

void OutlierDetectors::setHosts(const std::string& cluster,
                                const std::vector<std::string>& addresses) {
  auto it = entries_.find(cluster);
  if (it != entries_.end()) it->second.detector->setHosts(addresses);
}

void OutlierDetectors::onHealthCheckPassed(const std::string& cluster, const std::string& address) {
  auto it = entries_.find(cluster);
  if (it != entries_.end()) it->second.detector->onHealthCheckPassed(address, uv_now(main_.loop()));
}

const OutlierDetector* OutlierDetectors::find(const std::string& cluster) const {
  auto it = entries_.find(cluster);
  return it == entries_.end() ? nullptr : it->second.detector.get();
}

bool OutlierDetectors::ejected(const std::string& cluster, const std::string& address) const {
  auto it = entries_.find(cluster);
  return it != entries_.end() && it->second.detector->ejected(address);
}

void OutlierDetectors::clear() {
  for (auto& [name, e] : entries_) stop(e);
  entries_.clear();
}

void OutlierDetectors::report(const std::string& cluster, const std::string& address,
                              OutlierKind kind) {
  main_.post([this, cluster, address, kind] {
    auto it = entries_.find(cluster);
    if (it == entries_.end()) return;
    it->second.detector->onReport(address, kind, uv_now(main_.loop()));
  });
}

}  // namespace skiff::upstream
