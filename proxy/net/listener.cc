#include "proxy/net/listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "proxy/http/connection_manager.h"
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

TcpListener::TcpListener(Worker& worker, std::shared_ptr<const config::ListenerConfig> config,
                         uint32_t port)
    : worker_(worker), config_(std::move(config)), port_(port) {}

TcpListener::~TcpListener() { close(); }

Status TcpListener::listen() {
  Result<int> fd = bindTcpSocket(config_->address.address, port_, /*reuse_port=*/true);
  if (!fd) return fd.status();
  tcp_ = new uv_tcp_t;
  uv_tcp_init(worker_.loop(), tcp_);
  tcp_->data = this;
  uv_tcp_open(tcp_, *fd);
  int rc = uv_listen(reinterpret_cast<uv_stream_t*>(tcp_), 4096, onConnection);
  if (rc != 0) {
    close();
    return Status(ErrorSource::kInternal, "listen on " + config_->address.address + ":" +
                                              std::to_string(port_) + ": " + uv_strerror(rc));
  }
  return Status::ok();
}

void TcpListener::close() {
  if (!tcp_) return;
  uv_close(reinterpret_cast<uv_handle_t*>(tcp_),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
  tcp_ = nullptr;
}

void TcpListener::onConnection(uv_stream_t* server, int status) {
  auto* self = static_cast<TcpListener*>(server->data);
  if (status != 0 || !self->tcp_) return;
  HttpConnectionManager::accept(self->worker_, self->config_, server);
}

}  // namespace skiff
