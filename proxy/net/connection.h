// A TCP connection on a worker's loop: reads into slabs, writes slice chains
// with a non-blocking send first and uv_write only for the rest (DESIGN.md:
// syscalls are the budget), and applies watermark backpressure. Used for downstream
// and upstream connections alike. It knows nothing of HTTP.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>

#include "proxy/buffer/buffer.h"

namespace skiff {

namespace tls {
class TlsTransport;
}

class Worker;

class TcpConnection {
 public:
  enum class CloseReason : uint8_t {
    kLocal,
    kRemote,
    kError,
    kConnectFailure,
    kConnectTimeout,
    kTlsError
  };

  class Callbacks {
   public:
    virtual ~Callbacks() = default;
    // New bytes arrived; the callee moves out what it consumes.
    virtual void onRead(BufferChain& data) = 0;
    // The peer half-closed its side (EOF).
    virtual void onEof() = 0;
    // The connection is closed; the owner may destroy it (deferred).
    virtual void onClosed(CloseReason reason) = 0;
    // Upstream only: the connect completed.
    virtual void onConnected() {}
    // TLS only: the handshake completed (ALPN and SNI are known now).
    virtual void onTlsHandshakeDone() {}
    virtual void onAboveWriteBufferHighWatermark() = 0;
    virtual void onBelowWriteBufferLowWatermark() = 0;
  };

  TcpConnection(Worker& worker, Callbacks& callbacks, uint32_t buffer_limit);
  ~TcpConnection();
  TcpConnection(const TcpConnection&) = delete;
  TcpConnection& operator=(const TcpConnection&) = delete;

  // Downstream: accepts a pending connection from server and starts reading.
  int accept(uv_stream_t* server);
  // Upstream: connects to addr; onConnected() or onClosed(kConnectFailure /
  // kConnectTimeout) follows.
  int connect(const sockaddr* addr, uint64_t timeout_ms);
  // Makes the connection TLS: bytes read are decrypted before onRead(), bytes
  // written are encrypted. Set before accept() / connect(). A TLS failure
  // closes the connection with kTlsError; tls() tells why.
  void enableTls(std::unique_ptr<tls::TlsTransport> transport);
  tls::TlsTransport* tls() { return tls_ ? tls_->transport.get() : nullptr; }

  // Queues bytes (moved out of data); they leave before the loop next polls.
  void write(BufferChain& data);
  // Nesting read stop: n disables need n enables.
  void readDisable(bool disable);
  // Closes once every queued byte is written; onClosed() gets reason.
  // linger_ms > 0 (a downstream HTTP connection: Envoy's
  // delayed_close_timeout) closes gracefully: from now on what the peer sends
  // is read and dropped (whatever readDisable says), the write side
  // half-closes (FIN) once the queue is written, and the socket closes when
  // the peer closes its side, or linger_ms after that FIN, whichever comes
  // first. A socket closed with unread input sends RST,
  // and a client still sending a request body then gets "connection reset"
  // instead of the response it was sent. linger_ms also bounds the wait for
  // the queue to be written: a peer that takes no byte of it for linger_ms
  // (to 2 x linger_ms) is closed on, with the rest unsent.
  void closeAfterFlush(CloseReason reason = CloseReason::kLocal, uint64_t linger_ms = 0);
  // Half-closes: once every queued byte is written, sends FIN (after a TLS
  // close_notify) and writes nothing more; reading goes on. A tunnel passes
  // its peer's FIN on this way.
  void shutdownAfterFlush();
  // Closes now, dropping queued bytes.
  void close(CloseReason reason = CloseReason::kLocal);
  bool closing() const { return state_ == State::kClosing || state_ == State::kClosed; }
  bool connected() const { return state_ == State::kOpen; }

  // Called by the worker before it polls: writes queued bytes.
  void flush();

  Worker& worker() const { return worker_; }
  size_t queuedBytes() const { return queue_.length(); }
  const std::string& peerAddress() const { return peer_; }

 private:
  enum class State : uint8_t { kIdle, kConnecting, kOpen, kClosing, kClosed };
  struct PhaseState;
  // TLS connections only.
  struct TlsState {
    std::unique_ptr<tls::TlsTransport> transport;
    BufferChain plaintext;  // Decrypted bytes not yet consumed.
    bool handshake_reported = false;
  };

  static void onAlloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void onReadCb(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void onWriteDone(uv_write_t* req, int status);
  static void onConnectDone(uv_connect_t* req, int status);
  static void onConnectTimeout(void* conn);
  static void onCloseDone(uv_handle_t* h);
  static void onShutdownDone(uv_shutdown_t* req, int status);
  static void onLingerRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void onLingerTimeout(void* conn);
  void onFlushedForClose();
  size_t unwrittenBytes() const;
  void shutdownNow();
  void releaseConnectState();
  void startReading();
  void updateReading();
  void checkWatermarks();
  void finishClose();
  void deliver();
  void takeTlsOutput();
  void scheduleFlush();
  ssize_t trySend(const struct iovec* iov, size_t n);

  // What every connection holds, idle ones included, is kept small (the
  // 1 KB-per-idle-connection goal): what only some need is allocated when
  // they need it.
  Worker& worker_;
  Callbacks& callbacks_;
  uv_tcp_t tcp_;
  struct WriteRequest;
  WriteRequest* write_req_ = nullptr;  // While a uv_write is pending (the kernel took part).
  PhaseState* phase_ =
      nullptr;  // Upstream while connecting; downstream while closing with a linger.
  std::unique_ptr<TlsState> tls_;
  BufferChain input_;  // Bytes as read (ciphertext under TLS).
  BufferChain queue_;  // Bytes not yet accepted by the kernel.
  std::string peer_;
  uint32_t high_watermark_;  // The low one is half of it.
  int read_disable_ = 0;
  uint8_t pending_handles_ = 0;  // Handles whose uv_close callback is still due.
  State state_ = State::kIdle;
  CloseReason close_reason_ = CloseReason::kLocal;
  CloseReason flush_close_reason_ = CloseReason::kLocal;
  bool flush_scheduled_ = false;
  bool reading_ = false;
  bool above_high_ = false;
  // Flags of a connection's end share one byte: with the bytes in flight
  // kept in WriteRequest and the low watermark computed, this object is 400
  // bytes, and HttpConnectionManager a 576-byte malloc chunk, not 592.
  bool close_after_flush_ : 1 = false;
  bool shutdown_after_flush_ : 1 = false;  // shutdownAfterFlush() was called.
  bool shutdown_sent_ : 1 = false;         // uv_shutdown was started.
  bool lingering_ : 1 = false;             // closeAfterFlush with linger_ms: reads are dropped.
  bool eof_ : 1 = false;
};

std::string formatAddress(const sockaddr* addr);
// Parses an IP literal (v4 or v6) and a port into out; false if ip is not one.
bool parseIpAddress(const std::string& ip, uint32_t port, sockaddr_storage& out);

}  // namespace skiff
