#include "proxy/net/connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cassert>
#include <cerrno>
#include <cstring>

#include "proxy/net/deadline_queue.h"
#include "proxy/net/tls/tls_transport.h"
#include "proxy/worker/worker.h"

namespace skiff {

namespace {
constexpr size_t kMaxIov = 64;
// A chain of several slices up to this size leaves as one copied buffer
// (TcpConnection::trySend).
constexpr size_t kCoalesceBytes = 2048;
}  // namespace

// What a connection needs in one phase of its life only, allocated for that
// phase, so that an open connection carries none of it (the 1 KB-per-idle-
// connection goal): an upstream's connect, until it is connected, or a
// downstream's lingering close (closeAfterFlush with linger_ms), until it is
// closed. The two never overlap.
struct TcpConnection::PhaseState {
  PhaseState(TcpConnection* conn, Deadline::Callback on_deadline) : deadline(on_deadline, conn) {
    req.data = conn;
  }
  uv_connect_t req;        // Connecting.
  Deadline deadline;       // connect_timeout, or the lingering close's timer.
  uint64_t linger_ms = 0;  // Closing: the time the peer gets to read, then to close.
  size_t unwritten = 0;    // Closing, still writing: bytes left when the timer was armed.
  bool flushed = false;    // Closing: every byte is out and the FIN sent.
};

std::string formatAddress(const sockaddr* addr) {
  char ip[INET6_ADDRSTRLEN] = {0};
  if (addr->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
    return std::string(ip) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (addr->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
    return "[" + std::string(ip) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return "unknown";
}

bool parseIpAddress(const std::string& ip, uint32_t port, sockaddr_storage& out) {
  std::memset(&out, 0, sizeof(out));
  auto* in = reinterpret_cast<sockaddr_in*>(&out);
  if (inet_pton(AF_INET, ip.c_str(), &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
    in->sin_port = htons(static_cast<uint16_t>(port));
    return true;
  }
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&out);
  if (inet_pton(AF_INET6, ip.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<uint16_t>(port));
    return true;
  }
  return false;
}

// A pending uv_write and the front bytes of queue_ it carries (which stay in
// queue_ until it completes).
struct TcpConnection::WriteRequest {
  uv_write_t req;  // First: onWriteDone gets &req.
  size_t bytes;
};

TcpConnection::TcpConnection(Worker& worker, Callbacks& callbacks, uint32_t buffer_limit)
    : worker_(worker), callbacks_(callbacks), high_watermark_(buffer_limit) {
  uv_tcp_init(worker_.loop(), &tcp_);
  tcp_.data = this;
}

void TcpConnection::enableTls(std::unique_ptr<tls::TlsTransport> transport) {
  tls_ = std::make_unique<TlsState>();
  tls_->transport = std::move(transport);
}

TcpConnection::~TcpConnection() {
  // Handles must be closed first; the owner deletes us from onClosed().
  assert(state_ == State::kClosed);
}

int TcpConnection::accept(uv_stream_t* server) {
  int rc = uv_accept(server, reinterpret_cast<uv_stream_t*>(&tcp_));
  if (rc != 0) return rc;
  uv_tcp_nodelay(&tcp_, 1);
  sockaddr_storage ss;
  int len = sizeof(ss);
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    peer_ = formatAddress(reinterpret_cast<sockaddr*>(&ss));
  }
  state_ = State::kOpen;
  updateReading();
  return 0;
}

int TcpConnection::connect(const sockaddr* addr, uint64_t timeout_ms) {
  peer_ = formatAddress(addr);
  auto* cs = new PhaseState(this, &TcpConnection::onConnectTimeout);
  int rc = uv_tcp_connect(&cs->req, &tcp_, addr, onConnectDone);
  if (rc != 0) {
    delete cs;
    return rc;
  }
  phase_ = cs;
  state_ = State::kConnecting;
  if (timeout_ms > 0) worker_.deadlines().arm(cs->deadline, timeout_ms);
  return 0;
}

// The connect is over (its callback is running, the request's last use):
// the state is freed, so a pooled upstream connection does not carry it.
void TcpConnection::releaseConnectState() {
  delete phase_;
  phase_ = nullptr;
}

void TcpConnection::onConnectDone(uv_connect_t* req, int status) {
  // Cancelled: the connection is closing and close() took the state over.
  if (status == UV_ECANCELED) return;
  auto* self = static_cast<TcpConnection*>(req->data);
  if (self->closing()) return;
  self->releaseConnectState();
  if (status != 0) {
    self->close(CloseReason::kConnectFailure);
    return;
  }
  uv_tcp_nodelay(&self->tcp_, 1);
  self->state_ = State::kOpen;
  self->updateReading();
  if (self->tls_) {
    self->tls_->transport->startHandshake();
    self->takeTlsOutput();
  }
  self->callbacks_.onConnected();
  if ((!self->queue_.empty() || self->shutdown_after_flush_) && !self->closing()) self->flush();
}

void TcpConnection::onConnectTimeout(void* conn) {
  auto* self = static_cast<TcpConnection*>(conn);
  if (self->state_ == State::kConnecting) self->close(CloseReason::kConnectTimeout);
}

void TcpConnection::onAlloc(uv_handle_t*, size_t, uv_buf_t* buf) {
  // The worker's shared slab tail: the connection keeps no buffer of its own.
  std::span<char> span = ReadBuffer().prepare();
  *buf = uv_buf_init(span.data(), static_cast<unsigned>(span.size()));
}

void TcpConnection::onReadCb(uv_stream_t* s, ssize_t nread, const uv_buf_t*) {
  auto* self = static_cast<TcpConnection*>(s->data);
  if (nread > 0) {
    ReadBuffer().commit(static_cast<size_t>(nread), self->input_);
    self->deliver();
  } else if (nread == UV_EOF) {
    self->eof_ = true;
    self->updateReading();
    self->callbacks_.onEof();
  } else if (nread < 0) {
    self->close(CloseReason::kRemote);
  }
}

// Hands read bytes to the owner: as they are, or decrypted under TLS.
void TcpConnection::deliver() {
  if (!tls_) {
    callbacks_.onRead(input_);
    return;
  }
  tls::TlsTransport& t = *tls_->transport;
  Status s = t.onRead(input_, tls_->plaintext);
  takeTlsOutput();  // Handshake records, alerts, tickets, held application data.
  if (!s) {
    // The alert, if any, leaves first; nothing more is read.
    ++read_disable_;
    updateReading();
    closeAfterFlush(CloseReason::kTlsError);
    return;
  }
  if (t.handshakeComplete() && !tls_->handshake_reported) {
    tls_->handshake_reported = true;
    callbacks_.onTlsHandshakeDone();
    if (closing()) return;
  }
  if (!tls_->plaintext.empty()) callbacks_.onRead(tls_->plaintext);
  if (t.peerClosed() && !closing()) {
    eof_ = true;
    updateReading();
    callbacks_.onEof();
  }
}

void TcpConnection::takeTlsOutput() {
  if (!tls_->transport->hasOutput()) return;
  BufferChain out;
  tls_->transport->takeOutput(out);
  queue_.move(out);
  scheduleFlush();
}

// Queued bytes leave before the loop next polls (Worker::onPrepare), unless
// a uv_write is already carrying earlier ones; its callback flushes the rest.
void TcpConnection::scheduleFlush() {
  if (flush_scheduled_ || write_req_) return;
  flush_scheduled_ = true;
  worker_.scheduleFlush(this);
}

void TcpConnection::updateReading() {
  // A lingering close reads (and drops) whatever the owner asked for.
  bool want = state_ == State::kOpen && (read_disable_ == 0 || lingering_) && !eof_;
  if (want == reading_) return;
  reading_ = want;
  auto* stream = reinterpret_cast<uv_stream_t*>(&tcp_);
  if (want) {
    uv_read_start(stream, onAlloc, lingering_ ? onLingerRead : onReadCb);
  } else {
    uv_read_stop(stream);
  }
}

void TcpConnection::readDisable(bool disable) {
  if (disable) {
    ++read_disable_;
  } else if (read_disable_ > 0) {
    --read_disable_;
  }
  updateReading();
}

void TcpConnection::write(BufferChain& data) {
  if (closing() || shutdown_after_flush_) {
    data.clear();
    return;
  }
  if (tls_) {
    // Encrypts into queue_ (held inside the transport until the handshake
    // completes).
    Status s = tls_->transport->write(data, queue_);
    if (!s) {
      takeTlsOutput();
      closeAfterFlush(CloseReason::kTlsError);
      return;
    }
  } else {
    queue_.move(data);
  }
  scheduleFlush();
  checkWatermarks();
}

void TcpConnection::flush() {
  flush_scheduled_ = false;
  if (state_ != State::kOpen || write_req_) return;
  if (!queue_.empty()) {
    struct iovec iov[kMaxIov];
    size_t n = queue_.iovecs(iov, kMaxIov);
    // uv_buf_t is laid out as struct iovec on Unix.
    auto* bufs = reinterpret_cast<uv_buf_t*>(iov);
    auto* stream = reinterpret_cast<uv_stream_t*>(&tcp_);
    ssize_t written = trySend(iov, n);
    if (written < 0) {
      close(CloseReason::kRemote);
      return;
    }
    queue_.drain(static_cast<size_t>(written));
    if (!queue_.empty()) {
      // The kernel took part: hand the rest to uv_write, which waits for
      // POLLOUT. The slices stay in queue_ until it completes.
      n = queue_.iovecs(iov, kMaxIov);
      write_req_ = new WriteRequest;
      write_req_->req.data = this;
      write_req_->bytes = 0;
      for (size_t i = 0; i < n; ++i) write_req_->bytes += iov[i].iov_len;
      int rc = uv_write(&write_req_->req, stream, bufs, static_cast<unsigned>(n), onWriteDone);
      if (rc != 0) {
        delete write_req_;
        write_req_ = nullptr;
        close(CloseReason::kRemote);
        return;
      }
    }
  }
  // Also with the queue empty: a uv_write that carried all of it has just
  // completed (onWriteDone), and a producer paused at the high-water mark
  // resumes only when it hears that the queue fell under the low one.
  checkWatermarks();
  if (closing()) return;  // The callback closed it.
  if (queue_.empty() && close_after_flush_) {
    onFlushedForClose();
    return;
  }
  if (queue_.empty() && shutdown_after_flush_) shutdownNow();
}

// Everything queued before closeAfterFlush() has been written.
void TcpConnection::onFlushedForClose() {
  if (!lingering_ || eof_) {
    close(flush_close_reason_);
    return;
  }
  if (phase_->flushed) return;
  phase_->flushed = true;
  // Our side is done (FIN); the peer's close, or linger_ms from now, ends it.
  shutdown_after_flush_ = true;  // Later writes are dropped.
  shutdownNow();
  worker_.deadlines().arm(phase_->deadline, phase_->linger_ms);
}

// Bytes queued that the kernel has not taken yet: those still in queue_, and
// those of a pending uv_write that libuv has not written yet.
size_t TcpConnection::unwrittenBytes() const {
  return queue_.length() - (write_req_ ? write_req_->bytes : 0) +
         uv_stream_get_write_queue_size(reinterpret_cast<const uv_stream_t*>(&tcp_));
}

void TcpConnection::onLingerRead(uv_stream_t* s, ssize_t nread, const uv_buf_t*) {
  auto* self = static_cast<TcpConnection*>(s->data);
  if (nread > 0) {
    // Dropped: the rest of a request that was answered already.
    ReadBuffer().commit(static_cast<size_t>(nread), self->input_);
    self->input_.clear();
  } else if (nread == UV_EOF) {
    // The peer closed its side: once our bytes are out, nothing is left to do.
    self->eof_ = true;
    self->updateReading();
    if (self->queue_.empty() && !self->write_req_) self->close(self->flush_close_reason_);
  } else if (nread < 0) {
    self->close(CloseReason::kRemote);
  }
}

// The linger time passed: after the FIN with no close from the peer, or
// while the answer was still being written with no byte taken by the peer
// since the timer was armed. A peer that reads, however slowly, has the
// timer restarted (as Envoy's delayed_close_timeout does on write progress);
// progress is looked at here rather than on every write, so a peer that
// stops reading is closed between one and two linger times after it read
// last, at no cost to the write path.
void TcpConnection::onLingerTimeout(void* conn) {
  auto* self = static_cast<TcpConnection*>(conn);
  PhaseState& phase = *self->phase_;
  if (!phase.flushed) {
    size_t left = self->unwrittenBytes();
    if (left < phase.unwritten) {
      phase.unwritten = left;
      self->worker_.deadlines().arm(phase.deadline, phase.linger_ms);
      return;
    }
  }
  self->close(self->flush_close_reason_);
}

// What uv_try_write does (flush() calls it only when no uv_write is pending,
// as uv_try_write requires), with syscalls that cost the kernel less:
// - send/sendmsg go straight to the socket; write/writev pass through the VFS
//   layer first.
// - A short chain (a response head and a small body, a frame header and its
//   payload) is copied into one stack buffer and leaves with one send(), not
//   a writev(): the copy costs less than the kernel's work per iovec.
// `bench/probe.sh send-cost` (a 200 B head plus a body, sent and read back on
// loopback; best of 15 rounds, two runs): 64 B body, writev 3,034 / 2,816 ns,
// copy + send 2,937 / 2,705; 2 KiB body 2,885 / 2,961 against 2,764 / 2,854;
// a 16 KiB body is cheaper as two iovecs (3,517 against 3,919 copied); the
// head alone, write 2,974 / 2,737 against send 2,938 / 2,671.
// Returns the bytes the kernel took (0 when the socket is full), or -1 when
// the connection is broken.
ssize_t TcpConnection::trySend(const struct iovec* iov, size_t n) {
  uv_os_fd_t fd;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(&tcp_), &fd) != 0) return -1;
  ssize_t rc;
  if (n == 1) {
    do {
      rc = ::send(fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
    } while (rc < 0 && errno == EINTR);
  } else {
    size_t total = 0;
    for (size_t i = 0; i < n && total <= kCoalesceBytes; ++i) total += iov[i].iov_len;
    if (total <= kCoalesceBytes) {
      // Copies the chain's bytes once, into a hot stack buffer (see above).
      char joined[kCoalesceBytes];
      size_t off = 0;
      for (size_t i = 0; i < n; ++i) {
        std::memcpy(joined + off, iov[i].iov_base, iov[i].iov_len);
        off += iov[i].iov_len;
      }
      do {
        rc = ::send(fd, joined, total, MSG_NOSIGNAL);
      } while (rc < 0 && errno == EINTR);
    } else {
      struct msghdr msg = {};
      msg.msg_iov = const_cast<struct iovec*>(iov);
      msg.msg_iovlen = n;
      do {
        rc = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
      } while (rc < 0 && errno == EINTR);
    }
  }
  if (rc >= 0) return rc;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) return 0;
  return -1;
}

void TcpConnection::onWriteDone(uv_write_t* req, int status) {
  auto* self = static_cast<TcpConnection*>(req->data);
  auto* w = reinterpret_cast<WriteRequest*>(req);
  size_t done = w->bytes;
  delete w;
  self->write_req_ = nullptr;
  if (status == UV_ECANCELED || self->closing()) return;
  if (status < 0) {
    self->close(CloseReason::kRemote);
    return;
  }
  self->queue_.drain(done);
  self->flush();
}

void TcpConnection::checkWatermarks() {
  size_t q = queue_.length();
  if (!above_high_ && q > high_watermark_) {
    above_high_ = true;
    callbacks_.onAboveWriteBufferHighWatermark();
  } else if (above_high_ && q < high_watermark_ / 2) {
    above_high_ = false;
    callbacks_.onBelowWriteBufferLowWatermark();
  }
}

void TcpConnection::closeAfterFlush(CloseReason reason, uint64_t linger_ms) {
  if (closing() || close_after_flush_) return;
  if (tls_ && reason == CloseReason::kLocal && tls_->transport->handshakeComplete()) {
    // A graceful TLS close says so (close_notify), so the peer can tell the
    // end of the data from a truncation.
    tls_->transport->shutdown(queue_);
  }
  close_after_flush_ = true;
  flush_close_reason_ = reason;
  if (linger_ms > 0 && state_ == State::kOpen) {
    phase_ = new PhaseState(this, &TcpConnection::onLingerTimeout);
    phase_->linger_ms = linger_ms;
    if (!eof_) {
      lingering_ = true;
      // From here on reads go to onLingerRead.
      if (reading_) {
        uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
        reading_ = false;
      }
      updateReading();
    }
  }
  if (queue_.empty() && !write_req_) {
    onFlushedForClose();
  } else {
    // The close_notify just queued (or bytes written earlier) must leave even
    // when nothing else on this connection asks for a flush: an idle
    // connection closed by a drain.
    scheduleFlush();
    if (phase_) {
      // The wait for the peer to read the rest is bounded too (a client that
      // never reads would otherwise hold the connection and its queue for
      // good): linger_ms with no progress closes it (onLingerTimeout).
      phase_->unwritten = unwrittenBytes();
      worker_.deadlines().arm(phase_->deadline, linger_ms);
    }
  }
}

void TcpConnection::shutdownAfterFlush() {
  if (closing() || shutdown_after_flush_) return;
  shutdown_after_flush_ = true;
  if (tls_ && tls_->transport->handshakeComplete()) {
    // The TLS end of data first, so the peer can tell it from a truncation.
    tls_->transport->shutdown(queue_);
  }
  if (state_ != State::kOpen) return;  // Still connecting: onConnectDone flushes.
  if (queue_.empty() && !write_req_) {
    shutdownNow();
  } else {
    scheduleFlush();
  }
}

void TcpConnection::shutdownNow() {
  if (shutdown_sent_) return;
  shutdown_sent_ = true;
  // libuv runs the shutdown once pending writes are done; a close before
  // then cancels it (the callback still runs, with UV_ECANCELED).
  auto* req = new uv_shutdown_t;
  if (uv_shutdown(req, reinterpret_cast<uv_stream_t*>(&tcp_), onShutdownDone) != 0) delete req;
}

void TcpConnection::onShutdownDone(uv_shutdown_t* req, int) { delete req; }

void TcpConnection::close(CloseReason reason) {
  if (closing()) return;
  state_ = State::kClosing;
  close_reason_ = reason;
  if (flush_scheduled_) {
    worker_.cancelFlush(this);
    flush_scheduled_ = false;
  }
  pending_handles_ = 1;
  // Still connecting: closing the socket cancels the connect request, whose
  // state is freed once the socket is closed (finishClose).
  // Lingering: its deadline stops too. The state goes with the socket.
  if (phase_) phase_->deadline.cancel();
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), onCloseDone);
}

void TcpConnection::onCloseDone(uv_handle_t* h) {
  auto* self = static_cast<TcpConnection*>(h->data);
  if (--self->pending_handles_ == 0) self->finishClose();
}

void TcpConnection::finishClose() {
  state_ = State::kClosed;
  delete phase_;
  phase_ = nullptr;
  queue_.clear();
  input_.clear();
  if (tls_) tls_->plaintext.clear();
  callbacks_.onClosed(close_reason_);
}

}  // namespace skiff
