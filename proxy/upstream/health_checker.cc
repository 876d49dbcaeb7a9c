#include "proxy/upstream/health_checker.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "proxy/common/log.h"
#include "proxy/http/http1/http1_codec.h"
#include "proxy/http/http2/http2_codec.h"
#include "proxy/net/connection.h"
#include "proxy/net/tls/tls_transport.h"
#include "proxy/upstream/cluster_manager.h"
#include "proxy/worker/worker.h"

namespace skiff::upstream {

// ---- The rules (pure)

HcTransition HostHealth::onSuccess(uint32_t healthy_threshold) {
  failures_ = 0;
  HcTransition transition = HcTransition::kUnchanged;
  if (failed_) {
    // Envoy: the first check of a host decides at once, which makes startup
    // faster.
    if (first_check_ || ++successes_ >= healthy_threshold) {
      failed_ = false;
      successes_ = 0;
      transition = HcTransition::kChanged;
    } else {
      transition = HcTransition::kChangePending;
    }
  }
  first_check_ = false;
  return transition;
}

HcTransition HostHealth::onFailure(HcFailure failure, uint32_t unhealthy_threshold) {
  successes_ = 0;
  HcTransition transition = HcTransition::kUnchanged;
  if (!failed_) {
    const bool counted = failure == HcFailure::kNetwork || failure == HcFailure::kNetworkTimeout ||
                         failure == HcFailure::kRetriable;
    if (!counted || ++failures_ >= unhealthy_threshold) {
      failed_ = true;
      failures_ = 0;
      transition = HcTransition::kChanged;
    } else {
      transition = HcTransition::kChangePending;
    }
  }
  first_check_ = false;
  return transition;
}

uint64_t healthCheckBaseMs(const config::HealthCheckConfig& c, bool traffic, bool passed,
                           HcTransition transition) {
  auto ms = [](std::chrono::milliseconds d) { return static_cast<uint64_t>(d.count()); };
  const bool pending = transition == HcTransition::kChangePending;
  if (!traffic) {
    return passed && !pending ? ms(c.no_traffic_healthy_interval) : ms(c.no_traffic_interval);
  }
  if (!passed) return pending ? ms(c.unhealthy_edge_interval) : ms(c.unhealthy_interval);
  return pending ? ms(c.healthy_edge_interval) : ms(c.interval);
}

uint64_t healthCheckJitteredMs(const config::HealthCheckConfig& c, uint64_t base_ms,
                               const std::function<uint64_t()>& random) {
  uint64_t out = base_ms;
  const uint64_t percent_mod = uint64_t{c.interval_jitter_percent} * base_ms / 100;
  if (percent_mod > 0) out += random() % percent_mod;
  const auto jitter = static_cast<uint64_t>(c.interval_jitter.count());
  if (jitter > 0) out += random() % jitter;
  return std::max<uint64_t>(out, 1);
}

bool statusInRanges(int status, const std::vector<std::pair<int64_t, int64_t>>& ranges) {
  for (const auto& [start, end] : ranges) {
    if (status >= start && status < end) return true;
  }
  return false;
}

bool tcpReceiveMatches(std::string_view data, const std::vector<std::string>& receive) {
  size_t at = 0;
  for (const std::string& block : receive) {
    const size_t found = data.find(block, at);
    if (found == std::string_view::npos) return false;
    at = found + block.size();
  }
  return true;
}

// ---- HealthCheckedHosts

HealthCheckedHosts& HealthCheckedHosts::instance() {
  static auto* hosts = new HealthCheckedHosts;
  return *hosts;
}

bool HealthCheckedHosts::failed(const std::string& cluster, const std::string& address) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = healthy_.find(cluster);
  return it == healthy_.end() || it->second.count(address) == 0;
}

void HealthCheckedHosts::set(const std::string& cluster, const std::string& address, bool failed) {
  std::lock_guard<std::mutex> lock(mu_);
  if (failed) {
    auto it = healthy_.find(cluster);
    if (it == healthy_.end()) return;
    it->second.erase(address);
    if (it->second.empty()) healthy_.erase(it);
  } else {
    healthy_[cluster].insert(address);
  }
}

bool HealthCheckedHosts::degraded(const std::string& cluster, const std::string& address) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = degraded_.find(cluster);
  return it != degraded_.end() && it->second.count(address) != 0;
}

void HealthCheckedHosts::setDegraded(const std::string& cluster, const std::string& address,
                                     bool degraded) {
  std::lock_guard<std::mutex> lock(mu_);
  if (degraded) {
    degraded_[cluster].insert(address);
    return;
  }
  auto it = degraded_.find(cluster);
  if (it == degraded_.end()) return;
  it->second.erase(address);
  if (it->second.empty()) degraded_.erase(it);
}

void HealthCheckedHosts::forgetCluster(const std::string& cluster) {
  std::lock_guard<std::mutex> lock(mu_);
  healthy_.erase(cluster);
  degraded_.erase(cluster);
}

namespace {
std::atomic<HealthCheckReports*> g_reports{nullptr};

// A one-shot timer on a loop, closed (and freed) with its owner.
class LoopTimer {
 public:
  LoopTimer(uv_loop_t* loop, std::function<void()> fn)
      : timer_(new uv_timer_t), fn_(std::move(fn)) {
    uv_timer_init(loop, timer_);
    timer_->data = this;
  }
  ~LoopTimer() {
    uv_close(reinterpret_cast<uv_handle_t*>(timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  }
  LoopTimer(const LoopTimer&) = delete;
  LoopTimer& operator=(const LoopTimer&) = delete;
  void start(uint64_t ms) {
    uv_timer_start(
        timer_, [](uv_timer_t* t) { static_cast<LoopTimer*>(t->data)->fn_(); }, ms, 0);
  }
  void stop() { uv_timer_stop(timer_); }

 private:
  uv_timer_t* timer_;
  std::function<void()> fn_;
};

}  // namespace

void HealthCheckReports::set(HealthCheckReports* reports) { g_reports.store(reports); }
HealthCheckReports* HealthCheckReports::get() { return g_reports.load(); }

// ---- HealthCheckClient: one connection of a session

class HealthCheckClient;

// One host's checks under its cluster's checker: the interval and timeout
// timers, the connection (kept between checks with reuse_connection), and
// the host's health.
class HealthCheckSession {
 public:
  // addr: where the checks go (the host's address, or its health check port).
  HealthCheckSession(HealthCheckers::Checker& checker, std::string address,
                     const sockaddr_storage& addr, bool failed);
  ~HealthCheckSession();
  HealthCheckSession(const HealthCheckSession&) = delete;
  HealthCheckSession& operator=(const HealthCheckSession&) = delete;

  bool failed() const { return health_.failed(); }
  bool degraded() const { return degraded_; }
  bool checkedOnce() const { return checked_once_; }
  bool checks(const sockaddr_storage& addr) const {
    return std::memcmp(&addr, &addr_, sizeof(addr)) == 0;
  }
  void start();
  // A worker saw x-envoy-immediate-health-check-fail from the host.
  void onPassiveFailure();
  // From the client: the check's outcome (once per check); degraded: a
  // passing HTTP check's response carried x-envoy-degraded.
  void onResult(bool passed, HcFailure failure, bool degraded = false);
  void onClientClosed(HealthCheckClient* client) {
    if (client_ == client) client_ = nullptr;
  }

 private:
  void onInterval();
  void onTimeout();
  // Applies a failure; true when the host's health changed.
  void fail(HcFailure failure);

  HealthCheckers::Checker& checker_;
  const std::string address_;
  const sockaddr_storage addr_;
  HostHealth health_;
  bool degraded_ = false;
  bool checked_once_ = false;
  HealthCheckClient* client_ = nullptr;  // Deletes itself (deferred) once closed.
  LoopTimer interval_timer_;
  LoopTimer timeout_timer_;
};

class HealthCheckClient : public Deletable,
                          public TcpConnection::Callbacks,
                          public http::CodecOwner,
                          public http::StreamDecoder,
                          public Schedulable {
 public:
  HealthCheckClient(HealthCheckSession& session, Worker& worker,
                    std::shared_ptr<const config::ClusterConfig> cluster)
      : session_(&session),
        worker_(worker),
        cluster_(std::move(cluster)),
        hc_(*cluster_->health_check),
        conn_(worker, *this, cluster_->per_connection_buffer_limit_bytes) {
    if (cluster_->tls) {
      conn_.enableTls(std::make_unique<tls::TlsTransport>(cluster_->tls, /*server=*/false));
    }
    if (hc_.kind == config::HealthCheckConfig::Kind::kHttp) buildRequest();
  }
  ~HealthCheckClient() override {
    if (dispatch_scheduled_) worker_.cancel(this);
  }

  void connect(const sockaddr* addr) {
    const auto* bind = cluster_->upstream_bind.get();
    int rc =
        conn_.connect(addr, static_cast<uint64_t>(cluster_->connect_timeout.count()),
                      bind != nullptr ? &bind->source : nullptr, bind != nullptr && bind->freebind);
    if (rc != 0) conn_.close(TcpConnection::CloseReason::kConnectFailure);
  }
  // Whether a new check may go on this connection.
  bool usable() const { return !conn_.closing() && (!codec_ || codec_->isReusable()); }
  // Starts one check: now, or once connected.
  void check() {
    in_check_ = true;
    if (up_) send();
  }
  // The session is going away, or gave up on the check: no more results.
  void detach() {
    session_ = nullptr;
    in_check_ = false;
    if (encoder_) {
      encoder_->stream().setCallbacks(nullptr);
      encoder_ = nullptr;
    }
    conn_.close();
  }

  // TcpConnection::Callbacks
  void onRead(BufferChain& data) override {
    if (!codec_) {
      // TCP: the bytes so far, until every block of receive is found.
      received_ += data.toString();
      data.drain(data.length());
      if (in_check_ && tcpReceiveMatches(received_, hc_.receive)) {
        received_.clear();
        finishTcp();
      }
      return;
    }
    http::CodecError error;
    bool ok = codec_->dispatch(data, error);
    http::Http2Codec::flushWaiting();
    if (!ok) conn_.closeAfterFlush(TcpConnection::CloseReason::kError);
  }
  void onEof() override { conn_.close(TcpConnection::CloseReason::kRemote); }
  void onClosed(TcpConnection::CloseReason reason) override {
    if (codec_) {
      // Resets a check's stream: a network failure (onResetStream).
      codec_->onTransportClosed(reason == TcpConnection::CloseReason::kLocal
                                    ? http::ResetReason::kLocalReset
                                    : http::ResetReason::kConnectionTermination);
    }
    if (reason == TcpConnection::CloseReason::kTlsError && conn_.tls() && session_) {
      const char* why = conn_.tls()->failureReason();
      SKIFF_LOG(kDebug, "health check TLS to " + conn_.peerAddress() +
                            " failed: " + (why ? why : "connection_error"));
    }
    finish(false, HcFailure::kNetwork);
    if (session_) session_->onClientClosed(this);
    worker_.deferDelete(std::unique_ptr<Deletable>(this));
  }
  void onConnected() override {
    if (conn_.tls()) return;  // Up once the handshake is done.
    becomeUp();
  }
  void onTlsHandshakeDone() override { becomeUp(); }
  void onAboveWriteBufferHighWatermark() override {
    if (codec_) codec_->onAboveWriteBufferHighWatermark();
  }
  void onBelowWriteBufferLowWatermark() override {
    if (codec_) codec_->onBelowWriteBufferLowWatermark();
  }

  // http::CodecOwner
  void write(BufferChain& data) override { conn_.write(data); }
  void scheduleDispatch() override {
    if (dispatch_scheduled_) return;
    dispatch_scheduled_ = true;
    worker_.schedule(this);
  }
  void readDisable(bool disable) override { conn_.readDisable(disable); }
  void closeAfterFlush() override { conn_.closeAfterFlush(); }
  void shutdownAfterFlush() override { conn_.shutdownAfterFlush(); }
  // Schedulable
  void onScheduled() override {
    dispatch_scheduled_ = false;
    if (conn_.closing() || !codec_) return;
    BufferChain none;
    onRead(none);
  }

  // http::StreamDecoder: the response is judged by its status once it ends
  // (its body is read and dropped).
  void decode1xxHeaders(HeaderMapPtr) override {}
  void decodeHeaders(HeaderMapPtr headers, bool end_stream) override {
    status_ = headers->status();
    // Envoy's HTTP checker: a passing check with this header degrades the host.
    degraded_ = headers->get("x-envoy-degraded").has_value();
    if (end_stream) finishHttp();
  }
  void decodeData(BufferChain& data, bool end_stream) override {
    data.drain(data.length());
    if (end_stream) finishHttp();
  }
  void decodeTrailers(HeaderMapPtr) override { finishHttp(); }
  // The check's stream was reset (by the peer, or by its connection closing).
  void onResetStream() {
    encoder_ = nullptr;
    finish(false, HcFailure::kNetwork);
    if (!hc_.reuse_connection) conn_.close();
  }

 private:
  // Envoy's request: GET path, :authority the configured host or the
  // cluster's name, user-agent Envoy/HC, then the configured headers.
  // The check's stream callbacks (apart: their watermark calls share names
  // with the connection's). A request without a body has nothing to pause.
  struct StreamWatch : http::StreamCallbacks {
    explicit StreamWatch(HealthCheckClient& c) : client(c) {}
    void onResetStream(http::ResetReason, std::string_view) override { client.onResetStream(); }
    void onAboveWriteBufferHighWatermark() override {}
    void onBelowWriteBufferLowWatermark() override {}
    HealthCheckClient& client;
  };

  void buildRequest() {
    request_.addView(":method", "GET");
    request_.addView(":scheme", cluster_->tls ? "https" : "http");
    request_.addView(":path", hc_.path);
    request_.addView(":authority", hc_.host.empty() ? cluster_->name : hc_.host);
    request_.addView("user-agent", "Envoy/HC");
    for (const auto& h : hc_.headers_to_add) {
      using Action = config::HealthCheckConfig::Header::Action;
      if (h.action == Action::kAddIfAbsent && request_.has(h.name)) continue;
      if (h.action == Action::kOverwrite) request_.remove(h.name);
      request_.addView(h.name, h.value);
    }
    for (const std::string& name : hc_.headers_to_remove) request_.remove(name);
  }
  void becomeUp() {
    up_ = true;
    if (hc_.kind == config::HealthCheckConfig::Kind::kHttp) {
      if (hc_.http2) {
        codec_ = std::make_unique<http::Http2ClientCodec>(*this, cluster_->http2);
      } else {
        codec_ = std::make_unique<http::Http1ClientCodec>(*this);
      }
    }
    if (in_check_) send();
  }
  void send() {
    if (hc_.kind == config::HealthCheckConfig::Kind::kTcp) {
      if (!hc_.send.empty()) {
        BufferChain bytes;
        bytes.appendCopy(hc_.send);  // A copy: the payload is the config's.
        conn_.write(bytes);
      }
      received_.clear();
      if (hc_.receive.empty()) finishTcp();  // Connect only.
      return;
    }
    if (!codec_->canStartStream()) {
      finish(false, HcFailure::kNetwork);
      conn_.close();
      return;
    }
    status_ = 0;
    degraded_ = false;
    encoder_ = &codec_->newStream(*this);
    encoder_->stream().setCallbacks(&stream_watch_);
    encoder_->encodeHeaders(request_, /*end_stream=*/true);
  }
  void finishTcp() {
    finish(true, HcFailure::kActive);
    if (!hc_.reuse_connection) conn_.close();
  }
  void finishHttp() {
    if (encoder_) {
      encoder_->stream().setCallbacks(nullptr);
      encoder_ = nullptr;
    }
    const bool close = !hc_.reuse_connection || !codec_->isReusable();
    if (statusInRanges(status_, hc_.expected_statuses)) {
      finish(true, HcFailure::kActive, degraded_);
    } else {
      finish(false, statusInRanges(status_, hc_.retriable_statuses) ? HcFailure::kRetriable
                                                                    : HcFailure::kActive);
    }
    if (close) conn_.closeAfterFlush();
  }
  void finish(bool passed, HcFailure failure, bool degraded = false) {
    if (!in_check_) return;
    in_check_ = false;
    if (session_) session_->onResult(passed, failure, degraded);
  }

  HealthCheckSession* session_;  // Null once detached.
  Worker& worker_;
  std::shared_ptr<const config::ClusterConfig> cluster_;
  const config::HealthCheckConfig& hc_;  // cluster_'s.
  TcpConnection conn_;
  std::unique_ptr<http::ClientConnection> codec_;  // HTTP, once connected.
  bool up_ = false;
  bool in_check_ = false;  // A check is waiting for its outcome.
  bool dispatch_scheduled_ = false;
  http::RequestEncoder* encoder_ = nullptr;  // The check's stream, while open.
  StreamWatch stream_watch_{*this};
  // The same request for every check; a member because the HTTP/2 codec may
  // serialize it after encodeHeaders returns.
  HeaderMap request_;
  int status_ = 0;
  bool degraded_ = false;  // The response carried x-envoy-degraded.
  std::string received_;   // TCP: what came since the check started.
};

// ---- HealthCheckSession

HealthCheckSession::HealthCheckSession(HealthCheckers::Checker& checker, std::string address,
                                       const sockaddr_storage& addr, bool failed)
    : checker_(checker),
      address_(std::move(address)),
      addr_(addr),
      health_(failed),
      interval_timer_(checker.owner->main().loop(), [this] { onInterval(); }),
      timeout_timer_(checker.owner->main().loop(), [this] { onTimeout(); }) {}

HealthCheckSession::~HealthCheckSession() {
  if (client_) client_->detach();
}

void HealthCheckSession::start() {
  const config::HealthCheckConfig& c = *checker_.cluster->health_check;
  const auto jitter = static_cast<uint64_t>(c.initial_jitter.count());
  interval_timer_.start(jitter > 0 ? checker_.owner->main().random() % jitter : 0);
}

void HealthCheckSession::onInterval() {
  const config::HealthCheckConfig& c = *checker_.cluster->health_check;
  checker_.stats->attempt.inc();
  timeout_timer_.start(static_cast<uint64_t>(c.timeout.count()));
  if (client_ && !client_->usable()) {
    client_->detach();
    client_ = nullptr;
  }
  if (client_) {
    client_->check();
    return;
  }
  client_ = new HealthCheckClient(*this, checker_.owner->main(), checker_.cluster);
  HealthCheckClient* client = client_;
  client->check();
  client->connect(reinterpret_cast<const sockaddr*>(&addr_));
}

void HealthCheckSession::onTimeout() {
  // Envoy closes the connection of a check that timed out.
  if (client_) {
    client_->detach();
    client_ = nullptr;
  }
  onResult(false, HcFailure::kNetworkTimeout);
}

void HealthCheckSession::fail(HcFailure failure) {
  const config::HealthCheckConfig& c = *checker_.cluster->health_check;
  HcTransition t = health_.onFailure(failure, c.unhealthy_threshold);
  checker_.stats->failure.inc();
  if (failure == HcFailure::kNetwork || failure == HcFailure::kNetworkTimeout) {
    checker_.stats->network_failure.inc();
  } else if (failure == HcFailure::kPassive) {
    checker_.stats->passive_failure.inc();
  }
  if (t == HcTransition::kChanged || c.always_log_failures) {
    static const char* const kWhy[] = {"status", "retriable status", "network", "timeout",
                                       "x-envoy-immediate-health-check-fail"};
    SKIFF_LOG(kInfo, "health check of " + address_ + " in cluster " + checker_.name + " failed (" +
                         kWhy[static_cast<int>(failure)] + ")" +
                         (t == HcTransition::kChanged ? ": now unhealthy" : ""));
  }
  if (t == HcTransition::kChanged) checker_.owner->onHealthChanged(checker_, address_, true);
}

void HealthCheckSession::onResult(bool passed, HcFailure failure, bool degraded) {
  const config::HealthCheckConfig& c = *checker_.cluster->health_check;
  timeout_timer_.stop();
  HcTransition t;
  if (passed) {
    t = health_.onSuccess(c.healthy_threshold);
    checker_.stats->success.inc();
    if (t == HcTransition::kChanged) {
      SKIFF_LOG(kInfo, "health check of " + address_ + " in cluster " + checker_.name +
                           " passed: now healthy");
      checker_.owner->onHealthChanged(checker_, address_, false);
    }
    if (degraded != degraded_) {
      degraded_ = degraded;
      SKIFF_LOG(kInfo, "health check of " + address_ + " in cluster " + checker_.name +
                           (degraded ? ": degraded" : ": no longer degraded"));
      checker_.owner->onDegradedChanged(checker_, address_, degraded);
    }
    checker_.owner->onPassed(checker_, address_);
  } else {
    const bool was_failed = health_.failed();
    fail(failure);
    // The transition for the interval, as fail() saw it.
    t = was_failed         ? HcTransition::kUnchanged
        : health_.failed() ? HcTransition::kChanged
                           : HcTransition::kChangePending;
  }
  Worker& main = checker_.owner->main();
  const uint64_t base = healthCheckBaseMs(c, checker_.owner->traffic(checker_), passed, t);
  interval_timer_.start(healthCheckJitteredMs(c, base, [&main] { return main.random(); }));
  if (!checked_once_) {
    checked_once_ = true;
    checker_.owner->maybeFirstRoundDone(checker_);
  }
}

void HealthCheckSession::onPassiveFailure() { fail(HcFailure::kPassive); }

// ---- HealthCheckers

HealthCheckers::Stats::Stats(stats::Store& s, const std::string& p)
    : attempt(s.counter(p + "attempt")),
      success(s.counter(p + "success")),
      failure(s.counter(p + "failure")),
      passive_failure(s.counter(p + "passive_failure")),
      network_failure(s.counter(p + "network_failure")),
      verify_cluster(s.counter(p + "verify_cluster")),
      healthy(s.gauge(p + "healthy")),
      degraded(s.gauge(p + "degraded")) {}

HealthCheckers::HealthCheckers(Worker& main, EachWorker each_worker, Traffic traffic, Passed passed)
    : main_(main),
      each_worker_(std::move(each_worker)),
      traffic_(std::move(traffic)),
      passed_(std::move(passed)) {}

HealthCheckers::~HealthCheckers() { clear(); }

void HealthCheckers::update(const config::ClusterMap& clusters) {
  for (auto it = checkers_.begin(); it != checkers_.end();) {
    const auto* cfg = clusters.get(it->first);
    if (cfg == nullptr || !(*cfg)->health_check) {
      it->second->stats->healthy.set(0);
      HealthCheckedHosts::instance().forgetCluster(it->first);
      it = checkers_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [name, cfg] : clusters) {
    if (!cfg->health_check) continue;
    auto it = checkers_.find(name);
    if (it == checkers_.end()) {
      start(name, cfg, {});
      continue;
    }
    Checker& checker = *it->second;
    const config::ClusterConfig& now = *checker.cluster;
    if (&now == cfg.get()) continue;
    // The same test as the workers' ClusterManager::update: a config that
    // differs only in endpoints keeps its sessions.
    if (now.definition_hash == cfg->definition_hash && now.type == cfg->type &&
        cfg->type != config::ClusterConfig::Type::kStrictDns) {
      checker.cluster = cfg;
      setSessions(checker, endpointTargets(*cfg));
      continue;
    }
    // A changed cluster: its checks start again with the new config; the
    // hosts it keeps keep their health (the workers' new hosts read it from
    // HealthCheckedHosts).
    std::map<std::string, bool> carried = checker.carried;
    for (const auto& [address, session] : checker.sessions) carried[address] = session->failed();
    for (const std::string& address : checker.disabled) carried[address] = false;
    checkers_.erase(it);
    start(name, cfg, std::move(carried));
  }
}

void HealthCheckers::start(const std::string& name,
                           std::shared_ptr<const config::ClusterConfig> cluster,
                           std::map<std::string, bool> carried) {
  auto checker = std::make_unique<Checker>();
  checker->owner = this;
  checker->name = name;
  checker->cluster = cluster;
  checker->stats = std::make_unique<Stats>(main_.stats(), "cluster." + name + ".health_check.");
  checker->carried = std::move(carried);
  Checker& c = *checker;
  checkers_[name] = std::move(checker);
  if (cluster->type == config::ClusterConfig::Type::kStrictDns) {
    // Its hosts come from the resolver (setHosts); until then, none.
    setHealthyGauge(c);
    return;
  }
  c.hosts_known = true;
  setSessions(c, endpointTargets(*cluster));
}

std::vector<HealthCheckers::Target> HealthCheckers::endpointTargets(
    const config::ClusterConfig& cluster) {
  std::vector<Target> out;
  for (const auto& ep : cluster.endpoints) {
    Target t;
    if (!parseIpAddress(ep.address.address, ep.address.port, t.addr)) continue;
    t.check_addr = t.addr;
    if (ep.health_check_port != 0) {
      parseIpAddress(ep.address.address, ep.health_check_port, t.check_addr);
    }
    t.disabled = ep.health_check_disabled;
    out.push_back(t);
  }
  return out;
}

void HealthCheckers::setSessions(Checker& checker, const std::vector<Target>& targets) {
  std::map<std::string, std::unique_ptr<HealthCheckSession>> next;
  std::set<std::string> next_disabled;
  std::vector<HealthCheckSession*> started;
  for (const Target& t : targets) {
    std::string address = formatAddress(reinterpret_cast<const sockaddr*>(&t.addr));
    if (next.count(address) || next_disabled.count(address)) continue;
    auto it = checker.sessions.find(address);
    const bool was_disabled = checker.disabled.count(address) > 0;
    // The host's health so far: its session's, healthy when it was not
    // checked, carried over a changed cluster, or failed when it is new.
    bool failed = true;
    if (it != checker.sessions.end()) {
      failed = it->second->failed();
    } else if (was_disabled) {
      failed = false;
    } else if (auto carried = checker.carried.find(address); carried != checker.carried.end()) {
      failed = carried->second;
    }
    if (t.disabled) {
      next_disabled.insert(address);
      HealthCheckedHosts::instance().set(checker.name, address, false);
      // A checked host that failed is healthy from now on.
      if (it != checker.sessions.end() && failed) onHealthChanged(checker, address, false);
      continue;
    }
    if (it != checker.sessions.end() && it->second->checks(t.check_addr)) {
      next[address] = std::move(it->second);
      checker.sessions.erase(it);
      continue;
    }
    if (it != checker.sessions.end()) checker.sessions.erase(it);  // Its checks go elsewhere now.
    // Written before any worker makes the host (the snapshot is posted
    // after this update).
    HealthCheckedHosts::instance().set(checker.name, address, failed);
    // A new session has not seen x-envoy-degraded yet.
    if (HealthCheckedHosts::instance().degraded(checker.name, address)) {
      onDegradedChanged(checker, address, false);
    }
    auto session = std::make_unique<HealthCheckSession>(checker, address, t.check_addr, failed);
    started.push_back(session.get());
    next[address] = std::move(session);
  }
  // Removed hosts stop being checked and forget their health.
  for (const auto& [address, session] : checker.sessions) {
    HealthCheckedHosts::instance().set(checker.name, address, true);
    HealthCheckedHosts::instance().setDegraded(checker.name, address, false);
  }
  for (const std::string& address : checker.disabled) {
    if (!next.count(address) && !next_disabled.count(address)) {
      HealthCheckedHosts::instance().set(checker.name, address, true);
    }
  }
  checker.sessions = std::move(next);
  checker.disabled = std::move(next_disabled);
  checker.carried.clear();
  setHealthyGauge(checker);
  for (HealthCheckSession* s : started) s->start();
  maybeFirstRoundDone(checker);
}

void HealthCheckers::setHosts(const std::string& cluster,
                              const std::vector<sockaddr_storage>& addrs) {
  auto it = checkers_.find(cluster);
  if (it == checkers_.end()) return;
  std::vector<Target> targets;
  for (const auto& ss : addrs) {
    Target t;
    t.addr = t.check_addr = ss;
    targets.push_back(t);
  }
  it->second->hosts_known = true;
  setSessions(*it->second, targets);
}

void HealthCheckers::maybeFirstRoundDone(Checker& checker) {
  if (checker.first_round_done || !checker.hosts_known) return;
  for (const auto& [address, session] : checker.sessions) {
    if (!session->checkedOnce()) return;
  }
  checker.first_round_done = true;
  if (!on_first_round_) return;
  // Posted: this may run inside update(), while a snapshot is being applied.
  main_.post([fn = on_first_round_, name = checker.name] { fn(name); });
}

bool HealthCheckers::firstRoundDone(const std::string& cluster) const {
  auto it = checkers_.find(cluster);
  return it == checkers_.end() || it->second->first_round_done;
}

void HealthCheckers::setHealthyGauge(Checker& checker) {
  int64_t healthy = 0;
  int64_t degraded = 0;
  for (const auto& [address, session] : checker.sessions) {
    healthy += session->failed() ? 0 : 1;
    degraded += session->degraded() ? 1 : 0;
  }
  checker.stats->healthy.set(healthy);
  checker.stats->degraded.set(degraded);
}

void HealthCheckers::onDegradedChanged(Checker& checker, const std::string& address,
                                       bool degraded) {
  HealthCheckedHosts::instance().setDegraded(checker.name, address, degraded);
  setHealthyGauge(checker);
  const std::string name = checker.name;
  each_worker_([name, address, degraded](Worker& w) {
    w.clusterManager().setHealthCheckDegraded(name, address, degraded);
  });
}

void HealthCheckers::onHealthChanged(Checker& checker, const std::string& address, bool failed) {
  HealthCheckedHosts::instance().set(checker.name, address, failed);
  setHealthyGauge(checker);
  const std::string name = checker.name;
  each_worker_([name, address, failed](Worker& w) {
    w.clusterManager().setHealthCheckFailed(name, address, failed);
  });
}

void HealthCheckers::onPassed(Checker& checker, const std::string& address) {
  if (passed_) passed_(checker.name, address);
}

bool HealthCheckers::traffic(Checker& checker) {
  if (!checker.traffic && traffic_) checker.traffic = traffic_(checker.name);
  return checker.traffic;
}

bool HealthCheckers::failed(const std::string& cluster, const std::string& address) const {
  auto it = checkers_.find(cluster);
  if (it == checkers_.end()) return false;
  auto s = it->second->sessions.find(address);
  return s != it->second->sessions.end() && s->second->failed();
}

bool HealthCheckers::degraded(const std::string& cluster, const std::string& address) const {
  auto it = checkers_.find(cluster);
  if (it == checkers_.end()) return false;
  auto s = it->second->sessions.find(address);
  return s != it->second->sessions.end() && s->second->degraded();
}

void HealthCheckers::clear() {
  for (const auto& [name, checker] : checkers_) HealthCheckedHosts::instance().forgetCluster(name);
  checkers_.clear();
}

void HealthCheckers::immediateFail(const std::string& cluster, const std::string& address) {
  main_.post([this, cluster, address] {
    auto it = checkers_.find(cluster);
    if (it == checkers_.end()) return;
    auto s = it->second->sessions.find(address);
    if (s != it->second->sessions.end()) s->second->onPassiveFailure();
  });
}

}  // namespace skiff::upstream
