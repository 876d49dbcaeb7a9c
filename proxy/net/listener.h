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
#include <string>

#include "proxy/common/status.h"
#include "proxy/config/config.h"
#include "proxy/net/deadline_queue.h"

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
  // Stops accepting; the socket closes (asynchronously).
  void close();

 private:
  static void onAccept(void* self, int fd, const sockaddr* peer);

  Worker& worker_;
  std::shared_ptr<const config::ListenerConfig> config_;
  uint32_t port_;
  sockaddr_storage bound_{};  // The listening socket's address (for original_dst).
  ListeningSocket socket_;
};

}  // namespace skiff
