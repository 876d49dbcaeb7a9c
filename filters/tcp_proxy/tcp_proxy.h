// envoy.filters.network.tcp_proxy: a downstream connection relayed as bytes
// to an upstream connection of a cluster, with no HTTP on either side.
//
// The connection manager picks a connection's filter chain; when the chain's
// network filter is tcp_proxy it makes a TcpProxySession in its codec's place
// (the codec interface already carries what a relay needs: the bytes read,
// the peer's FIN, the transport's close and the write watermarks), so an HTTP
// connection pays nothing for this and the connection manager gains no
// member. The upstream side is the pool's raw TCP connection
// (upstream::Want::kTcp, proxy/upstream/tcp_tunnel_codec.h), the one a
// terminated CONNECT uses: the bytes move as slices both ways.
//
//   downstream socket --dispatch()--> session --encodeData()--> upstream socket
//   downstream socket <--write()----- session <--decodeData()-- upstream socket
//
// As Envoy's TCP proxy: reading from the downstream waits for the upstream
// connection; each side stops reading while the other's write queue is past
// its high watermark; a FIN from one side becomes a FIN to the other once its
// bytes are out, and the connection ends when both directions have; a
// connect failure, no host, or a pool overflow closes the downstream without
// a byte; idle_timeout and max_downstream_connection_duration close both.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "filters/tcp_proxy/tcp_proxy_stats.h"
#include "proxy/access_log/formatter.h"
#include "proxy/config/config.h"
#include "proxy/http/codec.h"
#include "proxy/net/connection.h"
#include "proxy/net/deadline_queue.h"
#include "proxy/stats/stats.h"
#include "proxy/upstream/cluster_manager.h"

namespace skiff::tcp_proxy {

// This worker's stats of config: made when the worker installs the listener
// (HttpConnectionManager::installOn), found by the worker's index after.
TcpProxyStats& statsOn(Worker& worker, const config::TcpProxyConfig& config);

class TcpProxySession final : public http::ServerConnection {
 public:
  // downstream: the connection whose codec this is (its owner keeps both
  // alive together). original_dst: the connection's restored original
  // destination (an ORIGINAL_DST cluster connects there), or null.
  TcpProxySession(TcpConnection& downstream, const config::TcpProxyConfig& config,
                  const sockaddr* original_dst);
  ~TcpProxySession() override;

  // Picks the cluster and asks its pool for a connection; may close the
  // downstream connection (no cluster, no host, overflow).
  void start();
  // The listener drains (updated or removed): the relay closes at once. A
  // worker's shutdown drain leaves it to the end of the drain time.
  void drain();

  // http::Connection: the downstream's events.
  bool dispatch(BufferChain& data, http::CodecError& error) override;
  http::Protocol protocol() const override { return http::Protocol::kHttp11; }
  void goAway() override {}
  void onAboveWriteBufferHighWatermark() override;
  void onBelowWriteBufferLowWatermark() override;
  void onTransportClosed(http::ResetReason reason) override;
  bool onRemoteEof() override;
  size_t activeStreams() const override { return closed_ ? 0 : 1; }

 private:
  // The upstream side's callbacks, apart: their watermark calls have the
  // same names as the downstream's.
  class Upstream final : public upstream::PoolCallbacks,
                         public http::StreamDecoder,
                         public http::StreamCallbacks {
   public:
    explicit Upstream(TcpProxySession& session) : s_(session) {}
    void onPoolReady(upstream::UpstreamClient& client) override;
    void onPoolFailure(upstream::PoolFailure reason, std::string_view transport_failure) override;
    void decode1xxHeaders(HeaderMapPtr) override {}
    void decodeHeaders(HeaderMapPtr, bool) override {}  // The codec's made-up 200.
    void decodeData(BufferChain& data, bool end_stream) override;
    void decodeTrailers(HeaderMapPtr) override {}
    void onResetStream(http::ResetReason reason, std::string_view detail) override;
    void onAboveWriteBufferHighWatermark() override;
    void onBelowWriteBufferLowWatermark() override;

   private:
    TcpProxySession& s_;
  };

  const std::string* pickCluster();
  // Asks host_'s pool for a connection (one connect attempt).
  void connect();
  // Drops the upstream side: flush lets its queued bytes (and FIN) out
  // before its connection closes; else it closes at once.
  void releaseUpstream(bool flush);
  // Closes the downstream (and drops the upstream) now.
  void closeNow();
  // Both directions have ended: the downstream closes once its bytes are out.
  void maybeFinish();
  void writeAccessLogs();
  void touch() { last_activity_ms_ = uv_now(downstream_.worker().loop()); }
  static void onIdleDeadline(void* self);
  static void onDurationDeadline(void* self);

  TcpConnection& downstream_;
  const config::TcpProxyConfig& config_;  // Owned by the listener the connection pins.
  TcpProxyStats& stats_;
  Upstream upstream_{*this};
  sockaddr_storage original_dst_{};
  bool has_original_dst_ = false;
  upstream::Cluster* cluster_ = nullptr;
  std::shared_ptr<upstream::Host> host_;
  upstream::UpstreamClient* client_ = nullptr;  // Lent by the pool while the relay runs.
  http::RequestEncoder* encoder_ = nullptr;     // client_'s stream.
  // access_log: the connection's record (null without a log); flag: its
  // %RESPONSE_FLAGS% (a static string).
  std::unique_ptr<access_log::StreamRecord> record_;
  std::string_view flag_;
  BufferChain pending_;  // The downstream's bytes read before the upstream was ready.
  uint32_t attempts_ = 0;
  uint64_t last_activity_ms_ = 0;
  Deadline idle_deadline_{&TcpProxySession::onIdleDeadline, this};
  Deadline duration_deadline_{&TcpProxySession::onDurationDeadline, this};
  bool waiting_for_pool_ = false;
  bool counted_request_ = false;       // host_->requestStarted() is to be undone.
  bool downstream_eof_ = false;        // The downstream's FIN came (passed upstream when ready).
  bool upstream_eof_ = false;          // The upstream's FIN came (passed downstream).
  bool downstream_above_ = false;      // The downstream's write queue is past its high watermark.
  bool upstream_above_ = false;        // The upstream's write queue is past its high watermark.
  bool connect_read_disable_ = false;  // The downstream is read-disabled until connected.
  bool closed_ = false;                // The relay is over; nothing more is done.
};

}  // namespace skiff::tcp_proxy
