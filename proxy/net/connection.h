// A TCP connection on a worker's loop: a socket skiff owns, watched by a
// uv_poll_t. It reads with recv() into slabs, writes slice chains with
// send()/sendmsg() and waits for the socket to be writable only for what the
// kernel did not take (DESIGN.md: syscalls are the budget), and applies
// watermark backpressure. Used for downstream and upstream connections alike.
// It knows nothing of HTTP.
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

  // Downstream: takes over fd, a connected non-blocking socket with
  // TCP_NODELAY (accept4 with SOCK_NONBLOCK from a ListeningSocket), and
  // starts reading. On failure fd is closed and a libuv
  // error is returned; close() then reports the close.
  // peer is its address, as accept4 gave it.
  int accept(int fd, const sockaddr* peer);
  // Upstream: connects to addr (from source, when given: bound first, with
  // IP_FREEBIND when freebind); onConnected() or onClosed(kConnectFailure /
  // kConnectTimeout) follows.
  int connect(const sockaddr* addr, uint64_t timeout_ms, const sockaddr_storage* source = nullptr,
              bool freebind = false);
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

  // Called by the worker's flush pass before it polls, for a connection that
  // asked (scheduleFlush): writes queued bytes.
  void onFlushScheduled();

  Worker& worker() const { return worker_; }
  size_t queuedBytes() const { return queue_.length(); }
  const std::string& peerAddress() const { return peer_; }
  // "ip:port" of this end (a getsockname each call: access logs ask only
  // when a format prints it); empty when the socket has none.
  std::string localAddress() const;
  // Inside Callbacks::onClosed(kConnectFailure): why the connect failed, in
  // Envoy's words ("delayed connect error: Connection refused"); else empty.
  static std::string_view connectFailureReason();

 private:
  enum class State : uint8_t { kIdle, kConnecting, kOpen, kClosing, kClosed };
  struct PhaseState;
  // TLS connections only.
  struct TlsState {
    std::unique_ptr<tls::TlsTransport> transport;
    BufferChain plaintext;  // Decrypted bytes not yet consumed.
    bool handshake_reported = false;
  };

  static void onPoll(uv_poll_t* h, int status, int events);
  static void onConnectTimeout(void* conn);
  static void onCloseDone(uv_handle_t* h);
  static void onLingerTimeout(void* conn);
  int openPoll(int fd);
  void onConnectDone();
  void onPollError();
  void onReadable();
  void onFlushedForClose();
  void shutdownNow();
  bool wantsRead() const;
  void updateEvents(bool lazy_read_stop = true);
  void checkWatermarks();
  void finishClose();
  void deliver();
  void takeTlsOutput();
  void scheduleFlush();
  // Writes what is queued now (the worker's pass, a writable socket, a
  // finished connect).
  void flush();
  ssize_t trySend(const struct iovec* iov, size_t n);

  // What every connection holds, idle ones included, is kept small (the
  // 1 KB-per-idle-connection goal): what only some need is allocated when
  // they need it.
  Worker& worker_;
  Callbacks& callbacks_;
  uv_poll_t poll_;  // Watches fd_ (uv_poll does not own it). Open while fd_ >= 0.
  int fd_ = -1;     // The socket; closed with poll_.
  PhaseState* phase_ =
      nullptr;  // Upstream while connecting; downstream while closing with a linger.
  std::unique_ptr<TlsState> tls_;
  BufferChain input_;  // Bytes as read (ciphertext under TLS).
  BufferChain queue_;  // Bytes not yet accepted by the kernel.
  std::string peer_;
  uint32_t high_watermark_;  // The low one is half of it.
  int read_disable_ = 0;
  State state_ = State::kIdle;
  CloseReason close_reason_ = CloseReason::kLocal;
  CloseReason flush_close_reason_ = CloseReason::kLocal;
  uint8_t poll_events_ = 0;  // What poll_ was last started with (UV_READABLE, UV_WRITABLE).
  bool flush_scheduled_ = false;
  bool above_high_ = false;
  bool write_blocked_ = false;  // The kernel left bytes of queue_: they wait for UV_WRITABLE.
  // Flags of a connection's end share one byte. With a uv_poll_t (160 bytes)
  // instead of a uv_tcp_t (248) and no uv_write in flight to track, this
  // object is 312 bytes, and HttpConnectionManager a 480-byte malloc chunk.
  bool close_after_flush_ : 1 = false;
  bool shutdown_after_flush_ : 1 = false;  // shutdownAfterFlush() was called.
  bool shutdown_sent_ : 1 = false;         // shutdown(SHUT_WR) was called.
  bool lingering_ : 1 = false;             // closeAfterFlush with linger_ms: reads are dropped.
  bool eof_ : 1 = false;
};

std::string formatAddress(const sockaddr* addr);
// Parses an IP literal (v4 or v6) and a port into out; false if ip is not one.
bool parseIpAddress(const std::string& ip, uint32_t port, sockaddr_storage& out);
// Copies an AF_INET or AF_INET6 address into out (zeroed first); false for
// any other family.
bool copyIpAddress(const sockaddr* addr, sockaddr_storage& out);
// Whether a and b have the same family and port and, with compare_ip, the
// same IP. Only those bytes compare: a kernel's sockaddr may carry flow info
// or padding that parseIpAddress's does not.
bool sameAddress(const sockaddr_storage& a, const sockaddr_storage& b, bool compare_ip = true);

}  // namespace skiff
