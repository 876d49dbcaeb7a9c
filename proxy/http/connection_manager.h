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
#include "proxy/http/connection_manager_stats.h"
#include "proxy/http/filter_chain.h"
#include "proxy/net/connection.h"
#include "proxy/stats/stats.h"
#include "proxy/worker/worker.h"

namespace skiff {

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
  // The listener's stats on this worker (made when the worker installed it).
  static ListenerStats& listenerStats(Worker& worker, const config::ListenerConfig& listener);

  // Makes worker's stats blocks of listener and of its chains' connection
  // managers or TCP proxies, at 0, when the worker takes the listener
  // (Worker::installFilters); connections then find them by the worker's
  // index. Envoy's exist from config load, before any connection.
  static void installOn(Worker& worker, const config::ListenerConfig& listener);

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
  // HTTP/2 graceful drain, first step: the shutdown notice went, and
  // idle_deadline_ counts drain_timeout until the final GOAWAY.
  bool drain_notice_ : 1 = false;
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
