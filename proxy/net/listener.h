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
#include <string_view>
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

// Makes this worker's stats of the listener's filters (http_inspector's
// counters, when it has the filter), so that they show at 0 before any
// connection, as Envoy's do from config load. Worker::installFilters calls it.
void installListenerFilterStats(Worker& worker, const config::ListenerConfig& listener);

// The listener filters that look at an accepted connection's first bytes
// before a filter chain is chosen (tls_inspector on a listener with TLS and
// plaintext chains, http_inspector on one with plaintext chains). The bytes
// are peeked at (MSG_PEEK), never read: they stay for the connection. Each
// inspector runs in the listener's order on what came so far; while one needs
// more, SO_RCVLOWAT keeps the socket quiet until more than that has come, so
// the level-triggered poll does not spin. Then the connection is handed on
// as TLS or plaintext, with the application protocol http_inspector found.
// One that closes or fails first is closed, and so is one the inspectors have
// not decided on within listener_filters_timeout, unless
// continue_on_listener_filters_timeout hands it on with what they found.
class ListenerInspection : public Deletable {
 public:
  ListenerInspection(TcpListener& listener, int fd, const sockaddr* peer,
                     const sockaddr_storage* original_dst);
  ~ListenerInspection() override;
  // Stops waiting and closes the connection (the listener closes).
  void abort();

 private:
  static void onPoll(uv_poll_t* h, int status, int events);
  static void onTimeout(void* self);
  void inspect(bool peer_closed);
  // Runs the inspectors on bytes; false while one needs more of them.
  bool runInspectors(std::string_view bytes, bool all_bytes);
  // Stops watching; hands fd on (hand_on) or closes it.
  void finish(bool hand_on);
  // Stops waiting: hands the connection on, or closes it.
  void done(bool hand_on);

  TcpListener& listener_;
  // The listener's configuration when the connection came: an update while
  // it is inspected does not change the rules half-way.
  std::shared_ptr<const config::ListenerConfig> config_;
  int fd_;
  sockaddr_storage peer_{};
  sockaddr_storage original_dst_{};
  bool has_original_dst_ = false;
  // What the inspectors found: TLS (tls_inspector), the application
  // protocol (http_inspector; "" for none).
  bool tls_ = false;
  bool tls_decided_ = false;
  bool http_decided_ = false;
  std::string_view application_protocol_;
  // SO_RCVLOWAT was raised while waiting for more bytes: set back to 1
  // before the connection reads.
  bool low_water_raised_ = false;
  uv_poll_t* poll_ = nullptr;  // Freed by its close callback.
  Deadline timeout_;
};

class TcpListener {
 public:
  TcpListener(Worker& worker, std::shared_ptr<const config::ListenerConfig> config, uint32_t port);
  ~TcpListener();
  TcpListener(const TcpListener&) = delete;
  TcpListener& operator=(const TcpListener&) = delete;

  // Binds and listens, unless the listener does not bind (bind_to_port
  // false): it then only takes connections handed off to it.
  Status listen();
  const config::ListenerConfig& config() const { return *config_; }
  // Whether a connection whose original destination is dst would be handed
  // to this listener: its address and port (exact), or only its port when
  // its address is a wildcard (exact false).
  bool takes(const sockaddr_storage& dst, bool exact) const;
  // A connection another listener accepted and handed off (its original
  // destination restored): this listener's filters and chains take it.
  void acceptHandedOff(int fd, const sockaddr* peer, const sockaddr_storage& original_dst);
  // A listener update on the same address: connections accepted from now on
  // use config; those already open keep theirs.
  void setConfig(std::shared_ptr<const config::ListenerConfig> config) {
    config_ = std::move(config);
  }
  // Stops accepting; the socket closes (asynchronously), and connections
  // still waiting for the listener filters close.
  void close();

 private:
  friend class ListenerInspection;
  static void onAccept(void* self, int fd, const sockaddr* peer);
  // Runs the listener filters that look at bytes, then the connection manager.
  void accept(int fd, const sockaddr* peer, const sockaddr_storage* original_dst);

  Worker& worker_;
  std::shared_ptr<const config::ListenerConfig> config_;
  uint32_t port_;
  sockaddr_storage bound_{};    // The listening socket's address (for original_dst).
  sockaddr_storage address_{};  // The configured address and port (for hand-offs).
  bool wildcard_ = false;       // address_ is 0.0.0.0 or ::.
  ListeningSocket socket_;
  std::unordered_set<ListenerInspection*> inspections_;  // Waiting for first bytes.
};

}  // namespace skiff
