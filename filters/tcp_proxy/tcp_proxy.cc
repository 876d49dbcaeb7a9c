#include "filters/tcp_proxy/tcp_proxy.h"

#include <cstring>
#include <ctime>

#include "proxy/worker/worker.h"

namespace skiff::tcp_proxy {

namespace {

// The tunnel codec sends no headers; its encodeHeaders only starts the
// stream. One empty map serves every session of the worker.
const HeaderMap& noHeaders() {
  thread_local const HeaderMap empty{};
  return empty;
}

}  // namespace

TcpProxyStats& statsOn(Worker& worker, const config::TcpProxyConfig& config) {
  return config.stats.install(worker.index(), [&] {
    return std::make_unique<TcpProxyStats>(worker.stats(), config.stat_prefix);
  });
}

TcpProxyStats::TcpProxyStats(stats::Store& s, const std::string& p)
    : downstream_cx_total(s.counter("tcp." + p + ".downstream_cx_total")),
      downstream_cx_no_route(s.counter("tcp." + p + ".downstream_cx_no_route")),
      downstream_cx_tx_bytes_total(s.counter("tcp." + p + ".downstream_cx_tx_bytes_total")),
      downstream_cx_rx_bytes_total(s.counter("tcp." + p + ".downstream_cx_rx_bytes_total")),
      downstream_flow_control_paused_reading_total(
          s.counter("tcp." + p + ".downstream_flow_control_paused_reading_total")),
      downstream_flow_control_resumed_reading_total(
          s.counter("tcp." + p + ".downstream_flow_control_resumed_reading_total")),
      idle_timeout(s.counter("tcp." + p + ".idle_timeout")),
      max_downstream_connection_duration(
          s.counter("tcp." + p + ".max_downstream_connection_duration")) {}

TcpProxySession::TcpProxySession(TcpConnection& downstream, const config::TcpProxyConfig& config,
                                 const sockaddr* original_dst)
    : downstream_(downstream), config_(config), stats_(statsOn(downstream.worker(), config)) {
  if (original_dst != nullptr) {
    std::memcpy(&original_dst_, original_dst,
                original_dst->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in));
    has_original_dst_ = true;
  }
  stats_.downstream_cx_total.inc();
  if (!config.access_logs.empty()) {
    record_ = std::make_unique<access_log::StreamRecord>();
    record_->start_ns = uv_hrtime();
    timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    record_->start_unix_ns = static_cast<int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
  }
}

TcpProxySession::~TcpProxySession() {
  // The owner closed the connection first (onTransportClosed); this is for
  // a session destroyed without it.
  releaseUpstream(false);
}

const std::string* TcpProxySession::pickCluster() {
  const auto& clusters = config_.clusters;
  if (clusters.size() == 1) return &clusters.front().name;
  uint64_t r = downstream_.worker().random() % config_.total_weight;
  for (const auto& c : clusters) {
    if (r < c.weight) return &c.name;
    r -= c.weight;
  }
  return &clusters.back().name;
}

void TcpProxySession::start() {
  Worker& worker = downstream_.worker();
  touch();
  if (config_.idle_timeout.count() > 0) {
    worker.deadlines().arm(idle_deadline_, static_cast<uint64_t>(config_.idle_timeout.count()));
  }
  if (config_.max_downstream_connection_duration.count() > 0) {
    worker.deadlines().arm(
        duration_deadline_,
        static_cast<uint64_t>(config_.max_downstream_connection_duration.count()));
  }
  const std::string& cluster_name = *pickCluster();
  cluster_ = worker.clusterManager().get(cluster_name);
  if (record_) record_->upstream_cluster = cluster_name;
  if (cluster_ == nullptr) {
    stats_.downstream_cx_no_route.inc();
    flag_ = "NC";
    closeNow();
    return;
  }
  // Nothing is read from the downstream until there is somewhere to send it.
  downstream_.readDisable(true);
  connect_read_disable_ = true;
  connect();
}

void TcpProxySession::connect() {
  upstream::LbContext context;
  if (has_original_dst_) context.original_dst = reinterpret_cast<const sockaddr*>(&original_dst_);
  context.downstream_address = downstream_.peerAddress();
  context.attempt = attempts_;
  ++attempts_;
  host_ = cluster_->chooseHost(context);
  if (!host_) {
    cluster_->stats().upstream_cx_none_healthy.inc();
    flag_ = "UH";
    closeNow();
    return;
  }
  if (record_) record_->upstream_host = host_->address();  // host_ outlives the log.
  host_->requestStarted();
  counted_request_ = true;
  waiting_for_pool_ = true;
  // May call onPoolReady / onPoolFailure right away.
  host_->newStream(upstream_, upstream::Want::kTcp);
}

void TcpProxySession::Upstream::onPoolReady(upstream::UpstreamClient& client) {
  TcpProxySession& s = s_;
  s.waiting_for_pool_ = false;
  if (s.closed_) {
    client.release();
    return;
  }
  s.host_->onLocalOrigin(upstream::LocalOrigin::kConnectSuccess);
  s.client_ = &client;
  s.encoder_ = &client.codec().newStream(*this);
  s.encoder_->stream().setCallbacks(this);
  s.encoder_->encodeHeaders(noHeaders(), false);  // Starts the stream; nothing is sent.
  if (s.closed_ || s.encoder_ == nullptr) return;
  if (s.downstream_above_) s.encoder_->stream().readDisable(true);
  if (!s.pending_.empty() || s.downstream_eof_) {
    s.encoder_->encodeData(s.pending_, s.downstream_eof_);
  }
  if (s.connect_read_disable_) {
    s.connect_read_disable_ = false;
    s.downstream_.readDisable(false);
  }
  s.maybeFinish();
}

void TcpProxySession::Upstream::onPoolFailure(upstream::PoolFailure reason, std::string_view) {
  TcpProxySession& s = s_;
  s.waiting_for_pool_ = false;
  if (reason != upstream::PoolFailure::kOverflow) {
    s.host_->onLocalOrigin(upstream::LocalOrigin::kConnectFailed);
  }
  if (s.counted_request_) {
    s.counted_request_ = false;
    s.host_->requestEnded();
  }
  if (s.closed_) return;
  // Envoy's max_connect_attempts: a failed connect is tried again, on a host
  // picked again; an overflow is not.
  if (reason != upstream::PoolFailure::kOverflow && s.attempts_ < s.config_.max_connect_attempts) {
    s.connect();
    return;
  }
  s.flag_ = reason == upstream::PoolFailure::kOverflow ? "UO" : "UF";
  s.closeNow();
}

bool TcpProxySession::dispatch(BufferChain& data, http::CodecError&) {
  if (closed_ || data.empty()) {
    data.clear();
    return true;
  }
  stats_.downstream_cx_rx_bytes_total.inc(data.length());
  if (record_) record_->bytes_received += data.length();
  touch();
  if (encoder_ == nullptr) {
    // Not connected yet (the bytes that came with a TLS handshake, or one
    // read before reading stopped): kept until it is. Slices, no copy.
    pending_.move(data);
    return true;
  }
  encoder_->encodeData(data, false);
  return true;
}

void TcpProxySession::Upstream::decodeData(BufferChain& data, bool end_stream) {
  TcpProxySession& s = s_;
  if (s.closed_) {
    data.clear();
    return;
  }
  if (!data.empty()) {
    s.stats_.downstream_cx_tx_bytes_total.inc(data.length());
    if (s.record_) s.record_->bytes_sent += data.length();
    s.touch();
    s.downstream_.write(data);
  }
  if (!end_stream) return;
  // The upstream's FIN: the downstream gets one after the bytes before it.
  s.upstream_eof_ = true;
  s.downstream_.shutdownAfterFlush();
  s.maybeFinish();
}

bool TcpProxySession::onRemoteEof() {
  if (closed_ || downstream_eof_) return true;
  downstream_eof_ = true;
  if (encoder_ != nullptr) {
    BufferChain none;
    encoder_->encodeData(none, true);  // The upstream gets a FIN after what was sent.
  }
  maybeFinish();
  return true;
}

void TcpProxySession::maybeFinish() {
  if (closed_ || !downstream_eof_ || !upstream_eof_ || encoder_ == nullptr) return;
  // Both FINs went on: the relay is done, and each connection closes once
  // its last bytes are written.
  releaseUpstream(true);
  closed_ = true;
  idle_deadline_.cancel();
  duration_deadline_.cancel();
  downstream_.closeAfterFlush(TcpConnection::CloseReason::kLocal, 0);
}

void TcpProxySession::Upstream::onResetStream(http::ResetReason, std::string_view) {
  TcpProxySession& s = s_;
  // The upstream connection closed (or failed) with a direction still open:
  // the downstream closes after what it was sent, as Envoy's FlushWrite.
  s.host_->onLocalOrigin(upstream::LocalOrigin::kConnectFailed);
  upstream::UpstreamClient* client = s.client_;
  s.client_ = nullptr;
  s.encoder_ = nullptr;
  if (s.counted_request_) {
    s.counted_request_ = false;
    s.host_->requestEnded();
  }
  if (client) client->abandon();
  if (s.closed_) return;
  s.closed_ = true;
  s.idle_deadline_.cancel();
  s.duration_deadline_.cancel();
  s.downstream_.closeAfterFlush(TcpConnection::CloseReason::kLocal, 0);
}

void TcpProxySession::releaseUpstream(bool flush) {
  if (waiting_for_pool_) {
    waiting_for_pool_ = false;
    host_->cancel(upstream_);
  }
  if (client_ != nullptr) {
    upstream::UpstreamClient* client = client_;
    http::RequestEncoder* encoder = encoder_;
    client_ = nullptr;
    encoder_ = nullptr;
    encoder->stream().setCallbacks(nullptr);
    if (flush) {
      // A connection the tunnel codec never reuses: release() closes it
      // once its queue (and any FIN) is written.
      client->release();
    } else {
      encoder->stream().resetStream(http::ResetReason::kLocalReset);
      client->abandon();
    }
  }
  if (counted_request_) {
    counted_request_ = false;
    host_->requestEnded();
  }
}

void TcpProxySession::closeNow() {
  if (closed_) return;
  closed_ = true;
  idle_deadline_.cancel();
  duration_deadline_.cancel();
  releaseUpstream(false);
  pending_.clear();
  downstream_.close(TcpConnection::CloseReason::kLocal);
}

void TcpProxySession::onTransportClosed(http::ResetReason) {
  // The downstream went away: what it sent upstream still goes out, then the
  // upstream connection closes (Envoy's FlushWrite).
  closed_ = true;
  idle_deadline_.cancel();
  duration_deadline_.cancel();
  releaseUpstream(true);
  if (record_) writeAccessLogs();
}

// One line per connection, when the downstream connection has closed.
void TcpProxySession::writeAccessLogs() {
  access_log::LogContext c;
  c.record = record_.get();
  c.end_ns = uv_hrtime();
  c.response_flags = flag_;
  c.downstream_remote_address = downstream_.peerAddress();
  std::string local;  // Lives until the logs have formatted it.
  for (const auto& log : config_.access_logs) {
    if (local.empty() && log->formatter().usesDownstreamLocalAddress()) {
      // The original destination when original_dst restored one, as the
      // connection manager prints it.
      local = has_original_dst_ ? formatAddress(reinterpret_cast<const sockaddr*>(&original_dst_))
                                : downstream_.localAddress();
      c.downstream_local_address = local;
    }
  }
  for (const auto& log : config_.access_logs) log->log(c, downstream_.worker().loop());
  record_.reset();
}

void TcpProxySession::drain() {
  if (!downstream_.worker().draining()) closeNow();
}

// The downstream's write queue is full: stop reading the upstream.
void TcpProxySession::onAboveWriteBufferHighWatermark() {
  if (downstream_above_) return;
  downstream_above_ = true;
  if (encoder_ != nullptr) encoder_->stream().readDisable(true);
}

void TcpProxySession::onBelowWriteBufferLowWatermark() {
  if (!downstream_above_) return;
  downstream_above_ = false;
  if (encoder_ != nullptr) encoder_->stream().readDisable(false);
}

// The upstream's write queue is full: stop reading the downstream.
void TcpProxySession::Upstream::onAboveWriteBufferHighWatermark() {
  TcpProxySession& s = s_;
  if (s.upstream_above_ || s.closed_) return;
  s.upstream_above_ = true;
  s.stats_.downstream_flow_control_paused_reading_total.inc();
  s.downstream_.readDisable(true);
}

void TcpProxySession::Upstream::onBelowWriteBufferLowWatermark() {
  TcpProxySession& s = s_;
  if (!s.upstream_above_ || s.closed_) return;
  s.upstream_above_ = false;
  s.stats_.downstream_flow_control_resumed_reading_total.inc();
  s.downstream_.readDisable(false);
}

void TcpProxySession::onIdleDeadline(void* self) {
  auto& s = *static_cast<TcpProxySession*>(self);
  if (s.closed_) return;
  const uint64_t idle = static_cast<uint64_t>(s.config_.idle_timeout.count());
  const uint64_t now = uv_now(s.downstream_.worker().loop());
  const uint64_t quiet = now - s.last_activity_ms_;
  if (quiet < idle) {
    // Bytes moved since it was armed: it waits for the rest. Arming per read
    // would cost every read a queue operation.
    s.downstream_.worker().deadlines().armComputed(s.idle_deadline_, idle - quiet);
    return;
  }
  s.stats_.idle_timeout.inc();
  s.closeNow();
}

void TcpProxySession::onDurationDeadline(void* self) {
  auto& s = *static_cast<TcpProxySession*>(self);
  if (s.closed_) return;
  s.stats_.max_downstream_connection_duration.inc();
  s.closeNow();
}

}  // namespace skiff::tcp_proxy
