#include "proxy/admin/admin_server.h"

#include <memory>

#include "proxy/common/health_check_state.h"
#include "proxy/http/codec.h"
#include "proxy/http/http1/http1_codec.h"
#include "proxy/net/connection.h"
#include "proxy/net/listener.h"
#include "proxy/worker/worker.h"

namespace skiff {

namespace {

// One admin connection. Requests are small and answered at once; bodies of
// requests are ignored.
class AdminConnection : public TcpConnection::Callbacks,
                        public http::CodecOwner,
                        public http::ServerConnectionCallbacks,
                        public http::StreamDecoder,
                        public http::StreamCallbacks,
                        public Schedulable,
                        public DownstreamConnection {
 public:
  AdminConnection(Worker& loop, AdminServer& server)
      : loop_(loop), server_(server), conn_(loop, *this, 1 << 20) {
    codec_ = std::make_unique<http::Http1ServerCodec>(*this, *this);
    loop_.addConnection(*this);
  }
  ~AdminConnection() override {
    loop_.cancel(this);
    loop_.removeConnection(*this);
  }

  TcpConnection& connection() { return conn_; }

  // DownstreamConnection: an admin request is answered at once, so a drain
  // has nothing to wait for; shutdown closes.
  void drain() override {}
  void close() override { conn_.close(); }
  const config::ListenerConfig* listenerConfig() const override { return nullptr; }
  const config::FilterChainConfig* filterChain() const override { return nullptr; }

  void onRead(BufferChain& data) override {
    http::CodecError error;
    if (!codec_->dispatch(data, error)) conn_.closeAfterFlush();
  }
  void onEof() override { conn_.closeAfterFlush(); }
  void onClosed(TcpConnection::CloseReason) override {
    codec_->onTransportClosed(http::ResetReason::kConnectionTermination);
    loop_.deferDelete(std::unique_ptr<Deletable>(this));
  }
  void onAboveWriteBufferHighWatermark() override {}
  void onBelowWriteBufferLowWatermark() override {}
  void write(BufferChain& data) override { conn_.write(data); }
  void scheduleDispatch() override { loop_.schedule(this); }
  void onScheduled() override {
    if (conn_.closing()) return;
    BufferChain none;
    onRead(none);
  }
  void readDisable(bool disable) override { conn_.readDisable(disable); }
  void closeAfterFlush() override { conn_.closeAfterFlush(); }
  void shutdownAfterFlush() override { conn_.shutdownAfterFlush(); }

  http::StreamDecoder& newStream(http::ResponseEncoder& encoder) override {
    encoder_ = &encoder;
    encoder.stream().setCallbacks(this);
    return *this;
  }

  void decode1xxHeaders(HeaderMapPtr) override {}
  void decodeHeaders(HeaderMapPtr headers, bool end_stream) override {
    method_ = std::string(headers->method());
    path_ = std::string(headers->path());
    if (end_stream) respond();
  }
  void decodeData(BufferChain& data, bool end_stream) override {
    data.clear();
    if (end_stream) respond();
  }
  void decodeTrailers(HeaderMapPtr) override { respond(); }

  void onResetStream(http::ResetReason, std::string_view) override { encoder_ = nullptr; }

 private:
  void respond() {
    if (!encoder_) return;
    AdminServer::Reply reply = server_.handle(method_, path_);
    HeaderMap h;
    std::string status = std::to_string(reply.status);
    std::string length = std::to_string(reply.body.size());
    h.addView(":status", status);
    h.addView("content-type", reply.content_type);
    h.addView("content-length", length);
    h.addView("cache-control", "no-cache, max-age=0");
    h.addView("x-content-type-options", "nosniff");
    http::ResponseEncoder* enc = encoder_;
    encoder_ = nullptr;
    if (method_ == "HEAD" || reply.body.empty()) {
      enc->encodeHeaders(h, true);
      return;
    }
    enc->encodeHeaders(h, false);
    BufferChain body;
    body.appendCopy(reply.body);  // Copy: admin pages are made as strings.
    enc->encodeData(body, true);
  }

  Worker& loop_;
  AdminServer& server_;
  TcpConnection conn_;
  std::unique_ptr<http::ServerConnection> codec_;
  http::ResponseEncoder* encoder_ = nullptr;
  std::string method_;
  std::string path_;
};

// Whether a query string ("a=1&b") has the key, with or without a value.
bool hasQueryKey(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    std::string_view param = query.substr(0, amp);
    if (param.substr(0, param.find('=')) == key) return true;
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return false;
}

}  // namespace

AdminServer::~AdminServer() { close(); }

Result<std::string> AdminServer::listen(const std::string& address, uint32_t port) {
  Result<int> fd = bindTcpSocket(address, port, /*reuse_port=*/false);
  if (!fd) return fd.status();
  uint32_t bound = boundPort(*fd);
  int rc = socket_.listen(*fd, 128);
  if (rc != 0) {
    return Status(ErrorSource::kConfig, "admin listen on " + address + ": " + uv_strerror(rc));
  }
  std::string shown = address.find(':') != std::string::npos ? "[" + address + "]" : address;
  return shown + ":" + std::to_string(bound);
}

void AdminServer::close() { socket_.close(); }

void AdminServer::onAccept(void* self, int fd, const sockaddr* peer) {
  auto* server = static_cast<AdminServer*>(self);
  auto* conn = new AdminConnection(server->loop_, *server);
  if (conn->connection().accept(fd, peer) != 0) conn->connection().close();
}

AdminServer::Reply AdminServer::handle(std::string_view method, std::string_view target) {
  std::string_view path = target.substr(0, target.find('?'));
  std::string_view query =
      target.find('?') == std::string_view::npos ? "" : target.substr(target.find('?') + 1);
  bool json = query.find("format=json") != std::string_view::npos;
  const std::string text = "text/plain; charset=UTF-8";
  const std::string js = "application/json";
  // Envoy refuses state-changing endpoints on GET.
  bool mutating = path == "/quitquitquit" || path == "/healthcheck/fail" ||
                  path == "/healthcheck/ok" || path == "/drain_listeners";
  if (mutating && method != "POST") {
    return {405, text, "This endpoint requires POST, not " + std::string(method) + "\n"};
  }
  if (path == "/ready") {
    bool ok = source_.ready();
    return {ok ? 200 : 503, text, source_.state() + "\n"};
  }
  if (path == "/stats") {
    if (json) return {200, js, source_.statsJson()};
    return {200, text, source_.statsText()};
  }
  if (path == "/stats/prometheus")
    return {200, "text/plain; version=0.0.4", source_.statsPrometheus()};
  if (path == "/config_dump") return {200, js, source_.configDump()};
  if (path == "/listeners") return {200, json ? js : text, source_.listenersText(json)};
  if (path == "/clusters") return {200, text, source_.clustersText()};
  if (path == "/server_info") return {200, js, source_.serverInfo()};
  if (path == "/healthcheck/fail" || path == "/healthcheck/ok") {
    // Every worker reads the flag on its next health check or response.
    setHealthCheckFailed(path == "/healthcheck/fail");
    return {200, text, "OK\n"};
  }
  if (path == "/drain_listeners") {
    // Envoy's options: skiff has no inbound listeners (traffic_direction is
    // refused), no drain period before the listeners close, and never exits
    // for a drain.
    for (std::string_view option : {"inboundonly", "graceful", "skip_exit"}) {
      if (hasQueryKey(query, option)) {
        return {400, text,
                "/drain_listeners?" + std::string(option) + " is not supported by skiff\n"};
      }
    }
    source_.drainListeners();
    return {200, text, "OK\n"};
  }
  if (path == "/quitquitquit") {
    source_.quit();
    return {200, text, "OK\n"};
  }
  if (path == "/" || path.empty()) {
    return {200, text,
            "admin commands are:\n  /clusters\n  /config_dump\n  /drain_listeners\n"
            "  /healthcheck/fail\n"
            "  /healthcheck/ok\n  /listeners\n  /quitquitquit\n"
            "  /ready\n  /server_info\n  /stats\n  /stats/prometheus\n"};
  }
  return {404, text, "invalid path. admin commands are listed at /\n"};
}

}  // namespace skiff
