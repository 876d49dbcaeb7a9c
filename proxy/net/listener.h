// A listening socket on one worker. Every worker opens its own socket on the
// same address with SO_REUSEPORT, so the kernel spreads new connections over
// the workers and no accept lock exists (DESIGN.md). Debian's libuv 1.44 has
// no UV_TCP_REUSEPORT: the socket is made and bound here, watched with a
// uv_poll_t, and accepted from with accept4(), so that the new socket is
// skiff's own (TcpConnection::accept) rather than a libuv stream's.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <memory>
#include <optional>
#include <string>
#include <unordered_set>

#include "proxy/common/status.h"
#include "proxy/config/config.h"
#include "proxy/net/deadline_queue.h"
#include "proxy/worker/worker.h"

namespace skiff {

class Worker;

// Makes a TCP socket with SO_REUSEADDR (and SO_REUSEPORT when asked: every
// worker's listener shares the port; the admin socket must not) and binds it
// to address:port. Returns the fd, or a Status naming the address and errno.
Result<int> bindTcpSocket(const std::string& address, uint32_t port, bool reuse_port);
// The port a bound socket got (for port 0).
uint32_t boundPort(int fd);
// Where the client of fd, an accepted socket, meant to connect before an
// iptables REDIRECT or DNAT sent it here (SO_ORIGINAL_DST, or
// IP6T_SO_ORIGINAL_DST for IPv6): written to out when it differs from the
// socket's own address. bound is the listening socket's address, so that
// only a connection to a wildcard listener whose original port is the
// listener's own needs a getsockname as well. False when the kernel has no
// NAT entry for it (it was not redirected) or nothing changed.
bool originalDestination(int fd, const sockaddr_storage& bound, sockaddr_storage& out);

// A bound socket that listens and accepts: each new connection is a
// non-blocking, close-on-exec fd with TCP_NODELAY, handed to on_accept with
// the peer's address.
// Used by TcpListener and the admin server.
class ListeningSocket {
 public:
  using OnAccept = void (*)(void* context, int fd, const sockaddr* peer);

  ListeningSocket(Worker& worker, OnAccept on_accept, void* context);
  ~ListeningSocket() { close(); }
  ListeningSocket(const ListeningSocket&) = delete;
  ListeningSocket& operator=(const ListeningSocket&) = delete;

  // Listens on fd (bound and non-blocking; ours from now on, closed on
  // failure too). Returns 0 or a libuv error.
  int listen(int fd, int backlog);
  // Stops accepting and closes the socket.
  void close();
  int fd() const { return fd_; }

 private:
  static void onPoll(uv_poll_t* h, int status, int events);
  static void onPauseEnd(void* self);
  void acceptPending();

  Worker& worker_;
  OnAccept on_accept_;
  void* context_;
  uv_poll_t* poll_ = nullptr;  // Freed by its close callback.
  int fd_ = -1;
  Deadline pause_;  // Out of file descriptors: accepting resumes when it fires.
};

class TcpListener;

// tls_inspector on a listener with TLS and plaintext chains: waits for an
// accepted connection's first byte, peeks at it (MSG_PEEK: it stays for the
// connection to read) and hands the connection on as TLS (0x16, a handshake
// record) or plaintext. A connection that closes, fails or sends nothing
// within listener_filters_timeout is closed.
class TlsInspection : public Deletable {
 public:
  TlsInspection(TcpListener& listener, int fd, const sockaddr* peer,
                const sockaddr_storage* original_dst);
  ~TlsInspection() override;
  // Stops waiting and closes the connection (the listener closes).
  void abort();

 private:
  static void onPoll(uv_poll_t* h, int status, int events);
  static void onTimeout(void* self);
  void inspect();
  // Stops watching; hands fd on (tls set) or closes it (nullopt).
  void finish(std::optional<bool> tls);

  TcpListener& listener_;
  int fd_;
  sockaddr_storage peer_{};
  sockaddr_storage original_dst_{};
  bool has_original_dst_ = false;
  uv_poll_t* poll_ = nullptr;  // Freed by its close callback.
  Deadline timeout_;
};

class TcpListener {
 public:
  TcpListener(Worker& worker, std::shared_ptr<const config::ListenerConfig> config, uint32_t port);
  ~TcpListener();
  TcpListener(const TcpListener&) = delete;
  TcpListener& operator=(const TcpListener&) = delete;

  Status listen();
  const config::ListenerConfig& config() const { return *config_; }
  // A listener update on the same address: connections accepted from now on
  // use config; those already open keep theirs.
  void setConfig(std::shared_ptr<const config::ListenerConfig> config) {
    config_ = std::move(config);
  }
  // Stops accepting; the socket closes (asynchronously), and connections
  // still waiting for tls_inspector close.
  void close();

 private:
  friend class TlsInspection;
  static void onAccept(void* self, int fd, const sockaddr* peer);

  Worker& worker_;
  std::shared_ptr<const config::ListenerConfig> config_;
  uint32_t port_;
  sockaddr_storage bound_{};  // The listening socket's address (for original_dst).
  ListeningSocket socket_;
  std::unordered_set<TlsInspection*> inspections_;  // Waiting for a first byte.
};

}  // namespace skiff
