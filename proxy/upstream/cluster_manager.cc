#include "proxy/upstream/cluster_manager.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <optional>

#include "proxy/common/log.h"
#include "proxy/http/http1/http1_codec.h"
#include "proxy/http/http2/http2_codec.h"
#include "proxy/net/tls/tls_transport.h"
#include "proxy/upstream/health_checker.h"
#include "proxy/upstream/tcp_tunnel_codec.h"

namespace skiff::upstream {

ClusterStats::ClusterStats(stats::Store& s, const std::string& name)
    : upstream_cx_total(s.counter("cluster." + name + ".upstream_cx_total")),
      upstream_cx_active(s.gauge("cluster." + name + ".upstream_cx_active")),
      upstream_cx_connect_fail(s.counter("cluster." + name + ".upstream_cx_connect_fail")),
      upstream_cx_connect_timeout(s.counter("cluster." + name + ".upstream_cx_connect_timeout")),
      upstream_cx_destroy(s.counter("cluster." + name + ".upstream_cx_destroy")),
      upstream_rq_total(s.counter("cluster." + name + ".upstream_rq_total")),
      upstream_rq_active(s.gauge("cluster." + name + ".upstream_rq_active")),
      upstream_rq_pending_total(s.counter("cluster." + name + ".upstream_rq_pending_total")),
      upstream_rq_pending_overflow(s.counter("cluster." + name + ".upstream_rq_pending_overflow")),
      upstream_rq_pending_active(s.gauge("cluster." + name + ".upstream_rq_pending_active")),
      upstream_rq_timeout(s.counter("cluster." + name + ".upstream_rq_timeout")),
      upstream_rq_completed(s.counter("cluster." + name + ".upstream_rq_completed")),
      upstream_rq_1xx(s.counter("cluster." + name + ".upstream_rq_1xx")),
      upstream_rq_2xx(s.counter("cluster." + name + ".upstream_rq_2xx")),
      upstream_rq_3xx(s.counter("cluster." + name + ".upstream_rq_3xx")),
      upstream_rq_4xx(s.counter("cluster." + name + ".upstream_rq_4xx")),
      upstream_rq_5xx(s.counter("cluster." + name + ".upstream_rq_5xx")),
      upstream_rq_retry(s.counter("cluster." + name + ".upstream_rq_retry")),
      upstream_rq_retry_success(s.counter("cluster." + name + ".upstream_rq_retry_success")),
      upstream_rq_retry_overflow(s.counter("cluster." + name + ".upstream_rq_retry_overflow")),
      upstream_rq_retry_limit_exceeded(
          s.counter("cluster." + name + ".upstream_rq_retry_limit_exceeded")),
      retry_or_shadow_abandoned(s.counter("cluster." + name + ".retry_or_shadow_abandoned")),
      upstream_rq_per_try_timeout(s.counter("cluster." + name + ".upstream_rq_per_try_timeout")),
      upstream_cx_none_healthy(s.counter("cluster." + name + ".upstream_cx_none_healthy")),
      lb_healthy_panic(s.counter("cluster." + name + ".lb_healthy_panic")),
      membership_total(s.gauge("cluster." + name + ".membership_total")),
      membership_healthy(s.gauge("cluster." + name + ".membership_healthy")),
      membership_degraded(s.gauge("cluster." + name + ".membership_degraded")),
      membership_excluded(s.gauge("cluster." + name + ".membership_excluded")),
      ssl_handshake(s.counter("cluster." + name + ".ssl.handshake")),
      upstream_cx_http1_total(s.counter("cluster." + name + ".upstream_cx_http1_total")),
      upstream_cx_http2_total(s.counter("cluster." + name + ".upstream_cx_http2_total")),
      store(s),
      prefix("cluster." + name + ".") {}

// ---- UpstreamClient

UpstreamClient::UpstreamClient(Host& host, Worker& worker, Want want)
    : host_(host.shared_from_this()),
      worker_(worker),
      conn_(worker, *this, host.cluster().config().per_connection_buffer_limit_bytes),
      want_(want),
      idle_deadline_(
          [](void* self) {
            auto* c = static_cast<UpstreamClient*>(self);
            if (c->streams_ == 0) c->conn_.close();
          },
          this) {
  const config::ClusterConfig& cfg = host.cluster().config();
  if (cfg.tls) conn_.enableTls(std::make_unique<tls::TlsTransport>(cfg.tls, /*server=*/false));
}

bool UpstreamClient::serves(Want w) const {
  if (!up_ || !codec_) return false;
  // A raw TCP connection carries only a terminated CONNECT, and that only it.
  if ((w == Want::kTcp) != (want_ == Want::kTcp)) return false;
  if (w == Want::kAny || w == Want::kTcp) return true;
  return (codec_->protocol() == http::Protocol::kHttp2) == (w == Want::kHttp2);
}

void UpstreamClient::makeCodec(bool h2) {
  const config::ClusterConfig& cfg = host_->cluster().config();
  if (want_ == Want::kTcp) {
    codec_ = std::make_unique<TcpTunnelCodec>(*this);
    return;
  }
  if (h2) {
    codec_ = std::make_unique<http::Http2ClientCodec>(*this, cfg.http2);
    host_->cluster().stats().upstream_cx_http2_total.inc();
  } else {
    http::Http1Settings settings;
    settings.enable_trailers = cfg.http1_enable_trailers;
    codec_ = std::make_unique<http::Http1ClientCodec>(*this, settings);
    host_->cluster().stats().upstream_cx_http1_total.inc();
  }
}

void UpstreamClient::becomeReady() {
  Host& host = *host_;
  if (host.connecting_ > 0) --host.connecting_;
  up_ = true;
  host.onClientAvailable(*this);
}

UpstreamClient::~UpstreamClient() {
  if (dispatch_scheduled_) worker_.cancel(this);
}

void UpstreamClient::release() {
  if (streams_ > 0) --streams_;
  if (conn_.closing()) return;
  if (!codec_->isReusable()) {
    // Streams still open on it finish; no new ones start. What the last one
    // queued (a tunnel's last bytes and FIN) leaves first.
    host_->removeReady(*this);
    // (An HTTP/2 codec that failed has queued its GOAWAY.)
    if (streams_ == 0) conn_.closeAfterFlush();
    return;
  }
  host_->onClientAvailable(*this);
}

void UpstreamClient::abandon() {
  if (codec_->protocol() == http::Protocol::kHttp2) {
    release();  // The stream was reset; the connection is fine.
    return;
  }
  if (streams_ > 0) --streams_;
  conn_.close();
}

void UpstreamClient::onRead(BufferChain& data) {
  http::CodecError error;
  bool ok = codec_->dispatch(data, error);
  // What this read made HTTP/2 downstream codecs send leaves now, as an
  // HTTP/2 codec's own dispatch does (Http2Codec::flushWaiting): waiting
  // for the worker's prepare step, the frames of every connection's reads
  // piled up in nghttp2 (about 330 more instructions per h2c request with
  // an HTTP/1.1 upstream).
  http::Http2Codec::flushWaiting();
  if (!ok) {
    // After the flush: an HTTP/2 codec has queued its GOAWAY for the upstream.
    conn_.closeAfterFlush(TcpConnection::CloseReason::kError);
    return;
  }
  // An HTTP/2 stream is given back to the pool while its end is being
  // delivered, before nghttp2 closes it, so a connection at the peer's
  // SETTINGS_MAX_CONCURRENT_STREAMS was still full then; a SETTINGS frame may
  // also raise that limit. Either way the room shows up only now: without
  // this, requests waited for a connection the pool thought was full (past
  // max_connections until their timeout; below it, on a new connection).
  if (!ready_ && !conn_.closing() && codec_->canStartStream()) host_->onClientAvailable(*this);
}

void UpstreamClient::onEof() {
  // A tunnel passes the upstream's FIN on and keeps the other direction open.
  if (up_ && codec_ && codec_->onRemoteEof()) return;
  // The upstream closed its side. A response delimited by close ends here;
  // anything else in flight is reset by onTransportClosed.
  conn_.close(TcpConnection::CloseReason::kRemote);
}

void UpstreamClient::scheduleDispatch() {
  if (dispatch_scheduled_) return;
  dispatch_scheduled_ = true;
  worker_.schedule(this);
}

void UpstreamClient::onScheduled() {
  dispatch_scheduled_ = false;
  if (conn_.closing() || !codec_) return;
  BufferChain none;
  onRead(none);
}

void UpstreamClient::onClosed(TcpConnection::CloseReason reason) {
  idle_deadline_.cancel();
  Cluster& cluster = host_->cluster();
  if (counted_active_) {
    cluster.stats().upstream_cx_active.dec();
    cluster.stats().upstream_cx_destroy.inc();
    --cluster.connections;
  }
  std::string transport_failure;
  if (reason == TcpConnection::CloseReason::kTlsError && conn_.tls()) {
    const char* why = conn_.tls()->failureReason();
    std::string reason_name = why ? why : "connection_error";
    cluster.stats().store.counter(cluster.stats().prefix + "ssl." + reason_name).inc();
    SKIFF_LOG(kDebug, "upstream TLS to " + host_->address() + " failed: " + reason_name + ": " +
                          conn_.tls()->failureDetail());
    // Envoy's transport failure reason wraps the TLS library's errors in
    // TLS_error:|...:TLS_error_end; skiff's are OpenSSL's words.
    transport_failure = "TLS_error:|" + conn_.tls()->failureDetail() + ":TLS_error_end";
  } else if (reason == TcpConnection::CloseReason::kConnectFailure) {
    transport_failure = TcpConnection::connectFailureReason();
  }
  if (!up_) {
    // Never became usable (connect failure, timeout, TLS handshake failure):
    // the request that caused it fails with UF.
    if (reason == TcpConnection::CloseReason::kConnectTimeout) {
      cluster.stats().upstream_cx_connect_timeout.inc();
    }
    cluster.stats().upstream_cx_connect_fail.inc();
    if (host_->connecting_ > 0) --host_->connecting_;
    host_->onClientFailed(*this,
                          reason == TcpConnection::CloseReason::kConnectTimeout
                              ? PoolFailure::kConnectTimeout
                              : PoolFailure::kConnectFailure,
                          transport_failure);
  } else {
    codec_->onTransportClosed(reason == TcpConnection::CloseReason::kLocal
                                  ? http::ResetReason::kLocalReset
                                  : http::ResetReason::kConnectionTermination);
    if (auto* h2 = dynamic_cast<http::Http2ClientCodec*>(codec_.get())) {
      // Envoy roots an upstream HTTP/2 codec's stats at cluster.<name>.http2.*.
      ClusterStats& cs = cluster.stats();
      h2->stats().forEach([&](const char* name, uint64_t v) {
        if (v) cs.store.counter(cs.prefix + "http2." + name).inc(v);
      });
    }
  }
  host_->onClientClosed(*this);
  worker_.deferDelete(std::unique_ptr<Deletable>(this));
}

void UpstreamClient::onConnected() {
  if (conn_.tls()) return;  // Ready when the handshake is done.
  makeCodec(want_ == Want::kHttp2);
  becomeReady();
}

void UpstreamClient::onTlsHandshakeDone() {
  host_->cluster().stats().ssl_handshake.inc();
  // auto_config: ALPN decides; otherwise the cluster's protocol does.
  bool h2 = want_ == Want::kAny ? conn_.tls()->alpn() == "h2" : want_ == Want::kHttp2;
  makeCodec(h2);
  becomeReady();
}

void UpstreamClient::onAboveWriteBufferHighWatermark() {
  codec_->onAboveWriteBufferHighWatermark();
}
void UpstreamClient::onBelowWriteBufferLowWatermark() { codec_->onBelowWriteBufferLowWatermark(); }
void UpstreamClient::write(BufferChain& data) { conn_.write(data); }
void UpstreamClient::readDisable(bool disable) { conn_.readDisable(disable); }
void UpstreamClient::closeAfterFlush() { conn_.closeAfterFlush(); }

// ---- Host: a keep-alive pool for one endpoint

Host::Host(Cluster& cluster, const sockaddr_storage& addr, uint32_t weight)
    : cluster_(&cluster),
      addr_(addr),
      weight_(weight == 0 ? 1 : weight),
      detect_(cluster.config().outlier_detection != nullptr),
      health_checked_(cluster.config().health_check != nullptr) {
  address_ = formatAddress(reinterpret_cast<const ::sockaddr*>(&addr_));
  watch_responses_ = detect_ || health_checked_;
  // A new host of a checked cluster is failed until a check passes; one the
  // main thread already knows keeps the health it has there.
  if (health_checked_) {
    failed_hc_ = HealthCheckedHosts::instance().failed(cluster.name(), address_);
    degraded_hc_ = HealthCheckedHosts::instance().degraded(cluster.name(), address_);
  }
}

// ---- Host: outlier detection (only with the cluster's outlier_detection)

namespace {

// Envoy's Grpc::Utility::grpcToHttpStatus, for a response whose headers
// carry grpc-status (Envoy's router reports that instead of :status).
int grpcToHttpStatus(std::string_view grpc_status) {
  static constexpr int kHttp[] = {
      200,  // OK
      499,  // CANCELLED
      500,  // UNKNOWN
      400,  // INVALID_ARGUMENT
      504,  // DEADLINE_EXCEEDED
      404,  // NOT_FOUND
      409,  // ALREADY_EXISTS
      403,  // PERMISSION_DENIED
      429,  // RESOURCE_EXHAUSTED
      400,  // FAILED_PRECONDITION
      409,  // ABORTED
      400,  // OUT_OF_RANGE
      501,  // UNIMPLEMENTED
      500,  // INTERNAL
      503,  // UNAVAILABLE
      500,  // DATA_LOSS
      401,  // UNAUTHENTICATED
  };
  unsigned code = 0;
  if (grpc_status.empty() || grpc_status.size() > 2) return 500;
  for (char c : grpc_status) {
    if (c < '0' || c > '9') return 500;
    code = code * 10 + static_cast<unsigned>(c - '0');
  }
  return code < std::size(kHttp) ? kHttp[code] : 500;
}

}  // namespace

void Host::putResponse(const HeaderMap& headers, const HeaderMap& request) {
  if (health_checked_ && headers.has("x-envoy-immediate-health-check-fail")) {
    if (HealthCheckReports* reports = HealthCheckReports::get()) {
      reports->immediateFail(cluster_->name(), address_);
    }
  }
  if (!detect_) return;
  std::optional<std::string_view> grpc = headers.get(WellKnownHeader::kGrpcStatus);
  putStatus(grpc && isGrpcRequest(request) ? grpcToHttpStatus(*grpc) : headers.status());
}

// Envoy's putHttpResponseCode: a 5xx extends the 5xx run, and a gateway
// error (502, 503, 504) the gateway run, which any other 5xx ends; anything
// else ends both. A run reports when it reaches its threshold exactly.
void Host::putStatus(int status) {
  const config::OutlierDetectionConfig& c = *cluster_->config().outlier_detection;
  ++requests_.total;
  if (status >= 500 && status < 600) {
    if (status >= 502 && status <= 504) {
      if (++consecutive_gateway_failure_ == c.consecutive_gateway_failure) {
        consecutive_gateway_failure_ = 0;
        report(OutlierKind::kConsecutiveGatewayFailure);
      }
    } else {
      consecutive_gateway_failure_ = 0;
    }
    if (++consecutive_5xx_ == c.consecutive_5xx) {
      consecutive_5xx_ = 0;
      report(OutlierKind::kConsecutive5xx);
    }
  } else {
    ++requests_.success;
    consecutive_5xx_ = 0;
    consecutive_gateway_failure_ = 0;
  }
}

void Host::putLocalOrigin(LocalOrigin result, int timeout_status) {
  const config::OutlierDetectionConfig& c = *cluster_->config().outlier_detection;
  if (!c.split_external_local_origin_errors) {
    // Envoy maps them to the responses they become: a failed connection or a
    // reset to 503, a timeout to the router's answer; a success is no result.
    if (result == LocalOrigin::kConnectFailed) putStatus(503);
    if (result == LocalOrigin::kTimeout) putStatus(timeout_status);
    return;
  }
  ++requests_.local_total;
  if (result == LocalOrigin::kConnectSuccess) {
    ++requests_.local_success;
    consecutive_local_origin_failure_ = 0;
  } else if (++consecutive_local_origin_failure_ == c.consecutive_local_origin_failure) {
    consecutive_local_origin_failure_ = 0;
    report(OutlierKind::kConsecutiveLocalOriginFailure);
  }
}

// The run starts again here, where Envoy's main thread resets it once it has
// decided: errors in between count towards the next run (see
// outlier_detector.h for the rest of the difference).
void Host::report(OutlierKind kind) {
  if (OutlierReports* reports = OutlierReports::get()) {
    reports->report(cluster_->name(), address_, kind);
  }
}

RequestCounts Host::takeRequestCounts() {
  RequestCounts out = requests_;
  requests_ = {};
  return out;
}

void Host::setEjected(bool ejected) {
  ejected_ = ejected;
  if (!ejected) {
    consecutive_5xx_ = 0;
    consecutive_gateway_failure_ = 0;
    consecutive_local_origin_failure_ = 0;
  }
}

void Host::newStream(PoolCallbacks& callbacks, Want want) {
  Cluster& c = *cluster_;
  for (UpstreamClient* next = ready_head_; next != nullptr;) {
    UpstreamClient& client = *next;
    next = client.ready_next_;
    if (client.conn_.closing() || !client.codec().canStartStream()) {
      removeReady(client);
      continue;
    }
    if (client.serves(want)) {
      assign(client, callbacks);
      return;
    }
  }
  const config::ClusterConfig& cfg = c.config();
  if (c.pending_requests >= cfg.max_pending_requests) {
    c.stats().upstream_rq_pending_overflow.inc();
    callbacks.onPoolFailure(PoolFailure::kOverflow, {});
    return;
  }
  pending_.push_back({&callbacks, want});
  ++c.pending_requests;
  c.stats().upstream_rq_pending_total.inc();
  c.stats().upstream_rq_pending_active.inc();
  // A new connection per waiting request for HTTP/1, one for many with
  // HTTP/2, up to the cluster's connection limit; past it, requests wait
  // for a stream to come free.
  if (connecting_ * c.streamsPerConnection() < pending_.size() &&
      c.connections < cfg.max_connections) {
    connectOne(want);
  }
}

void Host::assign(UpstreamClient& client, PoolCallbacks& cb) {
  ++client.streams_;
  client.idle_deadline_.cancel();
  cb.onPoolReady(client);
  // The borrower has started its stream (or already given it back).
  if (client.ready_ && !client.codec().canStartStream()) removeReady(client);
}

void Host::addReady(UpstreamClient& client) {
  if (client.ready_) return;
  client.ready_ = true;
  client.ready_prev_ = nullptr;
  client.ready_next_ = ready_head_;
  if (ready_head_) ready_head_->ready_prev_ = &client;
  ready_head_ = &client;
}

void Host::removeReady(UpstreamClient& client) {
  if (!client.ready_) return;
  (client.ready_prev_ ? client.ready_prev_->ready_next_ : ready_head_) = client.ready_next_;
  if (client.ready_next_) client.ready_next_->ready_prev_ = client.ready_prev_;
  client.ready_prev_ = client.ready_next_ = nullptr;
  client.ready_ = false;
}

void Host::connectOne(Want want) {
  Cluster& c = *cluster_;
  auto* client = new UpstreamClient(*this, c.worker(), want);
  all_.push_back(client);
  ++connecting_;
  ++c.connections;
  client->counted_active_ = true;
  c.stats().upstream_cx_total.inc();
  c.stats().upstream_cx_active.inc();
  const auto* bind = c.config().upstream_bind.get();
  int rc = client->conn_.connect(
      socketAddress(), static_cast<uint64_t>(c.config().connect_timeout.count()),
      bind != nullptr ? &bind->source : nullptr, bind != nullptr && bind->freebind);
  if (rc != 0) client->conn_.close(TcpConnection::CloseReason::kConnectFailure);
}

void Host::cancel(PoolCallbacks& callbacks) {
  auto it = std::find_if(pending_.begin(), pending_.end(),
                         [&](const Pending& p) { return p.callbacks == &callbacks; });
  if (it == pending_.end()) return;
  pending_.erase(it);
  --cluster_->pending_requests;
  cluster_->stats().upstream_rq_pending_active.dec();
}

void Host::onClientFailed(UpstreamClient& client, PoolFailure reason,
                          std::string_view transport_failure) {
  // The connection this request caused failed: fail the oldest waiter it
  // was opened for, as Envoy does, so a dead host answers quickly instead of
  // hanging everyone.
  for (auto it = pending_.begin(); it != pending_.end(); ++it) {
    if (it->want != client.want_ && it->want != Want::kAny && client.want_ != Want::kAny) continue;
    PoolCallbacks* cb = it->callbacks;
    pending_.erase(it);
    --cluster_->pending_requests;
    cluster_->stats().upstream_rq_pending_active.dec();
    cb->onPoolFailure(reason, transport_failure);
    return;
  }
}

void Host::onClientAvailable(UpstreamClient& client) {
  for (auto it = pending_.begin();
       it != pending_.end() && !client.conn_.closing() && client.codec().canStartStream();) {
    if (!client.serves(it->want)) {
      ++it;
      continue;
    }
    PoolCallbacks* cb = it->callbacks;
    it = pending_.erase(it);
    --cluster_->pending_requests;
    cluster_->stats().upstream_rq_pending_active.dec();
    assign(client, *cb);
  }
  if (client.conn_.closing()) return;
  if (retired_ && client.streams_ == 0) {
    client.conn_.close();
    return;
  }
  if (!retired_ && client.codec().canStartStream()) addReady(client);
  if (client.streams_ == 0) armIdleTimer(client);
}

void Host::armIdleTimer(UpstreamClient& client) {
  uint64_t idle_ms = static_cast<uint64_t>(cluster_->config().upstream_idle_timeout.count());
  if (idle_ms == 0) return;  // Zero disables, as in Envoy.
  cluster_->worker().deadlines().arm(client.idle_deadline_, idle_ms);
}

void Host::onClientClosed(UpstreamClient& client) {
  removeReady(client);
  std::erase(all_, &client);
  // Waiters that were counting on this connection get a new one.
  // A retired host still serves the requests that were waiting for it.
  if (!pending_.empty() && connecting_ * cluster_->streamsPerConnection() < pending_.size() &&
      cluster_->connections < cluster_->config().max_connections) {
    connectOne(pending_.front().want);
  }
}

void Host::closeAll() {
  std::vector<UpstreamClient*> all = all_;
  for (UpstreamClient* c : all) c->conn_.close();
}

void Host::retire() {
  retired_ = true;
  std::vector<UpstreamClient*> ready;
  for (UpstreamClient* c = ready_head_; c != nullptr; c = c->ready_next_) ready.push_back(c);
  for (UpstreamClient* c : ready) {
    removeReady(*c);
    if (c->streams_ == 0) c->conn_.close();
  }
}

void Host::failPending() {
  while (!pending_.empty()) {
    PoolCallbacks* cb = pending_.front().callbacks;
    pending_.pop_front();
    --cluster_->pending_requests;
    cluster_->stats().upstream_rq_pending_active.dec();
    cb->onPoolFailure(PoolFailure::kConnectFailure, {});
  }
}

void Host::requestStarted() {
  ++active_requests_;
  ++cluster_->active_requests;
  cluster_->stats().upstream_rq_total.inc();
  cluster_->stats().upstream_rq_active.inc();
}

void Host::requestEnded() {
  if (active_requests_ > 0) --active_requests_;
  if (cluster_->active_requests > 0) --cluster_->active_requests;
  cluster_->stats().upstream_rq_active.dec();
}

// ---- Cluster

Cluster::Cluster(Worker& worker, std::shared_ptr<const config::ClusterConfig> config)
    : worker_(worker), stats_(worker.stats(), config->name) {
  setConfig(std::move(config));
}

Cluster::~Cluster() {
  closeCleanupTimer();
  for (auto& h : hosts_) h->retire();
}

void Cluster::setConfig(std::shared_ptr<const config::ClusterConfig> config) {
  config_ = std::move(config);
  // STRICT_DNS hosts come from the main thread's resolver (setHosts);
  // ORIGINAL_DST ones from requests (chooseOriginalDst).
  if (config_->type == config::ClusterConfig::Type::kStrictDns ||
      config_->type == config::ClusterConfig::Type::kOriginalDst) {
    return;
  }
  std::vector<sockaddr_storage> addrs;
  std::vector<uint32_t> weights;
  std::vector<const config::ClusterConfig::Endpoint*> endpoints;
  for (const auto& ep : config_->endpoints) {
    sockaddr_storage ss;
    if (parseIpAddress(ep.address.address, ep.address.port, ss)) {
      addrs.push_back(ss);
      weights.push_back(ep.weight);
      endpoints.push_back(&ep);
    }
  }
  setHosts(addrs, weights, &endpoints);
}

void Cluster::retire() {
  closeCleanupTimer();
  if (config_->type == config::ClusterConfig::Type::kOriginalDst) {
    // Its hosts leave /clusters now; they stay in hosts_ (inUse) while
    // requests and connections hold them.
    for (auto& h : hosts_)
      countOriginalDst(OriginalDstHosts::instance().remove(name(), h->address()));
  }
  for (auto& h : hosts_) h->retire();
}

bool Cluster::inUse() const {
  // A router, a waiting request or a connection holds a host it uses; the
  // cluster's own list holds the only other reference.
  if (connections > 0) return true;
  for (const auto& h : hosts_) {
    if (h.use_count() > 1) return true;
  }
  return false;
}

void Cluster::setHosts(const std::vector<sockaddr_storage>& addrs,
                       const std::vector<uint32_t>& weights,
                       const std::vector<const config::ClusterConfig::Endpoint*>* endpoints) {
  std::vector<std::shared_ptr<Host>> next;
  for (size_t i = 0; i < addrs.size(); ++i) {
    // Keep an existing host (and its warm connections) when its address stays.
    std::shared_ptr<Host> keep;
    for (auto& h : hosts_) {
      if (h && std::memcmp(h->socketAddress(), &addrs[i], sizeof(sockaddr_storage)) == 0) {
        keep = h;
        h = nullptr;
        break;
      }
    }
    uint32_t w = i < weights.size() ? weights[i] : 1;
    if (keep && keep->weight() != w) keep->setWeight(w);
    next.push_back(keep ? keep : std::make_shared<Host>(*this, addrs[i], w));
    if (endpoints != nullptr && i < endpoints->size()) {
      next.back()->setEdsHealth((*endpoints)[i]->eds_health, (*endpoints)[i]->priority);
    }
  }
  for (auto& h : hosts_) {
    if (h) h->retire();
  }
  hosts_ = std::move(next);
  rr_next_ = 0;
  buildHashTable(hosts_, hash_all_);
  countHealthy();
}

void Cluster::countHealthy() {
  ejected_ = 0;
  degraded_ = 0;
  excluded_ = 0;
  uint32_t lowest = 0;  // The largest priority number.
  for (const auto& h : hosts_) {
    ejected_ += h->healthy() ? 0 : 1;
    degraded_ += h->degraded() ? 1 : 0;
    excluded_ += h->excluded() ? 1 : 0;
    lowest = std::max(lowest, h->priority());
  }
  plain_ = ejected_ == 0 && lowest == 0;
  priorities_.clear();
  if (!plain_) {
    priorities_.resize(size_t{lowest} + 1);
    for (const auto& h : hosts_) {
      Priority& p = priorities_[h->priority()];
      p.all.hosts.push_back(h);
      if (h->healthy()) p.healthy.hosts.push_back(h);
      if (h->degraded()) p.degraded.hosts.push_back(h);
      p.excluded += h->excluded() ? 1 : 0;
    }
    computeLoads();
  }
  // A hashing cluster picks from a table over the hosts it picks from, as
  // Envoy builds its rings over each priority's healthy (degraded, all)
  // hosts again when health changes.
  if (hash_all_.ring || hash_all_.maglev) {
    for (Priority& p : priorities_) {
      for (HostSet* set : {&p.all, &p.healthy, &p.degraded}) {
        if (!set->hosts.empty()) buildHashTable(set->hosts, set->hash);
      }
    }
    reportHashGauges(plain_ ? hash_all_ : priorities_[0].healthy.hash);
  }
  // Membership is the cluster's, not the worker's: every worker holds the
  // same host set and hears of the same ejections, so one of them reports
  // it (the admin sums gauges).
  if (worker_.index() == 0) {
    stats_.membership_total.set(static_cast<int64_t>(hosts_.size()));
    stats_.membership_healthy.set(static_cast<int64_t>(hosts_.size() - ejected_));
    stats_.membership_degraded.set(static_cast<int64_t>(degraded_));
    stats_.membership_excluded.set(static_cast<int64_t>(excluded_));
  }
}

void Cluster::computeLoads() {
  // Each priority's availability: its healthy (degraded) share of the hosts
  // not excluded, times the overprovisioning factor (1.4), capped at 100%.
  constexpr uint64_t kOverprovisioning = 140;  // Percent.
  const uint64_t threshold = config_->healthy_panic_threshold;
  std::vector<uint64_t> health(priorities_.size());
  std::vector<uint64_t> degraded(priorities_.size());
  uint64_t availability = 0;
  total_panic_ = true;
  for (size_t i = 0; i < priorities_.size(); ++i) {
    Priority& p = priorities_[i];
    const uint64_t counted = p.all.hosts.size() - p.excluded;
    const uint64_t usable = p.healthy.hosts.size() + p.degraded.hosts.size();
    if (counted > 0) {
      health[i] = std::min<uint64_t>(100, kOverprovisioning * p.healthy.hosts.size() / counted);
      degraded[i] = std::min<uint64_t>(100, kOverprovisioning * p.degraded.hosts.size() / counted);
    }
    // Envoy's panic: healthy and degraded below the threshold percent of
    // the hosts counted (with none counted, any threshold above 0).
    p.panic = 100 * usable < threshold * counted || (counted == 0 && threshold > 0);
    total_panic_ = total_panic_ && p.panic;
    availability += health[i] + degraded[i];
  }
  if (total_panic_) {
    // Every priority panics: each takes its share of all the hosts, the
    // rounding's rest to the first one that has hosts.
    uint64_t rest = 100;
    int first = -1;
    for (size_t i = 0; i < priorities_.size(); ++i) {
      Priority& p = priorities_[i];
      if (first < 0 && !p.all.hosts.empty()) first = static_cast<int>(i);
      p.panic_load = static_cast<uint32_t>(100 * p.all.hosts.size() / hosts_.size());
      rest -= p.panic_load;
    }
    if (first >= 0)
      priorities_[static_cast<size_t>(first)].panic_load += static_cast<uint32_t>(rest);
    return;
  }
  // Healthy hosts first, priority by priority, then degraded ones; short of
  // 100% in all, the shares are scaled up to it.
  availability = std::min<uint64_t>(100, availability);
  if (availability == 0) return;  // Nothing to pick (panic threshold 0).
  uint64_t rest = 100;
  int first = -1;
  for (size_t i = 0; i < priorities_.size(); ++i) {
    if (first < 0 && health[i] + degraded[i] > 0) first = static_cast<int>(i);
    priorities_[i].healthy_load =
        static_cast<uint32_t>(std::min<uint64_t>(rest, health[i] * 100 / availability));
    rest -= priorities_[i].healthy_load;
  }
  for (size_t i = 0; i < priorities_.size(); ++i) {
    priorities_[i].degraded_load =
        static_cast<uint32_t>(std::min<uint64_t>(rest, degraded[i] * 100 / availability));
    rest -= priorities_[i].degraded_load;
  }
  if (rest > 0 && first >= 0) {
    Priority& p = priorities_[static_cast<size_t>(first)];
    (health[static_cast<size_t>(first)] > 0 ? p.healthy_load : p.degraded_load) +=
        static_cast<uint32_t>(rest);
  }
}

namespace {

// Sets one of a host's health flags on the hosts at address (get reads it,
// set writes it); whether any changed.
bool setHostFlag(const std::vector<std::shared_ptr<Host>>& hosts, const std::string& address,
                 bool value, bool (Host::*get)() const, void (Host::*set)(bool)) {
  bool changed = false;
  for (const auto& h : hosts) {
    if (h->address() == address && ((*h).*get)() != value) {
      ((*h).*set)(value);
      changed = true;
    }
  }
  return changed;
}

}  // namespace

void Cluster::setEjected(const std::string& address, bool ejected) {
  if (setHostFlag(hosts_, address, ejected, &Host::ejected, &Host::setEjected)) countHealthy();
}

void Cluster::setHealthCheckFailed(const std::string& address, bool failed) {
  if (setHostFlag(hosts_, address, failed, &Host::failedHealthCheck, &Host::setHealthCheckFailed)) {
    countHealthy();
  }
}

void Cluster::setHealthCheckDegraded(const std::string& address, bool degraded) {
  if (setHostFlag(hosts_, address, degraded, &Host::healthCheckDegraded,
                  &Host::setHealthCheckDegraded)) {
    countHealthy();
  }
}

HostRequestCounts Cluster::takeRequestCounts() {
  HostRequestCounts out;
  for (const auto& h : hosts_) {
    RequestCounts c = h->takeRequestCounts();
    if (c.total != 0 || c.local_total != 0) out.emplace_back(h->address(), c);
  }
  return out;
}

const Cluster::HostSet& Cluster::chooseSet(uint64_t draw) {
  static const HostSet kNone;
  uint64_t point = draw % 100;
  if (total_panic_) {
    for (Priority& p : priorities_) {
      if (point < p.panic_load) {
        stats_.lb_healthy_panic.inc();
        return p.all;
      }
      point -= p.panic_load;
    }
    return kNone;
  }
  Priority* chosen = nullptr;
  bool healthy = true;
  for (Priority& p : priorities_) {
    if (point < p.healthy_load) {
      chosen = &p;
      break;
    }
    point -= p.healthy_load;
  }
  if (chosen == nullptr) {
    healthy = false;
    for (Priority& p : priorities_) {
      if (point < p.degraded_load) {
        chosen = &p;
        break;
      }
      point -= p.degraded_load;
    }
  }
  if (chosen == nullptr) return kNone;
  if (chosen->panic) {
    stats_.lb_healthy_panic.inc();
    return chosen->all;
  }
  return healthy ? chosen->healthy : chosen->degraded;
}

std::shared_ptr<Host> Cluster::chooseHost(const LbContext& context) {
  if (config_->lb_policy == config::ClusterConfig::LbPolicy::kClusterProvided) {
    return chooseOriginalDst(context);
  }
  const bool hashing = config_->lb_policy == config::ClusterConfig::LbPolicy::kRingHash ||
                       config_->lb_policy == config::ClusterConfig::LbPolicy::kMaglev;
  const std::vector<std::shared_ptr<Host>>* set = &hosts_;
  const HashTable* table = &hash_all_;
  std::optional<uint64_t> hash;  // Made once: a hash policy may set a cookie.
  if (!plain_) [[unlikely]] {
    // A hashing policy's priority follows the request's hash, as Envoy's.
    if (hashing) hash = requestHash(context);
    const HostSet& chosen = chooseSet(hash ? *hash : worker_.random());
    set = &chosen.hosts;
    table = &chosen.hash;
  }
  const std::vector<std::shared_ptr<Host>>& hosts = *set;
  if (hosts.empty()) return nullptr;
  if (hosts.size() == 1) return hosts[0];
  switch (config_->lb_policy) {
    case config::ClusterConfig::LbPolicy::kRoundRobin: {
      // Smooth weighted round robin: each pick adds every host's weight to
      // its score and takes the highest; equal weights reduce to plain RR.
      int64_t total = 0;
      Host* best = nullptr;
      size_t best_i = 0;
      for (size_t i = 0; i < hosts.size(); ++i) {
        Host& h = *hosts[i];
        h.smooth_weight += h.weight();
        total += h.weight();
        if (!best || h.smooth_weight > best->smooth_weight) {
          best = &h;
          best_i = i;
        }
      }
      best->smooth_weight -= total;
      return hosts[best_i];
    }
    case config::ClusterConfig::LbPolicy::kLeastRequest: {
      // Power of N choices (N = choice_count, default 2): the fewest active
      // requests among N random hosts.
      std::shared_ptr<Host> best;
      for (uint32_t k = 0; k < std::max<uint32_t>(config_->least_request_choice_count, 1); ++k) {
        auto& h = hosts[worker_.random() % hosts.size()];
        if (!best || h->activeRequests() < best->activeRequests()) best = h;
      }
      return best;
    }
    case config::ClusterConfig::LbPolicy::kClusterProvided:
      break;  // Answered above.
    case config::ClusterConfig::LbPolicy::kRingHash:
    case config::ClusterConfig::LbPolicy::kMaglev:
      return chooseHashed(context, hash ? *hash : requestHash(context), *table);
    case config::ClusterConfig::LbPolicy::kRandom: {
      uint64_t total = 0;
      for (auto& h : hosts) total += h->weight();
      uint64_t r = worker_.random() % total;
      for (auto& h : hosts) {
        if (r < h->weight()) return h;
        r -= h->weight();
      }
      return hosts.back();
    }
  }
  return hosts[0];
}

void Cluster::buildHashTable(const std::vector<std::shared_ptr<Host>>& hosts, HashTable& table) {
  const auto policy = config_->lb_policy;
  if (policy != config::ClusterConfig::LbPolicy::kRingHash &&
      policy != config::ClusterConfig::LbPolicy::kMaglev) {
    return;
  }
  std::vector<std::string> keys;
  std::vector<uint32_t> weights;
  keys.reserve(hosts.size());
  weights.reserve(hosts.size());
  table.hosts.clear();
  for (const auto& h : hosts) {
    keys.push_back(h->address());
    weights.push_back(h->weight());
    table.hosts.push_back(h.get());
  }
  if (policy == config::ClusterConfig::LbPolicy::kRingHash) {
    if (!table.ring) table.ring = std::make_unique<RingHashTable>();
    table.ring->build(keys, weights, config_->ring_hash_minimum_size,
                      config_->ring_hash_maximum_size);
  } else {
    if (!table.maglev) table.maglev = std::make_unique<MaglevTable>();
    table.maglev->build(keys, weights, config_->maglev_table_size);
  }
}

void Cluster::reportHashGauges(const HashTable& table) {
  // Envoy's gauges, from one worker as for membership (every worker builds
  // the same table; the admin sums gauges).
  if (worker_.index() != 0) return;
  stats::Store& s = stats_.store;
  if (table.ring) {
    s.gauge(stats_.prefix + "ring_hash_lb.size").set(static_cast<int64_t>(table.ring->size()));
    s.gauge(stats_.prefix + "ring_hash_lb.min_hashes_per_host")
        .set(static_cast<int64_t>(table.ring->minPointsPerHost()));
    s.gauge(stats_.prefix + "ring_hash_lb.max_hashes_per_host")
        .set(static_cast<int64_t>(table.ring->maxPointsPerHost()));
  }
  if (table.maglev) {
    s.gauge(stats_.prefix + "maglev_lb.min_entries_per_host")
        .set(static_cast<int64_t>(table.maglev->minEntriesPerHost()));
    s.gauge(stats_.prefix + "maglev_lb.max_entries_per_host")
        .set(static_cast<int64_t>(table.maglev->maxEntriesPerHost()));
  }
}

uint64_t Cluster::requestHash(const LbContext& context) {
  // As Envoy: no hash (no policy, or none of its entries matched the
  // request) picks a random point, so a random host by weight.
  std::optional<uint64_t> hash;
  if (context.hash_policy && context.headers) {
    hash = context.hash_policy->generate(
        *context.headers, context.downstream_address, context.cookie_sink,
        std::string_view(context.remote_ip.data(), context.remote_ip_length));
  }
  return hash ? *hash : worker_.random();
}

std::shared_ptr<Host> Cluster::chooseHashed(const LbContext& context, uint64_t h,
                                            const HashTable& table) {
  if (table.ring && !table.ring->empty()) {
    return table.hosts[table.ring->pick(h, context.attempt)]->shared_from_this();
  }
  if (table.maglev && !table.maglev->empty()) {
    return table.hosts[table.maglev->pick(h, context.attempt)]->shared_from_this();
  }
  return nullptr;
}

namespace {

// Parses "ip:port" or "[ipv6]:port" (x-envoy-original-dst-host: an IP
// address, never a name).
bool parseHostPort(std::string_view value, sockaddr_storage& out) {
  size_t colon = value.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == value.size()) return false;
  std::string_view ip = value.substr(0, colon);
  if (ip.size() >= 2 && ip.front() == '[' && ip.back() == ']') {
    ip = ip.substr(1, ip.size() - 2);
  } else if (ip.find(':') != std::string_view::npos) {
    return false;  // An IPv6 address needs its brackets.
  }
  uint32_t port = 0;
  for (char c : value.substr(colon + 1)) {
    if (c < '0' || c > '9' || port > 65535) return false;
    port = port * 10 + static_cast<uint32_t>(c - '0');
  }
  if (port == 0 || port > 65535) return false;
  return parseIpAddress(std::string(ip), port, out);
}

}  // namespace

std::shared_ptr<Host> Cluster::chooseOriginalDst(const LbContext& context) {
  const config::ClusterConfig& c = *config_;
  sockaddr_storage dst;
  bool found = false;
  // As Envoy: the header when it is enabled and holds an address, else the
  // connection's original destination; none (a connection that was not
  // redirected) gives no host, a 503 with UH.
  if (c.use_http_header && context.headers) {
    std::optional<std::string_view> value = context.headers->get(c.http_header_name);
    found = value && parseHostPort(*value, dst);
  }
  if (!found && context.original_dst) {
    if (!copyIpAddress(context.original_dst, dst)) return nullptr;
    found = true;
  }
  if (!found) return nullptr;
  if (c.upstream_port_override != 0) {
    uint16_t port = htons(static_cast<uint16_t>(c.upstream_port_override));
    if (dst.ss_family == AF_INET) {
      reinterpret_cast<sockaddr_in&>(dst).sin_port = port;
    } else {
      reinterpret_cast<sockaddr_in6&>(dst).sin6_port = port;
    }
  }
  // A linear search: a sidecar's worker sees a few destinations at a time,
  // and cleanup_interval keeps the list to those in use.
  for (auto& h : hosts_) {
    if (sameAddress(*reinterpret_cast<const sockaddr_storage*>(h->socketAddress()), dst)) {
      h->chosen = true;
      return h;
    }
  }
  auto host = std::make_shared<Host>(*this, dst, 1);
  host->chosen = true;
  hosts_.push_back(host);
  countOriginalDst(OriginalDstHosts::instance().add(name(), host->address()));
  if (cleanup_timer_ == nullptr) {
    cleanup_timer_ = new uv_timer_t;
    uv_timer_init(worker_.loop(), cleanup_timer_);
    cleanup_timer_->data = this;
    auto ms = static_cast<uint64_t>(c.cleanup_interval.count());
    uv_timer_start(
        cleanup_timer_, [](uv_timer_t* t) { static_cast<Cluster*>(t->data)->sweepOriginalDst(); },
        ms, ms);
  }
  return host;
}

void Cluster::sweepOriginalDst() {
  for (size_t i = hosts_.size(); i-- > 0;) {
    Host& h = *hosts_[i];
    if (h.chosen || h.activeRequests() > 0) {
      h.chosen = false;
    } else {
      removeOriginalDst(i);
    }
  }
  if (hosts_.empty()) closeCleanupTimer();
}

void Cluster::removeOriginalDst(size_t i) {
  std::shared_ptr<Host> h = std::move(hosts_[i]);
  hosts_.erase(hosts_.begin() + static_cast<std::ptrdiff_t>(i));
  h->retire();  // Idle connections close; busy ones finish their requests.
  countOriginalDst(OriginalDstHosts::instance().remove(name(), h->address()));
}

void Cluster::countOriginalDst(int delta) {
  // Each worker's gauges hold its share: their sum over workers (what
  // /stats shows) is the number of addresses any worker holds.
  stats_.membership_total.add(delta);
  stats_.membership_healthy.add(delta);
}

void Cluster::closeCleanupTimer() {
  if (cleanup_timer_ == nullptr) return;
  uv_close(reinterpret_cast<uv_handle_t*>(cleanup_timer_),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  cleanup_timer_ = nullptr;
}

// ---- OriginalDstHosts

OriginalDstHosts& OriginalDstHosts::instance() {
  static auto* hosts = new OriginalDstHosts;
  return *hosts;
}

int OriginalDstHosts::add(const std::string& cluster, const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  return ++hosts_[cluster][address] == 1 ? 1 : 0;
}

int OriginalDstHosts::remove(const std::string& cluster, const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  auto c = hosts_.find(cluster);
  if (c == hosts_.end()) return 0;
  auto a = c->second.find(address);
  if (a == c->second.end() || --a->second > 0) return 0;
  c->second.erase(a);
  if (c->second.empty()) hosts_.erase(c);
  return -1;
}

std::vector<std::string> OriginalDstHosts::list(const std::string& cluster) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  auto c = hosts_.find(cluster);
  if (c != hosts_.end()) {
    for (const auto& [address, workers] : c->second) out.push_back(address);
  }
  return out;
}

Want Cluster::want(http::Protocol downstream) const {
  using P = config::ClusterConfig::UpstreamProtocol;
  switch (config_->upstream_protocol) {
    case P::kHttp1:
      return Want::kHttp1;
    case P::kHttp2:
      return Want::kHttp2;
    case P::kUseDownstream:
      return downstream == http::Protocol::kHttp2 ? Want::kHttp2 : Want::kHttp1;
    case P::kAuto:
      return Want::kAny;
  }
  return Want::kHttp1;
}

// ---- ClusterManager

ClusterManager::ClusterManager(Worker& worker, const config::ClusterMap& clusters)
    : worker_(worker) {
  for (const auto& [name, cfg] : clusters) {
    clusters_.emplace(name, std::make_unique<Cluster>(worker, cfg));
  }
}

ClusterManager::~ClusterManager() { stopReapTimer(); }

void ClusterManager::update(const config::ClusterMap& next) {
  std::vector<std::string> names;
  for (const auto& [name, c] : clusters_) names.push_back(name);
  for (const auto& [name, cfg] : next) {
    if (clusters_.count(name) == 0) names.push_back(name);
  }
  update(next, names);
}

void ClusterManager::update(const config::ClusterMap& next,
                            const std::vector<std::string>& changed) {
  for (const std::string& name : changed) {
    const auto* cfg = next.get(name);
    auto it = clusters_.find(name);
    if (cfg == nullptr) {
      if (it == clusters_.end()) continue;
      retire(std::move(it->second));
      clusters_.erase(it);
      continue;
    }
    if (it == clusters_.end()) {
      clusters_.emplace(name, std::make_unique<Cluster>(worker_, *cfg));
      continue;
    }
    Cluster& current = *it->second;
    if (&current.config() == cfg->get()) continue;
    if (current.config().definition_hash == (*cfg)->definition_hash &&
        current.config().type == (*cfg)->type &&
        (*cfg)->type != config::ClusterConfig::Type::kStrictDns) {
      // Only the endpoints changed: hosts that stay keep their connections.
      current.setConfig(*cfg);
      continue;
    }
    // Anything else is a new cluster under the old name. Requests already
    // on the old one finish there (make before break).
    retire(std::move(it->second));
    it->second = std::make_unique<Cluster>(worker_, *cfg);
  }
}

void ClusterManager::retire(std::unique_ptr<Cluster> cluster) {
  cluster->retire();
  retired_.push_back(std::move(cluster));
  if (reap_timer_ == nullptr) {
    reap_timer_ = new uv_timer_t;
    uv_timer_init(worker_.loop(), reap_timer_);
    reap_timer_->data = this;
    uv_timer_start(
        reap_timer_, [](uv_timer_t* t) { static_cast<ClusterManager*>(t->data)->reap(); },
        kReapIntervalMs, kReapIntervalMs);
  }
}

// From a timer, never from inside a request's callbacks: a retired cluster
// goes once nothing holds its hosts.
void ClusterManager::reap() {
  std::erase_if(retired_, [](const std::unique_ptr<Cluster>& c) { return !c->inUse(); });
  if (retired_.empty()) stopReapTimer();
}

void ClusterManager::stopReapTimer() {
  if (reap_timer_ == nullptr) return;
  uv_close(reinterpret_cast<uv_handle_t*>(reap_timer_),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  reap_timer_ = nullptr;
}

void Cluster::retireAll() {
  closeCleanupTimer();
  for (auto& h : hosts_) {
    h->retire();
    h->failPending();
    h->closeAll();
  }
}

void ClusterManager::retireAll() {
  for (auto& [name, c] : clusters_) c->retireAll();
  for (auto& c : retired_) c->retireAll();
  stopReapTimer();
}

uint32_t ClusterManager::connections() const {
  uint32_t n = 0;
  for (const auto& [name, c] : clusters_) n += c->connections;
  for (const auto& c : retired_) n += c->connections;
  return n;
}

Cluster* ClusterManager::get(std::string_view name) {
  auto it = clusters_.find(name);
  return it == clusters_.end() ? nullptr : it->second.get();
}

void ClusterManager::setHosts(const std::string& cluster,
                              const std::vector<sockaddr_storage>& addrs) {
  Cluster* c = get(cluster);
  if (!c) return;
  c->setHosts(addrs, {});
}

void ClusterManager::setEjected(const std::string& cluster, const std::string& address,
                                bool ejected) {
  if (Cluster* c = get(cluster)) c->setEjected(address, ejected);
}

void ClusterManager::setHealthCheckFailed(const std::string& cluster, const std::string& address,
                                          bool failed) {
  Cluster* c = get(cluster);
  if (c) c->setHealthCheckFailed(address, failed);
}

void ClusterManager::setHealthCheckDegraded(const std::string& cluster, const std::string& address,
                                            bool degraded) {
  Cluster* c = get(cluster);
  if (c) c->setHealthCheckDegraded(address, degraded);
}

HostRequestCounts ClusterManager::takeRequestCounts(const std::string& cluster) {
  Cluster* c = get(cluster);
  return c ? c->takeRequestCounts() : HostRequestCounts{};
}

}  // namespace skiff::upstream
