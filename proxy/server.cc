#include "proxy/server.h"

#include <netdb.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include "proxy/access_log/log_file.h"
#include "proxy/common/health_check_state.h"
#include "proxy/common/image_pages.h"
#include "proxy/common/json.h"
#include "proxy/common/log.h"
#include "proxy/net/listener.h"
#include "proxy/upstream/cluster_manager.h"
#include "xds/bootstrap_loader.h"
#include "xds/translator.h"

namespace skiff {

namespace {
constexpr uint32_t kMainLoopIndex = 0xffffffff;

}  // namespace

// A STRICT_DNS cluster's resolver state on the main loop.
struct Server::DnsCluster {
  Server* server;
  std::shared_ptr<const config::ClusterConfig> cluster;
  uv_timer_t timer;
  size_t outstanding = 0;               // Lookups of the current round still running.
  std::vector<sockaddr_storage> round;  // Addresses found in the current round.
  std::vector<sockaddr_storage> current;
  bool initial_done = false;
  // From CDS: DynamicConfig is told when its first round ends (the cluster
  // warms until then); the workers do not wait for it.
  bool dynamic = false;
  // Its version is in the snapshot (it posts its hosts). False while a CDS
  // version warms: the version before it, if any, keeps its hosts.
  bool active = true;
  bool retired = false;  // Replaced or removed; freed once its timer and lookups end.
  bool timer_closed = false;
};

Server::Server(ServerOptions options)
    : options_(std::move(options)), started_(std::chrono::system_clock::now()) {}

Server::~Server() = default;

int Server::run() {
  auto bootstrap = xds::loadBootstrapFile(options_.config_path);
  if (!bootstrap) {
    std::cerr << "error initializing configuration '" << options_.config_path
              << "': " << bootstrap.status().message() << "\n";
    return 1;
  }
  auto snapshot = xds::translateBootstrap(*bootstrap);
  if (!snapshot) {
    std::cerr << "error initializing configuration '" << options_.config_path << "':\n"
              << snapshot.status().message() << "\n";
    return 1;
  }
  if (options_.validate_only) {
    std::cout << "configuration '" << options_.config_path << "' OK\n";
    return 0;
  }
  snapshot_ = *snapshot;
  std::signal(SIGPIPE, SIG_IGN);

  // The main loop's own upstreams (the ADS stream) use the static clusters.
  auto main_snapshot = std::make_shared<config::Snapshot>();
  main_snapshot->clusters = snapshot_->clusters;
  main_ = std::make_unique<Worker>(kMainLoopIndex, std::move(main_snapshot));
  uv_loop_t* loop = main_->loop();
  // Outlier detection: workers report to these detectors, on this loop,
  // which tell every worker of an ejection.
  outliers_ =
      std::make_unique<upstream::OutlierDetectors>(*main_, [this](std::function<void(Worker&)> fn) {
        for (auto& w : workers_) {
          Worker* worker = w.get();
          worker->post([worker, fn] { fn(*worker); });
        }
        return workers_.size();
      });
  outliers_->update(snapshot_->clusters);
  upstream::OutlierReports::set(outliers_.get());
  // Active health checks: on this loop too, with their own connections.
  health_checks_ = std::make_unique<upstream::HealthCheckers>(
      *main_,
      [this](std::function<void(Worker&)> fn) {
        for (auto& w : workers_) {
          Worker* worker = w.get();
          worker->post([worker, fn] { fn(*worker); });
        }
        return workers_.size();
      },
      // Envoy's "the cluster has seen traffic": it made an upstream
      // connection (asked each check only until it has).
      [this](const std::string& cluster) {
        const std::string name = "cluster." + cluster + ".upstream_cx_total";
        for (auto& w : workers_) {
          if (w->stats().counter(name).value() > 0) return true;
        }
        return false;
      },
      [this](const std::string& cluster, const std::string& address) {
        outliers_->onHealthCheckPassed(cluster, address);
      });
  // Initialization waits for each checked cluster's first round (Envoy's).
  health_checks_->setOnFirstRound([this](const std::string&) {
    if (canStartWorkers()) startWorkers();
  });
  health_checks_->update(snapshot_->clusters);
  upstream::HealthCheckReports::set(health_checks_.get());

  std::string error;
  if (!prepareListeners(error)) {
    std::cerr << "error initializing listeners: " << error << "\n";
    teardownMain();
    return 1;
  }

  uv_signal_init(loop, &sigterm_);
  uv_signal_init(loop, &sigint_);
  sigterm_.data = sigint_.data = this;
  auto on_signal = [](uv_signal_t* s, int signum) {
    auto* self = static_cast<Server*>(s->data);
    SKIFF_LOG(kInfo,
              std::string("caught ") + (signum == SIGTERM ? "SIGTERM" : "SIGINT") + ": draining");
    self->beginDrain();
  };
  uv_signal_start(&sigterm_, on_signal, SIGTERM);
  uv_signal_start(&sigint_, on_signal, SIGINT);
  // SIGUSR1 reopens access log files (after a rotation), as in Envoy.
  uv_signal_init(loop, &sigusr1_);
  uv_signal_start(
      &sigusr1_, [](uv_signal_t*, int) { access_log::LogFile::reopenAll(); }, SIGUSR1);

  uv_async_init(loop, &worker_event_, [](uv_async_t* a) {
    auto* self = static_cast<Server*>(a->data);
    uint32_t n = static_cast<uint32_t>(self->workers_.size());
    if (!self->workers_listening_ && !self->draining_ && n > 0 &&
        self->workers_ready_.load() == n) {
      if (self->worker_failed_.load()) {
        SKIFF_LOG(kCritical, "a worker failed to listen: " + self->worker_error_);
        self->exit_code_ = 1;
        self->beginDrain();
      } else {
        self->workers_listening_ = true;
        for (int fd : self->port_reservations_) ::close(fd);
        self->port_reservations_.clear();
        SKIFF_LOG(kInfo, "all " + std::to_string(n) + " workers listening");
        self->maybeGoLive();
      }
    }
    if (self->draining_ && n > 0 && self->workers_done_.load() == n) {
      if (self->admin_) self->admin_->close();
      uv_stop(self->main_->loop());
    }
  });
  worker_event_.data = this;
  uv_timer_init(loop, &release_pages_);
  uv_unref(reinterpret_cast<uv_handle_t*>(&release_pages_));
  release_pages_.data = this;
  handles_open_ = true;

  if (snapshot_->admin.enabled) {
    admin_ = std::make_unique<AdminServer>(*main_, *this);
    auto addr = admin_->listen(snapshot_->admin.address.address, snapshot_->admin.address.port);
    if (!addr) {
      std::cerr << "error starting admin: " << addr.status().message() << "\n";
      teardownMain();
      return 1;
    }
    SKIFF_LOG(kInfo, "admin address: " + *addr);
    if (!options_.admin_address_path.empty()) {
      std::ofstream f(options_.admin_address_path);
      f << *addr;
    }
  }

  if (snapshot_->ads.enabled) startXds(bootstrap->node());
  startDns();
  dns_started_ = true;
  if (canStartWorkers()) startWorkers();
  uv_run(loop, UV_RUN_DEFAULT);
  for (auto& w : workers_) w->join();
  teardownMain();
  // Every worker handed its access log lines over as it stopped.
  access_log::LogFile::stopWriter();
  SKIFF_LOG(kInfo, "exiting");
  return exit_code_;
}

// Closes the main loop's own handles, then lets it finish every close, so the
// process ends with nothing left behind (LeakSanitizer checks).
void Server::teardownMain() {
  draining_ = true;  // DNS answers still in flight change nothing now.
  if (admin_) admin_->close();
  ads_.reset();
  if (dynamic_) dynamic_->stop();
  if (handles_open_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&sigterm_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&sigint_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&sigusr1_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&worker_event_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&release_pages_), nullptr);
    handles_open_ = false;
  }
  for (auto& d : dns_) uv_close(reinterpret_cast<uv_handle_t*>(&d->timer), nullptr);
  for (int fd : port_reservations_) ::close(fd);
  port_reservations_.clear();
  upstream::OutlierReports::set(nullptr);
  if (outliers_) outliers_->clear();  // Its timers are on the main loop.
  upstream::HealthCheckReports::set(nullptr);
  if (health_checks_) health_checks_->clear();  // Its timers and connections too.
  main_->shutdown();
}

bool Server::prepareListeners(std::string& error) {
  // Port 0: pick the port here, once, so that every worker's SO_REUSEPORT
  // socket binds the same one. The picking socket stays bound (not
  // listening) until the workers listen, so the port cannot be taken.
  auto next = std::make_shared<config::Snapshot>(*snapshot_);
  for (const auto& [name, l] : snapshot_->listeners) {
    if (l->address.port != 0 || !l->bind_to_port) continue;
    Result<int> fd = bindTcpSocket(l->address.address, 0, /*reuse_port=*/true);
    if (!fd) {
      error = fd.status().message();
      return false;
    }
    port_reservations_.push_back(*fd);
    auto copy = std::make_shared<config::ListenerConfig>(*l);
    copy->address.port = boundPort(*fd);
    next->listeners.set(name, std::move(copy));
  }
  snapshot_ = next;
  return true;
}

void Server::startDns() {
  for (const auto& [name, cluster] : snapshot_->clusters) {
    if (cluster->type != config::ClusterConfig::Type::kStrictDns) continue;
    auto dns = std::make_unique<DnsCluster>();
    dns->server = this;
    dns->cluster = cluster;
    uv_timer_init(main_->loop(), &dns->timer);
    dns->timer.data = dns.get();
    dns_.push_back(std::move(dns));
  }
  // Every cluster counts before any lookup starts: a round can finish at
  // once (no endpoints), and the workers must wait for all of them.
  dns_pending_ = dns_.size();
  for (auto& d : dns_) resolve(*d);
}

void Server::resolve(DnsCluster& dns) {
  struct Lookup {
    uv_getaddrinfo_t req;
    DnsCluster* dns;
    uint32_t port;
  };
  dns.round.clear();
  dns.outstanding = dns.cluster->endpoints.size();
  for (const auto& ep : dns.cluster->endpoints) {
    auto* lookup = new Lookup{{}, &dns, ep.address.port};
    lookup->req.data = lookup;
    addrinfo hints{};
    // V4_ONLY asks for IPv4; AUTO asks for both and keeps IPv6 when there
    // is any (Envoy: "IPv6 first, then IPv4").
    hints.ai_family =
        dns.cluster->dns_lookup_family == config::ClusterConfig::DnsLookupFamily::kV4Only
            ? AF_INET
            : AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = uv_getaddrinfo(
        main_->loop(), &lookup->req,
        [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
          auto* lookup = static_cast<Lookup*>(req->data);
          DnsCluster& d = *lookup->dns;
          if (status == 0) {
            bool any_v6 = false;
            for (addrinfo* a = res; a; a = a->ai_next) any_v6 |= a->ai_family == AF_INET6;
            for (addrinfo* a = res; a; a = a->ai_next) {
              if (any_v6 && a->ai_family != AF_INET6) continue;
              sockaddr_storage ss{};
              std::memcpy(&ss, a->ai_addr, a->ai_addrlen);
              uint16_t port = htons(static_cast<uint16_t>(lookup->port));
              if (a->ai_family == AF_INET6) {
                reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = port;
              } else {
                reinterpret_cast<sockaddr_in*>(&ss)->sin_port = port;
              }
              d.round.push_back(ss);
            }
          } else {
            SKIFF_LOG(kWarn, "dns: cluster " + d.cluster->name + ": " + uv_strerror(status));
          }
          uv_freeaddrinfo(res);
          delete lookup;
          if (--d.outstanding != 0) return;
          if (d.retired) {
            if (d.timer_closed) delete &d;
            return;
          }
          d.server->finishDnsRound(d);
        },
        ep.address.address.c_str(), nullptr, &hints);
    if (rc != 0) {
      SKIFF_LOG(kWarn, "dns: cluster " + dns.cluster->name + ": " + uv_strerror(rc));
      delete lookup;
      --dns.outstanding;
    }
  }
  // No lookup started (no endpoints, or every start failed): the round ends
  // here, or the cluster would hold back the workers forever.
  if (dns.outstanding == 0 && !dns.retired) finishDnsRound(dns);
}

void Server::finishDnsRound(DnsCluster& d) {
  if (draining_) return;  // Its timer is closed or closing.
  // Envoy keeps the last good host set when a resolution fails.
  if (!d.round.empty() || !d.initial_done) d.current = d.round;
  if (d.active) postHosts(d);
  uv_timer_start(
      &d.timer,
      [](uv_timer_t* t) {
        auto* dc = static_cast<DnsCluster*>(t->data);
        dc->server->resolve(*dc);
      },
      static_cast<uint64_t>(d.cluster->dns_refresh_rate.count()), 0);
  if (d.initial_done) return;
  d.initial_done = true;
  if (!d.dynamic) {
    if (--dns_pending_ == 0 && canStartWorkers()) startWorkers();
    return;
  }
  // Envoy: a STRICT_DNS cluster is initialized after its first resolution,
  // failed or not. This may publish the snapshot that activates d.
  if (dynamic_) dynamic_->onClusterInitialized(d.cluster->name, d.cluster);
}

void Server::retireDns(size_t i) {
  DnsCluster* old = dns_[i].release();
  dns_.erase(dns_.begin() + static_cast<std::ptrdiff_t>(i));
  old->retired = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&old->timer), [](uv_handle_t* h) {
    auto* d = static_cast<DnsCluster*>(h->data);
    d->timer_closed = true;
    if (d->outstanding == 0) delete d;
  });
}

// CDS: a new or changed STRICT_DNS cluster resolves while it warms, beside
// the version that serves; its hosts go to the workers once it is
// activated (updateDnsClusters).
void Server::warmCluster(const std::string& name,
                         std::shared_ptr<const config::ClusterConfig> cluster) {
  for (size_t i = 0; i < dns_.size();) {
    if (dns_[i]->cluster->name == name && !dns_[i]->active) {
      retireDns(i);
    } else {
      ++i;
    }
  }
  if (!cluster || draining_) return;
  auto dns = std::make_unique<DnsCluster>();
  dns->server = this;
  dns->cluster = std::move(cluster);
  dns->dynamic = true;
  dns->active = false;
  uv_timer_init(main_->loop(), &dns->timer);
  dns->timer.data = dns.get();
  dns_.push_back(std::move(dns));
  resolve(*dns_.back());
}

// A snapshot activated or removed STRICT_DNS clusters: a version that
// finished warming becomes active (its later rounds post their hosts); the
// one it replaced, or a removed one, stops.
Server::ActivatedHosts Server::updateDnsClusters(const config::Snapshot& snapshot) {
  ActivatedHosts activated;
  for (const std::string& name : snapshot.changed_clusters) {
    const auto* cfg = snapshot.clusters.get(name);
    for (size_t i = 0; i < dns_.size();) {
      DnsCluster& d = *dns_[i];
      if (d.cluster->name != name) {
        ++i;
      } else if (cfg != nullptr && d.cluster == *cfg) {
        if (!d.active) {
          d.active = true;
          main_->clusterManager().setHosts(name, d.current);
          setOutlierHosts(name, d.current);
          activated.emplace_back(name, d.current);
        }
        ++i;
      } else if (d.active) {
        retireDns(i);
      } else {
        ++i;  // Still warming: DynamicConfig stops it (warmCluster).
      }
    }
  }
  return activated;
}

// Hands a cluster's current host list to every worker (a copy each: a worker
// owns what it is posted).
void Server::postHosts(const DnsCluster& d) {
  main_->clusterManager().setHosts(d.cluster->name, d.current);
  setOutlierHosts(d.cluster->name, d.current);
  for (auto& w : workers_) {
    Worker* worker = w.get();
    worker->post([worker, name = d.cluster->name, addrs = d.current] {
      worker->clusterManager().setHosts(name, addrs);
    });
  }
}

// As in Envoy, no listener opens before initialization ends: the static
// STRICT_DNS clusters resolved, with xDS the first configuration in
// (DynamicConfig: clusters, then listeners and routes, or
// initial_fetch_timeout), and every cluster with active health checks had
// each of its hosts checked once (each check ends by its timeout).
bool Server::canStartWorkers() const {
  if (!dns_started_ || dns_pending_ != 0 || (dynamic_ && !dynamic_->initialized())) return false;
  for (const auto& [name, cluster] : snapshot_->clusters) {
    if (cluster->health_check && !health_checks_->firstRoundDone(name)) return false;
  }
  return true;
}

void Server::startWorkers() {
  if (draining_ || !workers_.empty()) return;
  uint32_t n = options_.concurrency;
  if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
  for (uint32_t i = 0; i < n; ++i) {
    workers_.push_back(std::make_unique<Worker>(i, snapshot_));
  }
  served_ = snapshot_;
  // Hosts resolved before the workers existed.
  for (auto& d : dns_) {
    if (d->active) postHosts(*d);
  }
  for (auto& w : workers_) {
    w->start(
        [this](const std::string& error) {
          if (!error.empty()) {
            worker_error_ = error;
            worker_failed_.store(true);
          }
          workers_ready_.fetch_add(1);
          uv_async_send(&worker_event_);
        },
        [this] {
          workers_done_.fetch_add(1);
          uv_async_send(&worker_event_);
        });
  }
}

void Server::beginDrain() {
  if (draining_) return;
  draining_ = true;
  if (ads_) ads_->stop();  // The configuration stays as it is while draining.
  uint64_t ms = uint64_t{options_.drain_time_s} * 1000;
  for (auto& d : dns_) uv_timer_stop(&d->timer);
  if (workers_.empty()) {
    if (admin_) admin_->close();
    uv_stop(main_->loop());
    return;
  }
  for (auto& w : workers_) {
    Worker* worker = w.get();
    worker->post([worker, ms] { worker->drain(ms); });
  }
}

void Server::quit() {
  SKIFF_LOG(kInfo, "/quitquitquit: draining");
  beginDrain();
}

// A server that fails health checks (/healthcheck/fail) is DRAINING to
// Envoy's /ready, server_info and server.state, though it still serves.
void Server::drainListeners() {
  SKIFF_LOG(kInfo, "/drain_listeners: closing the listeners, draining their connections");
  for (auto& w : workers_) {
    Worker* worker = w.get();
    worker->post([worker] { worker->stopListeners(); });
  }
}

bool Server::ready() const { return live_ && !draining_ && !healthCheckFailed(); }

std::string Server::state() const {
  if (draining_) return "DRAINING";
  if (!live_) return "PRE_INITIALIZING";
  return healthCheckFailed() ? "DRAINING" : "LIVE";
}

void Server::collect(std::map<std::string, uint64_t>& counters,
                     std::map<std::string, int64_t>& gauges) {
  for (auto& w : workers_) w->stats().collect(counters, gauges);
  main_->stats().collect(counters, gauges);
  gauges["server.live"] = ready() ? 1 : 0;
  gauges["server.concurrency"] = static_cast<int64_t>(workers_.size());
  gauges["server.uptime"] =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now() - started_)
          .count();
  gauges["server.state"] = draining_ || (live_ && healthCheckFailed())
                               ? 1
                               : (live_ ? 0 : 2);  // Envoy: 0 LIVE, 1 DRAINING, 2 PRE_INIT.
}

std::string Server::statsText() {
  std::map<std::string, uint64_t> c;
  std::map<std::string, int64_t> g;
  collect(c, g);
  return stats::renderText(c, g);
}

std::string Server::statsJson() {
  std::map<std::string, uint64_t> c;
  std::map<std::string, int64_t> g;
  collect(c, g);
  std::map<std::string, std::string> all;
  for (auto& [n, v] : c) all[n] = std::to_string(v);
  for (auto& [n, v] : g) all[n] = std::to_string(v);
  std::string out = "{\"stats\":[";
  bool first = true;
  for (auto& [n, v] : all) {
    if (!first) out += ",";
    first = false;
    out += "{\"name\":" + jsonString(n) + ",\"value\":" + v + "}";
  }
  return out + "]}\n";
}

std::string Server::statsPrometheus() {
  std::map<std::string, uint64_t> c;
  std::map<std::string, int64_t> g;
  collect(c, g);
  return stats::renderPrometheus(c, g);
}

std::string Server::configDump() {
  const std::string& dump = snapshot_->config_dump_json;
  if (!dynamic_ || dump.size() < 2) return dump;
  // The bootstrap's dump ends with "]}": the dynamic sections go in the list.
  return dump.substr(0, dump.size() - 2) + "," + dynamic_->configDumpJson() + "]}";
}

// ---- xDS

void Server::startXds(const envoy::config::core::v3::Node& bootstrap_node) {
  xds::AdsClient::Options options;
  options.cluster_name = snapshot_->ads.cluster;
  options.delta = snapshot_->ads.delta;
  options.node = bootstrap_node;
  options.node.set_user_agent_name("skiff");
  options.node.set_user_agent_version("0.1.0");
  // Endpoints carry no priorities or overprovisioning factor here.
  options.node.add_client_features("envoy.lb.does_not_support_overprovisioning");
  dynamic_ = std::make_unique<xds::DynamicConfig>(*main_, snapshot_, main_->stats(), *this);
  ads_ = std::make_unique<xds::AdsClient>(*main_, std::move(options), *this);
  dynamic_->start();
  ads_->start();
}

std::string Server::onResources(const std::string& type_url,
                                const std::vector<xds::XdsResource>& updated,
                                const std::vector<std::string>& removed,
                                const std::string& version_info) {
  if (draining_) return "";
  std::string error = dynamic_->onResources(type_url, updated, removed, version_info);
  if (live_ && handles_open_) {
    // Decoding and translating this response mapped the parsing code again
    // (bench/xds_scale.py, 100 clusters: RSS 5.6 -> 13.1 MiB over the first
    // push, 7.7 MiB once released). Unmap it once the control plane has been
    // quiet for a while: the next update maps it again with page faults
    // (about 0.35 ms of main-thread CPU), so a burst pays for them once.
    constexpr uint64_t kQuietMs = 10000;
    uv_timer_start(
        &release_pages_,
        [](uv_timer_t* t) { static_cast<Server*>(t->data)->releaseStartupPages(); }, kQuietMs, 0);
  }
  return error;
}

void Server::onStreamStatus(bool connected) {
  if (connected) {
    SKIFF_LOG(kInfo, "xds: ADS stream connected");
  } else {
    SKIFF_LOG(kWarn, "xds: ADS stream lost; reconnecting");
  }
  dynamic_->onStreamStatus(connected);
}

void Server::subscribe(const std::string& type_url, const std::set<std::string>& names,
                       bool wildcard) {
  ads_->subscribe(type_url, names, wildcard);
}

void Server::updateSubscription(const std::string& type_url, const std::set<std::string>& added,
                                const std::set<std::string>& removed) {
  ads_->updateSubscription(type_url, added, removed);
}

void Server::holdReplies(const std::string& type_url, bool hold) {
  if (!ads_) return;
  if (hold) {
    ads_->pause(type_url);
  } else {
    ads_->resume(type_url);
  }
}

void Server::setOutlierHosts(const std::string& cluster,
                             const std::vector<sockaddr_storage>& addrs) {
  std::vector<std::string> addresses;
  for (const auto& ss : addrs)
    addresses.push_back(formatAddress(reinterpret_cast<const sockaddr*>(&ss)));
  outliers_->setHosts(cluster, addresses);
  health_checks_->setHosts(cluster, addrs);
}

void Server::publish(std::shared_ptr<const config::Snapshot> snapshot) {
  snapshot_ = std::move(snapshot);
  // Before the STRICT_DNS hosts below: a changed cluster's detector starts
  // afresh, as the workers' cluster does.
  outliers_->update(snapshot_->clusters);
  // The same for health checkers; before the snapshot goes to the workers,
  // so that the hosts they make find their health (HealthCheckedHosts).
  health_checks_->update(snapshot_->clusters);
  // A STRICT_DNS version that finished warming is set with its hosts in the
  // same task that applies the snapshot holding it: no request on a worker
  // sees it without hosts.
  auto hosts = std::make_shared<const ActivatedHosts>(draining_ ? ActivatedHosts()
                                                                : updateDnsClusters(*snapshot_));
  // Workers not started yet begin with this snapshot (and the hosts of
  // every active STRICT_DNS cluster); running ones swap, and the last to do
  // so tells the main loop, so that /listeners shows a listener once every
  // worker accepts on it (as Envoy's does).
  if (workers_.empty()) {
    served_ = snapshot_;
    return;
  }
  auto pending = std::make_shared<std::atomic<size_t>>(workers_.size());
  Worker* main = main_.get();
  for (auto& w : workers_) {
    Worker* worker = w.get();
    worker->post([this, main, worker, pending, hosts, next = snapshot_] {
      worker->applySnapshot(next);
      for (const auto& [name, addrs] : *hosts) worker->clusterManager().setHosts(name, addrs);
      if (pending->fetch_sub(1) != 1) return;
      main->post([this, next] {
        if (next->generation <= served_->generation) return;
        served_ = next;
        maybeGoLive();
      });
    });
  }
}

void Server::onInitialized() {
  SKIFF_LOG(kInfo, "xds: initial configuration complete");
  if (canStartWorkers()) startWorkers();
  maybeGoLive();
}

void Server::maybeGoLive() {
  if (live_ || draining_ || !workers_listening_) return;
  // The configuration the server was initialized with must be on every
  // worker, or a client told LIVE could find a listener not open yet.
  if (served_ && served_->generation < snapshot_->generation) return;
  if (dynamic_ && !dynamic_->initialized()) return;
  live_ = true;
  releaseStartupPages();
}

void Server::releaseStartupPages() {
  // Starting ran code that serving does not (config parsing, descriptor
  // building, the translator): unmap it, so that idle RSS is what serving
  // uses. bench/probe.sh mem: 9,636 -> 5,004 KiB (bench/results/probes.md).
  size_t advised = releaseReadOnlyImagePages();
  SKIFF_LOG(kDebug, "released the read-only pages of the configuration code (" +
                        std::to_string(advised >> 10) + " KiB of code and constants advised)");
}

std::string Server::listenersText(bool json) {
  std::string out = json ? "{\"listener_statuses\":[" : "";
  bool first = true;
  for (const auto& [name, l] : snapshot_->listeners) {
    // A listener shows once every worker accepts on it (as in Envoy), and
    // goes as soon as it is removed.
    if (served_) {
      const auto* served = served_->listeners.get(name);
      if (served == nullptr || (*served)->address.port != l->address.port ||
          (*served)->address.address != l->address.address) {
        continue;
      }
    }
    if (json) {
      if (!first) out += ",";
      out +=
          "{\"name\":" + jsonString(l->name) +
          ",\"local_address\":{\"socket_address\":{\"address\":" + jsonString(l->address.address) +
          ",\"port_value\":" + std::to_string(l->address.port) + "}}}";
    } else {
      out += l->name + "::" + l->address.address + ":" + std::to_string(l->address.port) + "\n";
    }
    first = false;
  }
  return json ? out + "]}\n" : out;
}

namespace {

// Envoy's /clusters numbers: {:g} for the cluster's (6 significant digits),
// the shortest exact form for a host's.
std::string formatG(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}
std::string formatShortest(double v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return ec == std::errc() ? std::string(buf, end) : formatG(v);
}

}  // namespace

std::string Server::clustersText() {
  std::string out;
  for (const auto& [name, c] : snapshot_->clusters) {
    out += name + "::observability_name::" + name + "\n";
    const upstream::OutlierDetector* detector = outliers_->find(name);
    if (detector) {
      out += name +
             "::outlier::success_rate_average::" + formatG(detector->successRateAverage(false)) +
             "\n";
      out += name + "::outlier::success_rate_ejection_threshold::" +
             formatG(detector->successRateEjectionThreshold(false)) + "\n";
      out += name + "::outlier::local_origin_success_rate_average::" +
             formatG(detector->successRateAverage(true)) + "\n";
      out += name + "::outlier::local_origin_success_rate_ejection_threshold::" +
             formatG(detector->successRateEjectionThreshold(true)) + "\n";
    }
    out +=
        name + "::default_priority::max_connections::" + std::to_string(c->max_connections) + "\n";
    out += name +
           "::default_priority::max_pending_requests::" + std::to_string(c->max_pending_requests) +
           "\n";
    out += name + "::default_priority::max_requests::" + std::to_string(c->max_requests) + "\n";
    std::vector<std::string> hosts;  // As they are shown; ejections go by formatAddress.
    using Endpoint = config::ClusterConfig::Endpoint;
    std::vector<const Endpoint*> endpoints;  // Each host's, for EDS and STATIC clusters.
    if (c->type == config::ClusterConfig::Type::kOriginalDst) {
      // Made by the workers as requests came (every worker's, once each).
      hosts = upstream::OriginalDstHosts::instance().list(name);
    } else if (c->type != config::ClusterConfig::Type::kStrictDns) {
      for (const auto& ep : c->endpoints) {
        hosts.push_back(ep.address.address + ":" + std::to_string(ep.address.port));
        endpoints.push_back(&ep);
      }
    } else {
      for (auto& d : dns_) {
        if (d->cluster != c) continue;  // Not a version still warming.
        for (auto& ss : d->current)
          hosts.push_back(formatAddress(reinterpret_cast<sockaddr*>(&ss)));
      }
    }
    const bool checked = c->health_check != nullptr;
    for (size_t i = 0; i < hosts.size(); ++i) {
      const std::string& h = hosts[i];
      const Endpoint* ep = i < endpoints.size() ? endpoints[i] : nullptr;
      using EdsHealth = Endpoint::EdsHealth;
      const EdsHealth eds = ep != nullptr ? ep->eds_health : EdsHealth::kHealthy;
      // Envoy's health flags, in Envoy's order: "healthy", or each one after a '/'.
      bool ejected = false;
      bool failed_hc = false;
      std::string rates;
      std::string key = h;  // Ejections and health checks go by formatAddress.
      if (detector || checked) {
        size_t colon = h.rfind(':');
        sockaddr_storage ss;
        if (colon != std::string::npos &&
            parseIpAddress(h.substr(0, colon),
                           static_cast<uint32_t>(std::strtoul(h.c_str() + colon + 1, nullptr, 10)),
                           ss)) {
          key = formatAddress(reinterpret_cast<const sockaddr*>(&ss));
        }
      }
      bool degraded_hc = false;
      if (checked) {
        failed_hc = health_checks_->failed(name, key);
        degraded_hc = health_checks_->degraded(name, key);
      }
      if (detector) {
        ejected = detector->ejected(key);
        rates = name + "::" + h +
                "::success_rate::" + formatShortest(detector->successRate(key, false)) + "\n" +
                name + "::" + h +
                "::local_origin_success_rate::" + formatShortest(detector->successRate(key, true)) +
                "\n";
      }
      std::string flags;
      if (failed_hc) flags += "/failed_active_hc";
      if (ejected) flags += "/failed_outlier_check";
      if (eds == EdsHealth::kFailed) flags += "/failed_eds_health";
      if (degraded_hc) flags += "/degraded_active_hc";
      if (eds == EdsHealth::kDegraded) flags += "/degraded_eds_health";
      if (eds == EdsHealth::kDraining) flags += "/eds_status_draining";
      out += name + "::" + h + "::health_flags::" + (flags.empty() ? "healthy" : flags) + "\n";
      out += name + "::" + h + "::weight::" + std::to_string(ep != nullptr ? ep->weight : 1) + "\n";
      out += name + "::" + h + "::priority::" + std::to_string(ep != nullptr ? ep->priority : 0) +
             "\n";
      out += rates;
    }
  }
  return out;
}

std::string Server::serverInfo() {
  auto uptime =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now() - started_)
          .count();
  return "{\"version\":\"skiff/0.1.0\",\"state\":\"" + state() + "\",\"uptime_current_epoch\":\"" +
         std::to_string(uptime) +
         "s\",\"command_line_options\":{\"concurrency\":" + std::to_string(workers_.size()) +
         ",\"config_path\":" + jsonString(options_.config_path) + ",\"drain_time\":\"" +
         std::to_string(options_.drain_time_s) + "s\"}}\n";
}

}  // namespace skiff
