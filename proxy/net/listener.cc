#include "proxy/net/listener.h"

#include <arpa/inet.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "proxy/http/connection_manager.h"
#include "proxy/http/http_inspector.h"
#include "proxy/net/connection.h"
#include "proxy/worker/worker.h"

namespace skiff {

Result<int> bindTcpSocket(const std::string& address, uint32_t port, bool reuse_port) {
  sockaddr_storage ss;
  if (!parseIpAddress(address, port, ss)) {
    return Status(ErrorSource::kConfig, "listener address " + address + " is not an IP address");
  }
  int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status(ErrorSource::kInternal, std::string("socket: ") + std::strerror(errno));
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    int err = errno;
    ::close(fd);
    return Status(ErrorSource::kInternal, std::string("SO_REUSEPORT: ") + std::strerror(err));
  }
  socklen_t len = ss.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    int err = errno;
    ::close(fd);
    return Status(ErrorSource::kConfig, "cannot bind " + address + ":" + std::to_string(port) +
                                            ": " + std::strerror(err));
  }
  return fd;
}

uint32_t boundPort(int fd) {
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

namespace {

bool isWildcard(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET) {
    return reinterpret_cast<const sockaddr_in&>(a).sin_addr.s_addr == htonl(INADDR_ANY);
  }
  return IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6&>(a).sin6_addr);
}

}  // namespace

bool originalDestination(int fd, const sockaddr_storage& bound, sockaddr_storage& out) {
  sockaddr_storage dst;
  std::memset(&dst, 0, sizeof(dst));
  socklen_t len = sizeof(dst);
  // The kernel answers from the connection's conntrack entry: ENOENT when
  // there is none (the connection was never seen by netfilter's NAT).
  int rc = bound.ss_family == AF_INET6
               ? ::getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &len)
               : ::getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &len);
  if (rc != 0 || (dst.ss_family != AF_INET && dst.ss_family != AF_INET6)) return false;
  if (!isWildcard(bound)) {
    if (sameAddress(dst, bound, /*compare_ip=*/true)) return false;
  } else if (sameAddress(dst, bound, /*compare_ip=*/false)) {
    // The listener's own port: redirected only if the IP differs from the
    // one this connection reached, which a wildcard socket does not know.
    sockaddr_storage local;
    std::memset(&local, 0, sizeof(local));
    len = sizeof(local);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0 ||
        sameAddress(dst, local, /*compare_ip=*/true)) {
      return false;
    }
  }
  out = dst;
  return true;
}

namespace {
// Connections accepted per readable event at most; the rest wait for the
// next loop iteration, so that a burst of connections does not hold up the
// bytes of those already open.
constexpr int kAcceptsPerEvent = 64;
// Out of file descriptors (EMFILE, ENFILE) or kernel memory: the socket is not
// watched for this long. Its pending connections stay queued in the kernel
// (up to the backlog) and are accepted once descriptors are free again;
// watching it meanwhile would wake the loop for nothing, without end.
constexpr uint64_t kAcceptPauseMs = 100;
}  // namespace

ListeningSocket::ListeningSocket(Worker& worker, OnAccept on_accept, void* context)
    : worker_(worker),
      on_accept_(on_accept),
      context_(context),
      pause_(&ListeningSocket::onPauseEnd, this) {}

int ListeningSocket::listen(int fd, int backlog) {
  // Accepted sockets inherit TCP_NODELAY from this one on Linux (the
  // listener's TCP state is copied into each), so connections need no
  // setsockopt of their own (connection_test checks the inheritance).
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (::listen(fd, backlog) != 0) {
    int err = errno;
    ::close(fd);
    return uv_translate_sys_error(err);
  }
  poll_ = new uv_poll_t;
  int rc = uv_poll_init_socket(worker_.loop(), poll_, fd);
  if (rc != 0) {
    delete poll_;
    poll_ = nullptr;
    ::close(fd);
    return rc;
  }
  poll_->data = this;
  fd_ = fd;
  uv_poll_start(poll_, UV_READABLE, onPoll);
  return 0;
}

void ListeningSocket::close() {
  if (!poll_) return;
  pause_.cancel();
  uv_close(reinterpret_cast<uv_handle_t*>(poll_),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
  poll_ = nullptr;
  // uv_close has stopped the poll: the fd can go now.
  ::close(fd_);
  fd_ = -1;
}

void ListeningSocket::onPoll(uv_poll_t* h, int, int) {
  // An error (status < 0) is read back by accept4 too.
  static_cast<ListeningSocket*>(h->data)->acceptPending();
}

void ListeningSocket::acceptPending() {
  for (int i = 0; i < kAcceptsPerEvent && fd_ >= 0; ++i) {
    sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int fd = ::accept4(fd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      on_accept_(context_, fd, reinterpret_cast<sockaddr*>(&ss));
      continue;
    }
    switch (errno) {
      case EINTR:
      case ECONNABORTED:  // That connection is gone; others may wait.
      case EPROTO:
        continue;
      case EMFILE:
      case ENFILE:
      case ENOBUFS:
      case ENOMEM:
        uv_poll_stop(poll_);
        worker_.deadlines().arm(pause_, kAcceptPauseMs);
        return;
      default:  // EAGAIN: none left (or the wakeup was spurious).
        if (poll_ && !uv_is_active(reinterpret_cast<uv_handle_t*>(poll_))) {
          // A POLLERR stopped the handle; keep listening.
          uv_poll_start(poll_, UV_READABLE, onPoll);
        }
        return;
    }
  }
}

void ListeningSocket::onPauseEnd(void* self) {
  auto* s = static_cast<ListeningSocket*>(self);
  if (s->poll_) uv_poll_start(s->poll_, UV_READABLE, onPoll);
}

TcpListener::TcpListener(Worker& worker, std::shared_ptr<const config::ListenerConfig> config,
                         uint32_t port)
    : worker_(worker),
      config_(std::move(config)),
      port_(port),
      socket_(worker, &TcpListener::onAccept, this) {
  if (parseIpAddress(config_->address.address, port_, address_)) wildcard_ = isWildcard(address_);
}

TcpListener::~TcpListener() { close(); }

Status TcpListener::listen() {
  if (!config_->bind_to_port) return Status::ok();
  Result<int> fd = bindTcpSocket(config_->address.address, port_, /*reuse_port=*/true);
  if (!fd) return fd.status();
  socklen_t len = sizeof(bound_);
  ::getsockname(*fd, reinterpret_cast<sockaddr*>(&bound_), &len);
  int rc = socket_.listen(*fd, 4096);
  if (rc != 0) {
    return Status(ErrorSource::kInternal, "listen on " + config_->address.address + ":" +
                                              std::to_string(port_) + ": " + uv_strerror(rc));
  }
  return Status::ok();
}

void TcpListener::close() {
  socket_.close();
  std::unordered_set<ListenerInspection*> waiting;
  waiting.swap(inspections_);
  for (ListenerInspection* i : waiting) i->abort();
}

void TcpListener::onAccept(void* self, int fd, const sockaddr* peer) {
  auto* l = static_cast<TcpListener*>(self);
  sockaddr_storage original;
  // Only listeners with the original_dst listener filter pay the getsockopt.
  bool restored = l->config_->use_original_dst && originalDestination(fd, l->bound_, original);
  if (restored && l->config_->hand_off_restored_destination) {
    // Envoy hands off after the receiving listener's filters; their
    // findings would be dropped there, so here they are not run.
    TcpListener* target = l->worker_.handOffTarget(original);
    if (target != nullptr && target != l) {
      target->acceptHandedOff(fd, peer, original);
      return;
    }
  }
  l->accept(fd, peer, restored ? &original : nullptr);
}

void TcpListener::acceptHandedOff(int fd, const sockaddr* peer,
                                  const sockaddr_storage& original_dst) {
  accept(fd, peer, &original_dst);
}

void TcpListener::accept(int fd, const sockaddr* peer, const sockaddr_storage* original_dst) {
  if (config_->inspect_tls || config_->inspect_http) {
    inspections_.insert(new ListenerInspection(*this, fd, peer, original_dst));
    return;
  }
  HttpConnectionManager::accept(worker_, config_, fd, peer, original_dst);
}

bool TcpListener::takes(const sockaddr_storage& dst, bool exact) const {
  if (exact) return !wildcard_ && sameAddress(dst, address_, /*compare_ip=*/true);
  return wildcard_ && sameAddress(dst, address_, /*compare_ip=*/false);
}

// ---- ListenerInspection

namespace {

// Envoy's http_inspector.* counters. Envoy makes them in its listener
// filter's factory scope, which is the server's, not the listener's: every
// listener's inspector counts into the same ones. Made when the worker
// takes a listener with the filter (installListenerFilterStats).
struct HttpInspectorStats {
  explicit HttpInspectorStats(stats::Store& s)
      : store(&s),
        read_error(s.counter("http_inspector.read_error")),
        http10_found(s.counter("http_inspector.http10_found")),
        http11_found(s.counter("http_inspector.http11_found")),
        http2_found(s.counter("http_inspector.http2_found")),
        http_not_found(s.counter("http_inspector.http_not_found")) {}
  stats::Store* store;
  stats::Counter& read_error;
  stats::Counter& http10_found;
  stats::Counter& http11_found;
  stats::Counter& http2_found;
  stats::Counter& http_not_found;
};

// One per worker thread, remade when it meets another worker's store (a
// test that runs workers one after another on a thread).
HttpInspectorStats& httpInspectorStats(Worker& worker) {
  thread_local std::unique_ptr<HttpInspectorStats> stats;
  if (!stats || stats->store != &worker.stats()) {
    stats = std::make_unique<HttpInspectorStats>(worker.stats());
  }
  return *stats;
}

}  // namespace

void installListenerFilterStats(Worker& worker, const config::ListenerConfig& listener) {
  if (listener.inspect_http) httpInspectorStats(worker);
}

namespace {

// RFC 8446 section 5.1: a TLS connection starts with a handshake record,
// content type 22.
constexpr uint8_t kTlsHandshakeRecord = 0x16;

}  // namespace

ListenerInspection::ListenerInspection(TcpListener& listener, int fd, const sockaddr* peer,
                                       const sockaddr_storage* original_dst)
    : listener_(listener),
      config_(listener.config_),
      fd_(fd),
      timeout_(&ListenerInspection::onTimeout, this) {
  copyIpAddress(peer, peer_);  // accept4 gives an IPv4 or IPv6 peer.
  if (original_dst) {
    original_dst_ = *original_dst;
    has_original_dst_ = true;
  }
  poll_ = new uv_poll_t;
  if (uv_poll_init_socket(listener_.worker_.loop(), poll_, fd_) != 0) {
    delete poll_;
    poll_ = nullptr;
    // Handled on the next loop iteration, like a timeout.
    listener_.worker_.deadlines().arm(timeout_, 0);
    return;
  }
  poll_->data = this;
  // UV_DISCONNECT: the peer's FIN, which ends a wait for more bytes.
  uv_poll_start(poll_, UV_READABLE | UV_DISCONNECT, &ListenerInspection::onPoll);
  auto ms = static_cast<uint64_t>(config_->listener_filters_timeout.count());
  if (ms > 0) listener_.worker_.deadlines().arm(timeout_, ms);
}

ListenerInspection::~ListenerInspection() {
  if (fd_ >= 0) finish(false);
}

void ListenerInspection::abort() { done(false); }

void ListenerInspection::done(bool hand_on) {
  listener_.inspections_.erase(this);
  finish(hand_on);
  listener_.worker_.deferDelete(std::unique_ptr<Deletable>(this));
}

void ListenerInspection::onPoll(uv_poll_t* h, int status, int events) {
  auto* self = static_cast<ListenerInspection*>(h->data);
  // An error (status < 0) is read back by recv.
  self->inspect(status < 0 || (events & UV_DISCONNECT) != 0);
}

void ListenerInspection::onTimeout(void* self) {
  auto* i = static_cast<ListenerInspection*>(self);
  const config::ListenerConfig& l = *i->config_;
  if (i->poll_ != nullptr) {
    HttpConnectionManager::listenerStats(i->listener_.worker_, l).downstream_pre_cx_timeout.inc();
  }
  // Envoy's continue_on_listener_filters_timeout: the connection goes on
  // with what the filters found so far, plaintext unless tls_inspector
  // found TLS. (A failed poll setup lands here too, and closes.)
  i->done(i->poll_ != nullptr && l.continue_on_listener_filters_timeout);
}

void ListenerInspection::inspect(bool peer_closed) {
  const config::ListenerConfig& l = *config_;
  // tls_inspector needs one byte; http_inspector up to its limit. The
  // buffer is the worker thread's: nothing is kept between peeks, which
  // start from the first byte each time.
  thread_local char buffer[http::kHttpInspectMaxBytes];
  const size_t want = l.inspect_http ? sizeof(buffer) : 1;
  ssize_t n = ::recv(fd_, buffer, want, MSG_PEEK);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n < 0 && l.inspect_http && !http_decided_)
    httpInspectorStats(listener_.worker_).read_error.inc();
  if (n <= 0) {  // Closed or failed before its first byte.
    abort();
    return;
  }
  const auto got = static_cast<size_t>(n);
  if (runInspectors(std::string_view(buffer, got), got == want)) {
    done(true);
    return;
  }
  if (peer_closed) {
    // No more bytes will come: nothing to decide with.
    abort();
    return;
  }
  // Wait until more than got bytes are there. epoll is level-triggered
  // under libuv: without this, the bytes already peeked at would wake the
  // loop again at once, and again.
  int low_water = static_cast<int>(got) + 1;
  if (::setsockopt(fd_, SOL_SOCKET, SO_RCVLOWAT, &low_water, sizeof(low_water)) != 0) {
    abort();
    return;
  }
  low_water_raised_ = true;
}

bool ListenerInspection::runInspectors(std::string_view bytes, bool all_bytes) {
  const config::ListenerConfig& l = *config_;
  if (l.inspect_tls && !tls_decided_) {
    tls_ = static_cast<uint8_t>(bytes[0]) == kTlsHandshakeRecord;
    tls_decided_ = true;
  }
  // Envoy's http_inspector passes over a connection tls_inspector found to
  // be TLS, when it comes after it.
  if (l.inspect_http && !http_decided_ && !(tls_ && !l.inspect_http_first)) {
    http::InspectedProtocol found = http::inspectHttpProtocol(bytes);
    if (found == http::InspectedProtocol::kNeedMore) {
      if (!all_bytes) return false;
      // Its limit and still no end of a request line.
      found = http::InspectedProtocol::kNotHttp;
    }
    http_decided_ = true;
    HttpInspectorStats& stats = httpInspectorStats(listener_.worker_);
    switch (found) {
      case http::InspectedProtocol::kHttp10:
        stats.http10_found.inc();
        break;
      case http::InspectedProtocol::kHttp11:
        stats.http11_found.inc();
        break;
      case http::InspectedProtocol::kHttp2:
        stats.http2_found.inc();
        break;
      default:
        stats.http_not_found.inc();
        break;
    }
    // A TLS connection's chain is chosen from its ClientHello instead.
    if (!tls_) application_protocol_ = http::applicationProtocolName(found);
  }
  return true;
}

void ListenerInspection::finish(bool hand_on) {
  timeout_.cancel();
  if (poll_) {
    // uv_close stops the watch now, so that the connection may watch fd.
    uv_close(reinterpret_cast<uv_handle_t*>(poll_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    poll_ = nullptr;
  }
  int fd = fd_;
  fd_ = -1;
  if (fd < 0) return;
  if (hand_on && low_water_raised_) {
    // The connection reads whatever has come.
    int one = 1;
    hand_on = ::setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one)) == 0;
  }
  if (!hand_on) {
    ::close(fd);
    return;
  }
  const std::optional<bool> tls = config_->inspect_tls ? std::optional<bool>(tls_) : std::nullopt;
  HttpConnectionManager::accept(
      listener_.worker_, std::move(config_), fd, reinterpret_cast<const sockaddr*>(&peer_),
      has_original_dst_ ? &original_dst_ : nullptr, tls, application_protocol_);
}

}  // namespace skiff
