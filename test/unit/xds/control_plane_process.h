// For the xDS wire tests: the real test control plane (test/control_plane/,
// Debian's libgrpc++) as a subprocess, and a worker loop on the test thread
// whose ClusterManager holds one static HTTP/2 cluster pointing at it.
//
// The control plane's events (one JSON object per stdout line) are read by a
// thread into a list; tests look at them while the loop runs. Every wait is
// bounded.
#pragma once

#include <fcntl.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "proxy/config/config.h"
#include "proxy/worker/worker.h"

#ifndef SKIFF_CONTROL_PLANE_BIN
#error "SKIFF_CONTROL_PLANE_BIN must name the skiff_control_plane binary"
#endif

extern char** environ;

namespace skiff::xds::testing {

using Event = google::protobuf::Struct;

// The value at a dotted path ("request.error_detail.code"), or null.
inline const google::protobuf::Value* lookup(const Event& event, std::string_view path) {
  const google::protobuf::Struct* s = &event;
  const google::protobuf::Value* v = nullptr;
  while (true) {
    size_t dot = path.find('.');
    auto it = s->fields().find(std::string(path.substr(0, dot)));
    if (it == s->fields().end()) return nullptr;
    v = &it->second;
    if (dot == std::string_view::npos) return v;
    if (!v->has_struct_value()) return nullptr;
    s = &v->struct_value();
    path = path.substr(dot + 1);
  }
}

// A string (or integer) at path; "" when absent (proto3 JSON leaves out
// empty fields).
inline std::string str(const Event& event, std::string_view path) {
  const google::protobuf::Value* v = lookup(event, path);
  if (!v) return "";
  if (v->has_string_value()) return v->string_value();
  if (v->has_number_value()) return std::to_string(static_cast<int64_t>(v->number_value()));
  if (v->has_bool_value()) return v->bool_value() ? "true" : "false";
  return "";
}

// The strings of the list at path.
inline std::vector<std::string> list(const Event& event, std::string_view path) {
  std::vector<std::string> out;
  const google::protobuf::Value* v = lookup(event, path);
  if (!v || !v->has_list_value()) return out;
  for (const auto& item : v->list_value().values()) out.push_back(item.string_value());
  return out;
}

// Type URLs, and resources as proto3 JSON Any (with "@type").
inline constexpr const char* kCluster = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
inline constexpr const char* kEndpoint =
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
inline constexpr const char* kRoute =
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
inline constexpr const char* kListener = "type.googleapis.com/envoy.config.listener.v3.Listener";

inline std::string clusterJson(const std::string& name) {
  return std::string(R"({"@type":")") + kCluster + R"(","name":")" + name +
         R"(","type":"EDS","eds_cluster_config":{"eds_config":{"ads":{},"resource_api_version":"V3"}}})";
}

inline std::string claJson(const std::string& cluster, int port) {
  return std::string(R"({"@type":")") + kEndpoint + R"(","cluster_name":")" + cluster +
         R"(","endpoints":[{"lb_endpoints":[{"endpoint":{"address":{"socket_address":{"address":"127.0.0.1","port_value":)" +
         std::to_string(port) + "}}}}]}]}";
}

// A RouteConfiguration whose one route answers with body (direct_response).
inline std::string routeJson(const std::string& name, const std::string& body = "ok") {
  return std::string(R"({"@type":")") + kRoute + R"(","name":")" + name +
         R"(","virtual_hosts":[{"name":"vh","domains":["*"],"routes":[{"match":{"prefix":"/"},)" +
         R"("direct_response":{"status":200,"body":{"inline_string":")" + body + R"("}}}]}]})";
}

// A loopback port that nothing listens on and that stays ours for as long as
// this object lives: a socket with SO_REUSEADDR is bound to it and never
// listens. Connections to it are refused; a control plane started on it later
// may still bind and listen there (gRPC sets SO_REUSEADDR too), and listen
// again after it was killed. A port that was bound a moment ago and let go
// may be taken by another process's bind(0) before the control plane binds
// it, and tests that run in parallel bind many ports: the control plane then
// cannot listen and the test fails. bind(0) never picks a port that a socket
// is bound to, with or without SO_REUSEADDR.
class ReservedPort {
 public:
  ReservedPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~ReservedPort() { ::close(fd_); }
  ReservedPort(const ReservedPort&) = delete;
  ReservedPort& operator=(const ReservedPort&) = delete;

  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

class ControlPlaneProcess {
 public:
  ControlPlaneProcess() = default;
  ~ControlPlaneProcess() { kill(); }
  ControlPlaneProcess(const ControlPlaneProcess&) = delete;
  ControlPlaneProcess& operator=(const ControlPlaneProcess&) = delete;

  // Starts it on 127.0.0.1:port (0 picks one) and waits until it listens.
  bool start(uint16_t port = 0) {
    int in[2];
    int out[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) return false;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    std::string port_text = std::to_string(port);
    char bin[] = SKIFF_CONTROL_PLANE_BIN;
    char flag[] = "--port";
    char* argv[] = {bin, flag, port_text.data(), nullptr};
    int rc = posix_spawn(&pid_, bin, &actions, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(in[0]);
    ::close(out[1]);
    if (rc != 0) {
      ::close(in[1]);
      ::close(out[0]);
      pid_ = -1;
      return false;
    }
    in_fd_ = in[1];
    out_fd_ = out[0];
    size_t since = eventCount();
    reader_ = std::thread([this, fd = out_fd_] { readEvents(fd); });
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (auto e = find([](const Event& e) { return str(e, "event") == "listening"; }, since)) {
        port_ = static_cast<uint16_t>(std::stoi(str(*e, "port")));
        return true;
      }
      if (find([](const Event& e) { return str(e, "event") == "error"; }, since)) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  uint16_t port() const { return port_; }

  void send(const std::string& line) {
    std::string text = line + "\n";
    const char* p = text.data();
    size_t left = text.size();
    while (left > 0 && in_fd_ >= 0) {
      ssize_t n = ::write(in_fd_, p, left);
      if (n <= 0) return;
      p += n;
      left -= static_cast<size_t>(n);
    }
  }

  void set(const std::string& type_url, const std::string& version,
           const std::vector<std::string>& resources) {
    std::string line = R"({"op":"set","type_url":")" + type_url + R"(","version":")" + version +
                       R"(","resources":[)";
    for (size_t i = 0; i < resources.size(); ++i) line += (i ? "," : "") + resources[i];
    send(line + "]}");
  }
  void setGarbage(const std::string& type_url, const std::string& version) {
    send(R"({"op":"set_garbage","type_url":")" + type_url + R"(","version":")" + version + "\"}");
  }
  void disconnect() { send(R"({"op":"disconnect"})"); }

  // Asks it to shut down and waits (bounded) for it to go.
  void stop() {
    if (pid_ < 0) return;
    send(R"({"op":"shutdown"})");
    reap(std::chrono::seconds(5));
  }
  // SIGKILL: its connections break without a word.
  void kill() {
    if (pid_ < 0) return;
    ::kill(pid_, SIGKILL);
    reap(std::chrono::seconds(5));
  }

  size_t eventCount() const {
    std::lock_guard<std::mutex> lock(mu_);
    return events_.size();
  }
  std::vector<Event> events(size_t since = 0) const {
    std::lock_guard<std::mutex> lock(mu_);
    return {events_.begin() + static_cast<ptrdiff_t>(std::min(since, events_.size())),
            events_.end()};
  }
  // The first event from index `since` on that pred accepts.
  std::optional<Event> find(const std::function<bool(const Event&)>& pred, size_t since = 0) const {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = since; i < events_.size(); ++i) {
      if (pred(events_[i])) return events_[i];
    }
    return std::nullopt;
  }
  size_t count(const std::function<bool(const Event&)>& pred, size_t since = 0) const {
    std::lock_guard<std::mutex> lock(mu_);
    size_t n = 0;
    for (size_t i = since; i < events_.size(); ++i) n += pred(events_[i]) ? 1 : 0;
    return n;
  }

 private:
  void readEvents(int fd) {
    std::string buffer;
    char chunk[65536];
    while (true) {
      ssize_t n = ::read(fd, chunk, sizeof(chunk));
      if (n <= 0) break;
      buffer.append(chunk, static_cast<size_t>(n));
      size_t nl;
      while ((nl = buffer.find('\n')) != std::string::npos) {
        Event event;
        if (google::protobuf::util::JsonStringToMessage(buffer.substr(0, nl), &event).ok()) {
          std::lock_guard<std::mutex> lock(mu_);
          events_.push_back(std::move(event));
        }
        buffer.erase(0, nl + 1);
      }
    }
  }

  void reap(std::chrono::seconds timeout) {
    if (in_fd_ >= 0) {
      ::close(in_fd_);
      in_fd_ = -1;
    }
    auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() >= deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    pid_ = -1;
    if (reader_.joinable()) reader_.join();
    ::close(out_fd_);
    out_fd_ = -1;
  }

  pid_t pid_ = -1;
  int in_fd_ = -1;   // Its stdin.
  int out_fd_ = -1;  // Its stdout.
  uint16_t port_ = 0;
  std::thread reader_;
  mutable std::mutex mu_;
  std::vector<Event> events_;  // Guarded by mu_.
};

// A Worker whose loop runs on the test thread, with one STATIC HTTP/2
// cluster "xds_cluster" to 127.0.0.1:port.
class TestLoop {
 public:
  static constexpr const char* kCluster = "xds_cluster";

  explicit TestLoop(uint16_t port) {
    auto snapshot = std::make_shared<config::Snapshot>();
    auto cluster = std::make_shared<config::ClusterConfig>();
    cluster->name = kCluster;
    cluster->type = config::ClusterConfig::Type::kStatic;
    cluster->endpoints.push_back({{"127.0.0.1", port}, 1});
    cluster->upstream_protocol = config::ClusterConfig::UpstreamProtocol::kHttp2;
    cluster->connect_timeout = std::chrono::milliseconds(1000);
    snapshot->clusters.set(kCluster, cluster);
    worker_ = std::make_unique<Worker>(0, snapshot);
    // A tick, so that UV_RUN_ONCE returns even when nothing else happens
    // and runUntil can look at the control plane's events.
    uv_timer_init(worker_->loop(), &tick_);
    uv_timer_start(
        &tick_, [](uv_timer_t*) {}, 5, 5);
  }
  ~TestLoop() { shutdown(); }

  Worker& worker() { return *worker_; }

  // Runs the loop until cond() holds; false after timeout.
  bool runUntil(const std::function<bool()>& cond,
                std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!cond()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      uv_run(worker_->loop(), UV_RUN_ONCE);
    }
    return true;
  }
  // Runs the loop for a while (to let things that should not happen show).
  void runFor(std::chrono::milliseconds time) {
    auto deadline = std::chrono::steady_clock::now() + time;
    runUntil([&] { return std::chrono::steady_clock::now() >= deadline; }, time * 2);
  }

  // Closes what the test put on the loop and shuts the worker down. Objects
  // that use the worker must be gone first.
  void shutdown() {
    if (!worker_ || closed_) return;
    closed_ = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr);
    worker_->shutdown();
  }

 private:
  std::unique_ptr<Worker> worker_;
  uv_timer_t tick_;
  bool closed_ = false;
};

// Runs loop until cp has an event (from index `since` on) that pred
// accepts. The control plane's stdout is read by another thread, so an event
// may show up a little after its effect reached the client: always wait.
inline std::optional<Event> waitEvent(TestLoop& loop, const ControlPlaneProcess& cp,
                                      const std::function<bool(const Event&)>& pred,
                                      size_t since = 0) {
  std::optional<Event> found;
  loop.runUntil([&] {
    found = cp.find(pred, since);
    return found.has_value();
  });
  return found;
}

}  // namespace skiff::xds::testing
