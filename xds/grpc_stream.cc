#include "xds/grpc_stream.h"

#include <cstdint>
#include <cstring>

#include "proxy/common/log.h"
#include "proxy/http/header_map.h"
#include "proxy/upstream/cluster_manager.h"

namespace skiff::xds {

namespace {

constexpr size_t kFrameHeaderBytes = 5;  // Compressed flag, then a 4-byte length.

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// PROTOCOL-HTTP2.md: grpc-message is percent-encoded; a malformed escape is
// kept as it is rather than failing the call.
std::string percentDecode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size()) {
      int hi = hexValue(in[i + 1]);
      int lo = hexValue(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(in[i]);
  }
  return out;
}

// Copies the first n bytes of chain (which holds at least n) into out. Used
// for the 5-byte message header only, which may straddle slices.
void peek(const BufferChain& chain, char* out, size_t n) {
  size_t got = 0;
  for (const Slice& s : chain.slices()) {
    size_t take = std::min(n - got, s.size());
    std::memcpy(out + got, s.data(), take);
    got += take;
    if (got == n) return;
  }
}

bool parseStatus(const HeaderMap& headers, int& status, std::string& message) {
  std::optional<std::string_view> value = headers.get("grpc-status");
  if (!value || value->empty() || value->size() > 9) return false;
  int code = 0;
  for (char c : *value) {
    if (c < '0' || c > '9') return false;
    code = code * 10 + (c - '0');
  }
  status = code;
  message = percentDecode(headers.get("grpc-message").value_or(""));
  return true;
}

}  // namespace

// The state of one call. It outlives its GrpcStream until the end of the
// loop iteration (deferred delete), because the codec and the pool may still
// be calling it when a user callback destroys the GrpcStream.
class GrpcCall final : public Deletable,
                       public Schedulable,
                       public upstream::PoolCallbacks,
                       public http::StreamDecoder,
                       public http::StreamCallbacks {
 public:
  GrpcCall(Worker& worker, std::string cluster_name, std::string path,
           GrpcStream::Callbacks& callbacks, size_t max_message_bytes)
      : worker_(worker),
        cluster_name_(std::move(cluster_name)),
        path_(std::move(path)),
        callbacks_(&callbacks),
        max_message_bytes_(max_message_bytes) {}
  ~GrpcCall() override { worker_.cancel(this); }

  void start() {
    if (state_ != State::kIdle) return;
    state_ = State::kConnecting;
    upstream::Cluster* cluster = worker_.clusterManager().get(cluster_name_);
    if (!cluster) {
      finish(grpc_status::kUnavailable, "cluster '" + cluster_name_ + "' not found");
      return;
    }
    host_ = cluster->chooseHost();
    if (!host_) {
      cluster->stats().upstream_cx_none_healthy.inc();
      finish(grpc_status::kUnavailable, "no healthy host in cluster '" + cluster_name_ + "'");
      return;
    }
    tls_ = cluster->config().tls != nullptr;
    host_->requestStarted();
    counted_request_ = true;
    waiting_for_pool_ = true;
    // May call onPoolReady or onPoolFailure before it returns.
    host_->newStream(*this, upstream::Want::kHttp2);
  }

  void send(std::string_view message) {
    if (state_ == State::kClosed) return;
    char header[kFrameHeaderBytes];
    header[0] = 0;  // Not compressed.
    uint32_t n = static_cast<uint32_t>(message.size());
    header[1] = static_cast<char>(n >> 24);
    header[2] = static_cast<char>(n >> 16);
    header[3] = static_cast<char>(n >> 8);
    header[4] = static_cast<char>(n);
    // Copies: the message is the caller's serialized protobuf, and the
    // header is made here; both must outlive this call until written.
    BufferChain frame;
    frame.appendCopy({header, sizeof(header)});
    frame.appendCopy(message);
    if (encoder_) {
      encoder_->encodeData(frame, false);
    } else {
      pending_.move(frame);
    }
  }

  // The GrpcStream is going away: end the call quietly.
  void detach() {
    callbacks_ = nullptr;
    worker_.cancel(this);
    if (state_ != State::kClosed) {
      state_ = State::kClosed;
      releaseUpstream();
    }
  }

  // ---- PoolCallbacks
  void onPoolReady(upstream::UpstreamClient& client) override {
    waiting_for_pool_ = false;
    if (state_ == State::kClosed) {
      client.release();
      return;
    }
    client_ = &client;
    encoder_ = &client.codec().newStream(*this);
    encoder_->stream().setCallbacks(this);
    // A member, not a local: the HTTP/2 codec may serialize the fields after
    // encodeHeaders returns (StreamEncoder::encodeHeaders).
    HeaderMap& headers = request_headers_;
    headers.addView(":method", "POST");
    headers.addView(":scheme", tls_ ? "https" : "http");
    headers.addView(":path", path_);
    headers.addView(":authority", cluster_name_);
    headers.addView("content-type", "application/grpc");
    headers.addView("te", "trailers");
    headers.addView("user-agent", "skiff");
    encoder_->encodeHeaders(headers, false);
    // A stream refused at once (GOAWAY already received) was reset inside
    // encodeHeaders, and finish() has run.
    if (state_ == State::kClosed) return;
    state_ = State::kOpen;
    if (!pending_.empty()) encoder_->encodeData(pending_, false);
    if (state_ == State::kClosed) return;
    if (callbacks_) callbacks_->onStreamReady();
  }

  void onPoolFailure(upstream::PoolFailure reason, std::string_view) override {
    waiting_for_pool_ = false;
    const char* why = reason == upstream::PoolFailure::kConnectTimeout ? "connection timeout"
                      : reason == upstream::PoolFailure::kOverflow
                          ? "too many requests waiting for a connection"
                          : "connection failure";
    finish(grpc_status::kUnavailable, std::string("upstream connect error: ") + why);
  }

  // ---- StreamDecoder: the response
  void decode1xxHeaders(HeaderMapPtr) override {}

  void decodeHeaders(HeaderMapPtr headers, bool end_stream) override {
    if (state_ == State::kClosed) return;
    int http_status = headers->status();
    if (http_status != 200) {
      finish(grpcStatusFromHttp(http_status), "HTTP status " + std::to_string(http_status));
      return;
    }
    if (end_stream) {
      // Trailers-only: the status rides on the response headers.
      onTrailers(*headers);
      return;
    }
    std::string_view type = headers->get("content-type").value_or("");
    if (type.substr(0, 16) != "application/grpc") {
      finish(grpc_status::kUnknown,
             "response content-type is '" + std::string(type) + "', not application/grpc");
    }
  }

  void decodeData(BufferChain& data, bool end_stream) override {
    if (state_ == State::kClosed) return;
    in_.move(data);
    while (in_.length() >= kFrameHeaderBytes) {
      char header[kFrameHeaderBytes];
      peek(in_, header, sizeof(header));
      if (header[0] != 0) {
        finish(grpc_status::kInternal,
               "compressed message received, but no compression was negotiated");
        return;
      }
      size_t n = (size_t{static_cast<uint8_t>(header[1])} << 24) |
                 (size_t{static_cast<uint8_t>(header[2])} << 16) |
                 (size_t{static_cast<uint8_t>(header[3])} << 8) | static_cast<uint8_t>(header[4]);
      if (n > max_message_bytes_) {
        finish(grpc_status::kResourceExhausted, "received message larger than max (" +
                                                    std::to_string(n) + " vs. " +
                                                    std::to_string(max_message_bytes_) + ")");
        return;
      }
      if (in_.length() < kFrameHeaderBytes + n) break;  // The rest is in later frames.
      in_.drain(kFrameHeaderBytes);
      // Copies: protobuf parses from contiguous bytes, and a message may
      // span slices (DATA frames, reads).
      std::string message = in_.toString(n);
      in_.drain(n);
      if (!callbacks_) return;
      callbacks_->onReceiveMessage(message);
      // The callback may have destroyed the GrpcStream (detach) or ended it.
      if (state_ == State::kClosed) return;
    }
    if (end_stream) {
      finish(grpc_status::kInternal, "response ended without grpc-status trailers");
    }
  }

  void decodeTrailers(HeaderMapPtr trailers) override {
    if (state_ == State::kClosed) return;
    onTrailers(*trailers);
  }

  // ---- StreamCallbacks: the stream died
  void onResetStream(http::ResetReason reason, std::string_view detail) override {
    // The codec is done with the stream: do not reset it again.
    encoder_ = nullptr;
    std::string why = std::string("stream reset: ") + http::resetReasonName(reason);
    if (!detail.empty()) why += " (" + std::string(detail) + ")";
    finish(grpc_status::kUnavailable, why);
  }
  void onAboveWriteBufferHighWatermark() override {}
  void onBelowWriteBufferLowWatermark() override {}

  // ---- Schedulable: the close reaches the user from the loop, never from
  // inside start() or a codec call that the user made.
  void onScheduled() override {
    if (!callbacks_) return;
    GrpcStream::Callbacks* cb = callbacks_;
    callbacks_ = nullptr;  // At most once.
    cb->onRemoteClose(close_status_, close_message_);
  }

 private:
  enum class State { kIdle, kConnecting, kOpen, kClosed };

  void onTrailers(const HeaderMap& trailers) {
    int status = 0;
    std::string message;
    if (!parseStatus(trailers, status, message)) {
      finish(grpc_status::kInternal, "response trailers without a valid grpc-status");
      return;
    }
    if (status == grpc_status::kOk && !in_.empty()) {
      finish(grpc_status::kInternal, "response ended inside a message");
      return;
    }
    finish(status, message);
  }

  // The call is over: let go of the stream and the connection now, tell the
  // user from the loop.
  void finish(int status, std::string message) {
    if (state_ == State::kClosed) return;
    state_ = State::kClosed;
    close_status_ = status;
    close_message_ = std::move(message);
    SKIFF_LOG(kDebug, "gRPC " + path_ + " on cluster '" + cluster_name_ +
                          "' closed: " + std::to_string(status) + " " + close_message_);
    releaseUpstream();
    worker_.schedule(this);
  }

  void releaseUpstream() {
    pending_.clear();
    in_.clear();
    if (waiting_for_pool_ && host_) {
      waiting_for_pool_ = false;
      host_->cancel(*this);
    }
    if (encoder_) {
      // Our side never ends on its own (a bidirectional call), so the stream
      // is still open here: reset it (RST_STREAM) and give the connection
      // back to the pool, as the router does with an unfinished request.
      http::Stream& stream = encoder_->stream();
      encoder_ = nullptr;
      stream.setCallbacks(nullptr);
      stream.resetStream(http::ResetReason::kLocalReset);
    }
    if (client_) {
      upstream::UpstreamClient* client = client_;
      client_ = nullptr;
      client->abandon();
    }
    if (counted_request_) {
      counted_request_ = false;
      host_->requestEnded();
    }
  }

  Worker& worker_;
  const std::string cluster_name_;
  const std::string path_;
  GrpcStream::Callbacks* callbacks_;  // Null once detached or told of the close.
  const size_t max_message_bytes_;
  State state_ = State::kIdle;
  bool tls_ = false;                            // The cluster's connections use TLS: :scheme https.
  std::shared_ptr<upstream::Host> host_;        // Chosen at start.
  upstream::UpstreamClient* client_ = nullptr;  // Lent by the pool while the stream is open.
  http::RequestEncoder* encoder_ = nullptr;     // The stream; null once it is gone.
  bool waiting_for_pool_ = false;
  bool counted_request_ = false;  // host_->requestStarted() was called.
  HeaderMap request_headers_;     // Live until the stream is done (see onPoolReady).
  BufferChain pending_;           // Framed messages sent before the stream existed.
  BufferChain in_;                // Received bytes not yet a whole message.
  int close_status_ = 0;
  std::string close_message_;
};

GrpcStream::GrpcStream(Worker& worker, std::string cluster_name, std::string path,
                       Callbacks& callbacks, size_t max_message_bytes)
    : worker_(worker),
      call_(std::make_unique<GrpcCall>(worker, std::move(cluster_name), std::move(path), callbacks,
                                       max_message_bytes)) {}

GrpcStream::~GrpcStream() {
  call_->detach();
  worker_.deferDelete(std::move(call_));
}

void GrpcStream::start() { call_->start(); }

void GrpcStream::send(std::string_view message) { call_->send(message); }

}  // namespace skiff::xds
