// A listening socket on one worker. Every worker opens its own socket on the
// same address with SO_REUSEPORT, so the kernel spreads new connections over
// the workers and no accept lock exists (DESIGN.md). Debian's libuv 1.44 has
// no UV_TCP_REUSEPORT: the socket is made and bound here, then handed to
// uv_tcp_open.
#pragma once

#include <uv.h>

#include <memory>
#include <string>

#include "proxy/common/status.h"
#include "proxy/config/config.h"

namespace skiff {

class Worker;

// Makes a TCP socket with SO_REUSEADDR (and SO_REUSEPORT when asked: every
// worker's listener shares the port; the admin socket must not) and binds it
// to address:port. Returns the fd, or a Status naming the address and errno.
Result<int> bindTcpSocket(const std::string& address, uint32_t port, bool reuse_port);
// The port a bound socket got (for port 0).
uint32_t boundPort(int fd);

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
  static void onConnection(uv_stream_t* server, int status);

  Worker& worker_;
  std::shared_ptr<const config::ListenerConfig> config_;
  uint32_t port_;
  uv_tcp_t* tcp_ = nullptr;  // Freed by its close callback.
};

}  // namespace skiff
