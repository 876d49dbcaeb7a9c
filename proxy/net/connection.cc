#include "proxy/net/connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/syscall.h>
#include <unistd.h>

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
// Reads per readable event while each one fills the buffer it was given:
// libuv's bound (uv__read), so that one busy peer cannot starve the others.
constexpr int kMaxReadsPerEvent = 32;

// The socket calls made per request go through syscall(2), not glibc's
// recv(), send() and sendmsg(): those are thread cancellation points, and
// each call pays for turning asynchronous cancellation on and off around the
// syscall, which skiff (no pthread_cancel) never needs. bench/probe.sh
// instr: a glibc recv() or send() costs 59 instructions in user space,
// syscall() 11 (14,546 -> 14,394 per proxied request, four calls each).
ssize_t sysRecv(int fd, void* buf, size_t len) {
  return syscall(SYS_recvfrom, fd, buf, len, 0, nullptr, nullptr);
}
ssize_t sysSend(int fd, const void* buf, size_t len) {
  return syscall(SYS_sendto, fd, buf, len, MSG_NOSIGNAL, nullptr, 0);
}
ssize_t sysSendmsg(int fd, const msghdr* msg) {
  return syscall(SYS_sendmsg, fd, msg, MSG_NOSIGNAL);
}

void setNoDelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}
}  // namespace

// What a connection needs in one phase of its life only, allocated for that
// phase, so that an open connection carries none of it (the 1 KB-per-idle-
// connection goal): an upstream's connect, until it is connected, or a
// downstream's lingering close (closeAfterFlush with linger_ms), until it is
// closed. The two never overlap.
struct TcpConnection::PhaseState {
  PhaseState(TcpConnection* conn, Deadline::Callback on_deadline) : deadline(on_deadline, conn) {}
  Deadline deadline;       // connect_timeout, or the lingering close's timer.
  uint64_t linger_ms = 0;  // Closing: the time the peer gets to read, then to close.
  size_t unwritten = 0;    // Closing, still writing: bytes left when the timer was armed.
  // Connecting: connect() failed at once (a refused loopback connect does).
  // It is reported from the poll callback, as libuv reports it, so that
  // connect() returning 0 always means onConnected() or onClosed() follows.
  int connect_error = 0;
  bool connect_error_delayed = false;  // ... or the socket reported it later (SO_ERROR).
  bool flushed = false;                // Closing: every byte is out and the FIN sent.
};

namespace {
// The failure reason of the connection being closed, valid during its
// onClosed(kConnectFailure) only: per worker, since onClosed runs there.
thread_local std::string_view t_connect_failure_reason;
}  // namespace

std::string_view TcpConnection::connectFailureReason() { return t_connect_failure_reason; }

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

std::string TcpConnection::localAddress() const {
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (fd_ < 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "";
  return formatAddress(reinterpret_cast<sockaddr*>(&ss));
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

bool copyIpAddress(const sockaddr* addr, sockaddr_storage& out) {
  std::memset(&out, 0, sizeof(out));
  if (addr->sa_family == AF_INET) {
    std::memcpy(&out, addr, sizeof(sockaddr_in));
  } else if (addr->sa_family == AF_INET6) {
    std::memcpy(&out, addr, sizeof(sockaddr_in6));
  } else {
    return false;
  }
  return true;
}

bool sameAddress(const sockaddr_storage& a, const sockaddr_storage& b, bool compare_ip) {
  if (a.ss_family != b.ss_family) return false;
  if (a.ss_family == AF_INET) {
    const auto& x = reinterpret_cast<const sockaddr_in&>(a);
    const auto& y = reinterpret_cast<const sockaddr_in&>(b);
    return x.sin_port == y.sin_port && (!compare_ip || x.sin_addr.s_addr == y.sin_addr.s_addr);
  }
  const auto& x = reinterpret_cast<const sockaddr_in6&>(a);
  const auto& y = reinterpret_cast<const sockaddr_in6&>(b);
  return x.sin6_port == y.sin6_port &&
         (!compare_ip || std::memcmp(&x.sin6_addr, &y.sin6_addr, sizeof(in6_addr)) == 0);
}

TcpConnection::TcpConnection(Worker& worker, Callbacks& callbacks, uint32_t buffer_limit)
    : worker_(worker), callbacks_(callbacks), high_watermark_(buffer_limit) {}

void TcpConnection::enableTls(std::unique_ptr<tls::TlsTransport> transport) {
  tls_ = std::make_unique<TlsState>();
  tls_->transport = std::move(transport);
}

TcpConnection::~TcpConnection() {
  // Handles must be closed first; the owner deletes us from onClosed().
  assert(state_ == State::kClosed);
}

// Watches fd with poll_; fd is ours from here on (closed on failure too).
int TcpConnection::openPoll(int fd) {
  int rc = uv_poll_init_socket(worker_.loop(), &poll_, fd);
  if (rc != 0) {
    ::close(fd);
    return rc;
  }
  poll_.data = this;
  fd_ = fd;
  return 0;
}

int TcpConnection::accept(int fd, const sockaddr* peer) {
  int rc = openPoll(fd);
  if (rc != 0) return rc;
  // TCP_NODELAY is set already: Linux copies it from the listening socket
  // (ListeningSocket::listen), which saves a setsockopt per connection.
  peer_ = formatAddress(peer);
  state_ = State::kOpen;
  updateEvents();
  return 0;
}

int TcpConnection::connect(const sockaddr* addr, uint64_t timeout_ms,
                           const sockaddr_storage* source, bool freebind) {
  peer_ = formatAddress(addr);
  int fd = ::socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return uv_translate_sys_error(errno);
  int rc = openPoll(fd);
  if (rc != 0) return rc;
  socklen_t len = addr->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (source != nullptr) {
    // A source of the other family fails here, as it does in Envoy.
    int one = 1;
    if (freebind) {
      const int level = addr->sa_family == AF_INET6 ? SOL_IPV6 : SOL_IP;
      const int option = addr->sa_family == AF_INET6 ? IPV6_FREEBIND : IP_FREEBIND;
      ::setsockopt(fd_, level, option, &one, sizeof(one));
    }
    // Many connections from one source address to the same upstream need
    // their ports reused across destinations (Envoy sets this too).
    ::setsockopt(fd_, SOL_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    const socklen_t source_len =
        source->ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    if (::bind(fd_, reinterpret_cast<const sockaddr*>(source), source_len) != 0) {
      return uv_translate_sys_error(errno);
    }
  }
  int connect_error = 0;
  if (::connect(fd_, addr, len) != 0 && errno != EINPROGRESS) {
    // As libuv: a refusal is reported later, any other error now.
    if (errno != ECONNREFUSED) return uv_translate_sys_error(errno);
    connect_error = errno;
  }
  phase_ = new PhaseState(this, &TcpConnection::onConnectTimeout);
  phase_->connect_error = connect_error;
  state_ = State::kConnecting;
  // Writable once connected, or with an error; a refused socket reports
  // POLLHUP, which libuv passes on as writable.
  updateEvents();
  if (timeout_ms > 0) worker_.deadlines().arm(phase_->deadline, timeout_ms);
  return 0;
}

// The socket became writable while connecting: the connect is over.
void TcpConnection::onConnectDone() {
  int err = phase_->connect_error;
  if (err == 0) {
    socklen_t len = sizeof(err);
    if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err == EINPROGRESS) return;  // Not over yet (libuv checks this too).
    phase_->connect_error = err;
    phase_->connect_error_delayed = true;
  }
  if (err != 0) {
    close(CloseReason::kConnectFailure);  // finishClose() frees the state, after onClosed().
    return;
  }
  // The state is freed, so a pooled upstream connection does not carry it.
  delete phase_;
  phase_ = nullptr;
  setNoDelay(fd_);
  state_ = State::kOpen;
  updateEvents();
  if (tls_) {
    tls_->transport->startHandshake();
    takeTlsOutput();
  }
  callbacks_.onConnected();
  if ((!queue_.empty() || shutdown_after_flush_) && !closing()) flush();
}

void TcpConnection::onConnectTimeout(void* conn) {
  auto* self = static_cast<TcpConnection*>(conn);
  if (self->state_ == State::kConnecting) self->close(CloseReason::kConnectTimeout);
}

void TcpConnection::onPoll(uv_poll_t* h, int status, int events) {
  auto* self = static_cast<TcpConnection*>(h->data);
  if (status < 0) [[unlikely]] {
    self->onPollError();
    return;
  }
  if (self->state_ != State::kOpen) [[unlikely]] {
    if (self->state_ == State::kConnecting) self->onConnectDone();
    return;
  }
  if ((events & UV_WRITABLE) && self->write_blocked_) {
    self->flush();
    if (self->state_ != State::kOpen) return;
  }
  if (events & UV_READABLE) {
    if (self->wantsRead()) {
      self->onReadable();
    } else {
      // Bytes arrived while readDisable() is in force: the socket stops
      // being watched for them now (see updateEvents).
      self->updateEvents(/*lazy_read_stop=*/false);
    }
  }
}

// POLLERR: libuv has stopped the handle. The read or send reports the error
// (a read gets the bytes that came before it first), as they did on a libuv
// stream; a connect in progress reads it with SO_ERROR.
void TcpConnection::onPollError() {
  poll_events_ = 0;
  if (state_ == State::kConnecting) {
    onConnectDone();
    return;
  }
  if (state_ != State::kOpen) return;
  if (write_blocked_) {
    flush();
    if (state_ != State::kOpen) return;
  }
  if (wantsRead()) {
    onReadable();
    if (state_ != State::kOpen) return;
  }
  updateEvents(/*lazy_read_stop=*/false);  // What is still waited for.
}

// Reads into the worker's shared slab tail (the connection keeps no buffer
// of its own) with recv(), which costs the kernel less than read() (no VFS
// layer: bench/results/probes.md). Reads again only while a read filled the
// space it was given, as libuv did. Called when wantsRead().
void TcpConnection::onReadable() {
  for (int i = 0; i < kMaxReadsPerEvent; ++i) {
    std::span<char> span = ReadBuffer().prepare();
    ssize_t n;
    do {
      n = sysRecv(fd_, span.data(), span.size());
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
      ReadBuffer().commit(static_cast<size_t>(n), input_);
      if (lingering_) {
        // Dropped: the rest of a request that was answered already.
        input_.clear();
      } else {
        deliver();
      }
      if (static_cast<size_t>(n) < span.size() || !wantsRead()) return;
      continue;
    }
    if (n == 0) {
      eof_ = true;
      if (!lingering_) {
        callbacks_.onEof();
      } else if (queue_.empty()) {
        // The peer closed its side: once our bytes are out, nothing is left to do.
        close(flush_close_reason_);
      }
      // The socket stays readable now, so it is no longer watched for that;
      // after the owner's answer, which is often to close it (one epoll_ctl
      // saved).
      updateEvents();
      return;
    }
    // Poll events may be spurious (or the bytes went to an earlier read).
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    close(CloseReason::kRemote);
    return;
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
    updateEvents();
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
    updateEvents();
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
// earlier ones wait for the socket to be writable; onPoll flushes the rest.
void TcpConnection::scheduleFlush() {
  if (flush_scheduled_ || write_blocked_ || closing()) return;
  flush_scheduled_ = true;
  worker_.scheduleFlush(this);
}

bool TcpConnection::wantsRead() const {
  // A lingering close reads (and drops) whatever the owner asked for.
  return state_ == State::kOpen && (read_disable_ == 0 || lingering_) && !eof_;
}

// Starts poll_ with what the connection waits for now. Each change costs two
// epoll_ctl calls (uv_poll_start removes the fd, the next poll adds it), so
// lazy_read_stop keeps a readDisable() from costing any while no byte
// arrives: the socket stays watched until it turns readable unread (onPoll).
void TcpConnection::updateEvents(bool lazy_read_stop) {
  if (fd_ < 0 || closing()) return;
  int want = 0;
  if (wantsRead()) want |= UV_READABLE;
  if (write_blocked_ || state_ == State::kConnecting) want |= UV_WRITABLE;
  if (want == poll_events_) return;
  if (lazy_read_stop && (poll_events_ & ~want) == UV_READABLE && (want & ~poll_events_) == 0 &&
      state_ == State::kOpen && !eof_) {
    return;
  }
  poll_events_ = static_cast<uint8_t>(want);
  uv_poll_start(&poll_, want, onPoll);
}

void TcpConnection::readDisable(bool disable) {
  if (disable) {
    ++read_disable_;
  } else if (read_disable_ > 0) {
    --read_disable_;
  }
  updateEvents();
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

// flush_scheduled_ says exactly whether the worker holds this connection for
// its flush pass: a flush made here and now (onPoll, onConnectDone) leaves it
// set, so that a close() before the pass still cancels the entry. A close
// that left an entry behind would have the pass finish it (below) before its
// socket's close callback did, and its owner hear onClosed twice.
void TcpConnection::onFlushScheduled() {
  flush_scheduled_ = false;
  if (state_ == State::kClosing) {
    // Only a close() without a socket schedules this: see close(). One with a
    // socket cancelled its entry, also from a pass already running
    // (Worker::cancelFlush), and finishes from the close callback.
    finishClose();
    return;
  }
  flush();
}

void TcpConnection::flush() {
  if (state_ != State::kOpen) return;
  if (!queue_.empty()) {
    struct iovec iov[kMaxIov];
    for (;;) {
      size_t n = queue_.iovecs(iov, kMaxIov);
      ssize_t written = trySend(iov, n);
      if (written < 0) {
        close(CloseReason::kRemote);
        return;
      }
      queue_.drain(static_cast<size_t>(written));
      if (queue_.empty() || n < kMaxIov) break;
      // More slices than one send carries: if the kernel took all it was
      // offered, it may take the next ones too.
      size_t offered = 0;
      for (size_t i = 0; i < n; ++i) offered += iov[i].iov_len;
      if (static_cast<size_t>(written) < offered) break;
    }
    // What the kernel did not take waits for the socket to be writable
    // (onPoll flushes again then).
    bool blocked = !queue_.empty();
    if (blocked != write_blocked_) {
      write_blocked_ = blocked;
      updateEvents();
    }
  }
  // Also with the queue empty: the write that emptied it may have been the
  // one onPoll made, and a producer paused at the high-water mark resumes
  // only when it hears that the queue fell under the low one.
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
    size_t left = self->queue_.length();
    if (left < phase.unwritten) {
      phase.unwritten = left;
      self->worker_.deadlines().arm(phase.deadline, phase.linger_ms);
      return;
    }
  }
  self->close(self->flush_close_reason_);
}

// What libuv's uv_try_write does, with syscalls that cost the kernel less:
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
  const int fd = fd_;
  ssize_t rc;
  if (n == 1) {
    do {
      rc = sysSend(fd, iov[0].iov_base, iov[0].iov_len);
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
        rc = sysSend(fd, joined, total);
      } while (rc < 0 && errno == EINTR);
    } else {
      struct msghdr msg = {};
      msg.msg_iov = const_cast<struct iovec*>(iov);
      msg.msg_iovlen = n;
      do {
        rc = sysSendmsg(fd, &msg);
      } while (rc < 0 && errno == EINTR);
    }
  }
  if (rc >= 0) return rc;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) return 0;
  return -1;
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
      lingering_ = true;  // From here on reads are dropped (onReadable).
      updateEvents();
    }
  }
  if (queue_.empty()) {
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
      phase_->unwritten = queue_.length();
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
  if (queue_.empty()) {
    shutdownNow();
  } else {
    scheduleFlush();
  }
}

void TcpConnection::shutdownNow() {
  if (shutdown_sent_) return;
  shutdown_sent_ = true;
  // Called with queue_ empty: the kernel has every byte and sends the FIN
  // after them.
  ::shutdown(fd_, SHUT_WR);
}

void TcpConnection::close(CloseReason reason) {
  if (closing()) return;
  state_ = State::kClosing;
  close_reason_ = reason;
  if (flush_scheduled_) {
    worker_.cancelFlush(this);
    flush_scheduled_ = false;
  }
  // Connecting or lingering: the deadline stops; the state goes with the
  // socket (finishClose).
  if (phase_) phase_->deadline.cancel();
  if (fd_ < 0) {
    // No socket (socket() or uv_poll_init failed): onClosed() is deferred
    // all the same, to the worker's next flush pass.
    flush_scheduled_ = true;
    worker_.scheduleFlush(this);
    return;
  }
  // uv_close stops the poll at once (the fd leaves epoll, and events already
  // collected for it are dropped), so the socket closes now, as a libuv
  // stream's did; onClosed() follows from the close callback.
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_), onCloseDone);
  ::close(fd_);
  fd_ = -1;
}

void TcpConnection::onCloseDone(uv_handle_t* h) {
  static_cast<TcpConnection*>(h->data)->finishClose();
}

void TcpConnection::finishClose() {
  state_ = State::kClosed;
  // Envoy's transport failure reason for a failed connect: "delayed connect
  // error: Connection refused" when the socket reported it, and when
  // connect() itself failed "immediate connect error: Connection
  // refused|remote address:127.0.0.1:8080".
  std::string reason;
  if (close_reason_ == CloseReason::kConnectFailure && phase_ && phase_->connect_error != 0) {
    const bool delayed = phase_->connect_error_delayed;
    reason = std::string(delayed ? "delayed" : "immediate") +
             " connect error: " + std::strerror(phase_->connect_error);
    if (!delayed) reason += "|remote address:" + peer_;
  }
  delete phase_;
  phase_ = nullptr;
  queue_.clear();
  input_.clear();
  if (tls_) tls_->plaintext.clear();
  t_connect_failure_reason = reason;
  callbacks_.onClosed(close_reason_);
  t_connect_failure_reason = {};
}

}  // namespace skiff
