// One downstream connection: the socket, its server codec and the streams
// on it (Envoy's HttpConnectionManager). Each stream (ActiveStream) applies
// the HCM's request rules (x-request-id, x-forwarded-*, 100-continue, route
// lookup) and runs the filter chain. The filter iteration itself lives in
// FilterChain and the forwarding in the router filter, so this stays about
// connections and streams.
#pragma once

#include <uv.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "filters/filter.h"
#include "proxy/config/config.h"
#include "proxy/http/codec.h"
#include "proxy/http/filter_chain.h"
#include "proxy/net/connection.h"
#include "proxy/stats/stats.h"
#include "proxy/worker/worker.h"

namespace skiff {

// Envoy's http.<stat_prefix>.* counters (one block per stat_prefix per worker).
struct HttpConnectionManagerStats {
  HttpConnectionManagerStats(stats::Store& store, const std::string& stat_prefix);
  stats::Counter& downstream_cx_total;
  stats::Gauge& downstream_cx_active;
  stats::Counter& downstream_cx_http1_total;
  stats::Counter& downstream_cx_http2_total;
  stats::Counter& downstream_cx_ssl_total;
  stats::Counter& downstream_cx_protocol_error;
  // Connections drained because the server fails health checks.
  stats::Counter& downstream_cx_drain_close;
  stats::Counter& downstream_rq_total;
  stats::Counter& downstream_rq_http1_total;
  stats::Counter& downstream_rq_http2_total;
  stats::Gauge& downstream_rq_active;
  stats::Counter& downstream_rq_completed;
  stats::Counter& downstream_rq_1xx;
  stats::Counter& downstream_rq_2xx;
  stats::Counter& downstream_rq_3xx;
  stats::Counter& downstream_rq_4xx;
  stats::Counter& downstream_rq_5xx;
  stats::Counter& downstream_rq_rx_reset;
  stats::Counter& downstream_rq_tx_reset;
  stats::Counter& downstream_rq_too_large;
  // Responses that started before the whole request had arrived.
  stats::Counter& downstream_rq_response_before_rq_complete;
  stats::Counter& no_route;
  // Envoy's router statistics: requests the router saw; a route whose
  // cluster the workers do not know; a direct response or redirect route.
  stats::Counter& rq_total;
  stats::Counter& no_cluster;
  stats::Counter& rq_direct_response;
  // Envoy's router declares rq_redirect but counts its redirect routes under
  // rq_direct_response, so this one stays 0 (its /stats shows it all the
  // same); an upstream reset after the downstream response started.
  stats::Counter& rq_redirect;
  stats::Counter& rq_reset_after_downstream_response_started;
  // Upgrades and CONNECTs let through (Envoy counts them when the upgrade is
  // accepted by the configuration, before the upstream answers), and those
  // refused because neither the route nor the connection manager enables them.
  stats::Counter& downstream_cx_upgrades_total;
  stats::Gauge& downstream_cx_upgrades_active;
  stats::Counter& downstream_rq_ws_on_non_ws_route;
};

// Envoy's listener.<address>.* counters, TLS ones included.
struct ListenerStats {
  ListenerStats(stats::Store& store, const std::string& prefix);
  stats::Counter& downstream_cx_total;
  stats::Gauge& downstream_cx_active;
  stats::Counter& no_filter_chain_match;
  stats::Counter& ssl_handshake;
  // Connections the listener filters had not decided on within
  // listener_filters_timeout (closed, or handed on).
  stats::Counter& downstream_pre_cx_timeout;
  stats::Store& store;
  std::string prefix;  // "listener.<address>." for counters made on demand.
};

// The worker is conn_'s, and Deletable comes through DownstreamConnection:
// every pointer and vtable pointer less is 8 bytes less per idle connection.
class HttpConnectionManager : public TcpConnection::Callbacks,
                              public http::CodecOwner,
                              public http::ServerConnectionCallbacks,
                              public Schedulable,
                              public DownstreamConnection {
 public:
  // Serves fd, a connection just accepted from peer, on worker.
  // original_dst: where the client meant to connect when the listener's
  // original_dst filter found it redirected (else null); it is then the
  // connection's local address for everything after the accept.
  // tls: what the listener's tls_inspector found (on a listener with TLS
  // and plaintext chains); nullopt: the listener's only kind.
  // application_protocol: what its http_inspector found on a plaintext
  // connection ("http/1.1", ...; static storage), or "" for none.
  static void accept(Worker& worker, std::shared_ptr<const config::ListenerConfig> listener, int fd,
                     const sockaddr* peer, const sockaddr_storage* original_dst = nullptr,
                     std::optional<bool> tls = std::nullopt,
                     std::string_view application_protocol = {});
  // The listener's stats on this worker (made on its first connection).
  static ListenerStats& listenerStats(Worker& worker, const config::ListenerConfig& listener);

  HttpConnectionManager(Worker& worker, std::shared_ptr<const config::ListenerConfig> listener);
  ~HttpConnectionManager() override;

  Worker& worker() { return conn_.worker(); }
  const config::ListenerConfig& listener() const { return *listener_; }
  // The filter chain's HCM config. Valid once a chain is chosen (at accept,
  // or after the TLS handshake), which is before any stream exists.
  const config::HttpConnectionManagerConfig& config() const { return chain_->http; }
  HttpConnectionManagerStats& stats() { return *stats_; }
  http::Protocol protocol() const { return codec_->protocol(); }
  TcpConnection& connection() { return conn_; }
  // The original destination the listener's original_dst filter restored,
  // or null (no filter, or the connection was not redirected).
  const sockaddr* restoredLocalAddress() const {
    return has_restored_local_ ? conn_.worker().restoredLocalAddress(*this) : nullptr;
  }
  // "ip:port" of this end: the restored one, else the socket's (a
  // getsockname).
  std::string localAddress() const;
  // The connection's addresses, SNI and TLS peer, for filters (RBAC): made
  // on the first call, kept for the connection's life.
  const filters::DownstreamConnectionInfo& connectionInfo();
  http::ServerConnection& codec() { return *codec_; }

  // TcpConnection::Callbacks
  void onRead(BufferChain& data) override;
  void onEof() override;
  void onClosed(TcpConnection::CloseReason reason) override;
  void onAboveWriteBufferHighWatermark() override;
  void onBelowWriteBufferLowWatermark() override;
  void onTlsHandshakeDone() override;
  // http::CodecOwner
  void write(BufferChain& data) override { conn_.write(data); }
  void scheduleDispatch() override;
  void readDisable(bool disable) override { conn_.readDisable(disable); }
  void closeAfterFlush() override;
  void shutdownAfterFlush() override { conn_.shutdownAfterFlush(); }
  // http::ServerConnectionCallbacks
  http::StreamDecoder& newStream(http::ResponseEncoder& encoder) override;
  // Schedulable
  void onScheduled() override;
  // DownstreamConnection
  void drain() override;
  void close() override { conn_.close(); }
  const config::ListenerConfig* listenerConfig() const override { return listener_.get(); }
  const config::FilterChainConfig* filterChain() const override { return chain_; }

  class ActiveStream;
  // A stream ended (both directions done, or reset).
  void removeStream(ActiveStream& stream);
  // A TLS connection's chain, chosen from its ClientHello (on listeners with
  // ListenerConfig::choose_tls_chain_in_hello): the chain's TLS context, or
  // null when no chain takes the connection (the handshake fails).
  std::shared_ptr<const tls::TlsContext> chooseChainInHello(
      const config::ListenerConfig::ConnectionInfo& info);

 private:
  void dispatch(BufferChain& data);
  void logCodecError(const http::CodecError& error);
  // Fills c's connection fields (protocol, addresses, SNI) and writes it to
  // every access log: a stream's line, or a codec error's.
  void writeAccessLogs(access_log::LogContext& c);
  // Picks the filter chain; false when the connection needs no HTTP codec:
  // none takes it (the connection closes), or the chain's TCP proxy took it
  // (filters/tcp_proxy/).
  bool selectChain(const config::ListenerConfig::ConnectionInfo& info) {
    return adoptChain(listener_->selectFilterChain(info));
  }
  // Serves the connection with chain (null: none took it); false as for
  // selectChain.
  bool adoptChain(const config::FilterChainConfig* chain);
  void createCodec(bool http2);
  void countCodecStats();
  void armIdleTimer();
  void armHeadTimer();
  // One timer per connection: idle (no stream) or a request head in progress.
  void startIdleTimer(uint64_t ms);
  void clearIdleTimer();
  void onIdleTimer();
  bool hasStreams() const { return first_stream_ != nullptr; }
  void unlinkStream(ActiveStream& stream);

  // First: these fill the 4 bytes after DownstreamConnection's drain_index_,
  // 8 bytes less per connection.
  bool head_pending_ : 1 = false;  // Bytes of a request head came; no stream yet.
  bool dispatch_scheduled_ : 1 = false;
  bool remote_closed_ : 1 = false;
  bool draining_ : 1 = false;
  // The worker keeps this connection's original destination (original_dst):
  // few connections have one, so the others pay a bit for it, not a pointer.
  bool has_restored_local_ : 1 = false;
  // The chain's network filter is tcp_proxy: codec_ is a TcpProxySession.
  bool tcp_proxy_ : 1 = false;
  std::shared_ptr<const config::ListenerConfig> listener_;  // Captured: a swap never changes us.
  const config::FilterChainConfig* chain_ = nullptr;        // Owned by listener_.
  ListenerStats* listener_stats_;  // Shared by the listener's connections on this worker.
  HttpConnectionManagerStats* stats_ = nullptr;  // Set with chain_.
  TcpConnection conn_;
  std::unique_ptr<http::ServerConnection> codec_;
  // connectionInfo(), once a filter asked; null for most connections.
  std::unique_ptr<filters::DownstreamConnectionInfo> info_;
  // The streams in flight, oldest first. The list is intrusive (a stream
  // holds its own links), so a stream costs no list node; each is owned here
  // until removeStream() or onClosed() hands it to the worker to delete.
  ActiveStream* first_stream_ = nullptr;
  ActiveStream* last_stream_ = nullptr;
  Deadline idle_deadline_;  // Idle or request-head timeout, on the worker's DeadlineQueue.
};

}  // namespace skiff
