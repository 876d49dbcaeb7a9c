// Envoy's admin interface on the main thread's loop, only where
// admin.address says: /ready, /stats, /stats/prometheus, /config_dump,
// /healthcheck/fail, /healthcheck/ok and /drain_listeners (POST only),
// /listeners, /clusters, /server_info, /quitquitquit. It speaks HTTP/1.1
// with the same codec as the data plane.
#pragma once

#include <uv.h>

#include <functional>
#include <string>

#include "proxy/common/status.h"
#include "proxy/net/listener.h"

namespace skiff {

class Worker;

// What the admin pages show; the server provides it.
class AdminSource {
 public:
  virtual ~AdminSource() = default;
  virtual bool ready() const = 0;
  virtual std::string state() const = 0;  // LIVE, PRE_INITIALIZING, DRAINING
  virtual std::string statsText() = 0;
  virtual std::string statsJson() = 0;
  virtual std::string statsPrometheus() = 0;
  virtual std::string configDump() = 0;
  virtual std::string listenersText(bool json) = 0;
  virtual std::string clustersText() = 0;
  virtual std::string serverInfo() = 0;
  virtual void quit() = 0;
  // /drain_listeners: every worker closes its listeners and drains its
  // connections; skiff keeps running.
  virtual void drainListeners() = 0;
};

class AdminServer {
 public:
  AdminServer(Worker& main_loop, AdminSource& source)
      : loop_(main_loop), source_(source), socket_(main_loop, &AdminServer::onAccept, this) {}
  ~AdminServer();

  // Listens on address:port (port 0 picks one); returns "ip:port".
  Result<std::string> listen(const std::string& address, uint32_t port);
  void close();

  // Answers one request: status, content type and body.
  struct Reply {
    int status;
    std::string content_type;
    std::string body;
  };
  Reply handle(std::string_view method, std::string_view path);

 private:
  static void onAccept(void* self, int fd, const sockaddr* peer);

  Worker& loop_;
  AdminSource& source_;
  ListeningSocket socket_;
};

}  // namespace skiff
