// Parsing and routing one typical request, the per-request work before any
// upstream is involved: the bytes of a keep-alive GET as one socket read,
// through the HTTP/1 server codec (llhttp, the header map) into a route
// match, and the codec answered so it takes the next request on the same
// connection. The answer is an empty 204 written to an owner that drops it.
#include <benchmark/benchmark.h>
#include <google/protobuf/util/json_util.h>

#include <cstdlib>
#include <cstring>

#include "envoy/config/route/v3/route.pb.h"
#include "proxy/http/http1/http1_codec.h"
#include "proxy/router/route_table.h"

namespace skiff {
namespace {

// What a load generator such as h2load --h1 or curl sends.
constexpr std::string_view kRequest =
    "GET /api/items?page=2 HTTP/1.1\r\n"
    "Host: api.example.com:8080\r\n"
    "User-Agent: curl/7.88.1\r\n"
    "Accept: */*\r\n"
    "Accept-Encoding: gzip, deflate\r\n"
    "X-Request-Id: 0d2c5a8e-6f0b-4b55-9a36-1a9a0b7d3c11\r\n"
    "\r\n";

class DroppingOwner : public http::CodecOwner {
 public:
  void write(BufferChain& data) override { data.clear(); }
  void scheduleDispatch() override {}
  void readDisable(bool) override {}
  void closeAfterFlush() override {}
  void shutdownAfterFlush() override {}
};

// Routes each request as its head arrives and answers it at once.
class RoutingCallbacks : public http::ServerConnectionCallbacks,
                         public http::StreamDecoder,
                         public http::StreamCallbacks {
 public:
  explicit RoutingCallbacks(const router::RouteTable& table) : table_(table) {
    answer_.addView(":status", "204");
  }
  http::StreamDecoder& newStream(http::ResponseEncoder& encoder) override {
    encoder_ = &encoder;
    encoder.stream().setCallbacks(this);
    return *this;
  }
  void decode1xxHeaders(HeaderMapPtr) override {}
  void decodeHeaders(HeaderMapPtr headers, bool end_stream) override {
    benchmark::DoNotOptimize(table_.match(*headers, 0));
    if (!end_stream) abort();  // A GET without a body.
    encoder_->encodeHeaders(answer_, true);
  }
  void decodeData(BufferChain&, bool) override { abort(); }
  void decodeTrailers(HeaderMapPtr) override { abort(); }
  void onResetStream(http::ResetReason, std::string_view detail) override {
    fprintf(stderr, "reset: %.*s\n", static_cast<int>(detail.size()), detail.data());
    abort();
  }
  void onAboveWriteBufferHighWatermark() override {}
  void onBelowWriteBufferLowWatermark() override {}

 private:
  const router::RouteTable& table_;
  http::ResponseEncoder* encoder_ = nullptr;
  HeaderMap answer_;
};

void BM_ParseAndRouteRequest(benchmark::State& state) {
  envoy::config::route::v3::RouteConfiguration c;
  auto st = google::protobuf::util::JsonStringToMessage(R"({"virtual_hosts":[
    {"name":"other","domains":["other.test"],"routes":[{"match":{"prefix":"/"},"route":{"cluster":"o"}}]},
    {"name":"main","domains":["api.example.com","*.example.com"],"routes":[
      {"match":{"path":"/healthz"},"direct_response":{"status":200}},
      {"match":{"prefix":"/api/"},"route":{"cluster":"api"}},
      {"match":{"prefix":"/"},"route":{"cluster":"web"}}]}]})",
                                                        &c);
  if (!st.ok()) abort();
  auto table = router::RouteTable::compile(c, "bench");
  if (!table.isOk()) abort();
  DroppingOwner owner;
  RoutingCallbacks callbacks(*table.value());
  http::Http1ServerCodec codec(owner, callbacks);
  ReadBuffer reads;
  http::CodecError error;
  for (auto _ : state) {
    // One socket read: the request lands in the worker's read slab.
    BufferChain data;
    std::span<char> room = reads.prepare(kRequest.size());
    if (room.size() < kRequest.size()) abort();
    std::memcpy(room.data(), kRequest.data(), kRequest.size());
    reads.commit(kRequest.size(), data);
    if (!codec.dispatch(data, error)) abort();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kRequest.size()));
}
BENCHMARK(BM_ParseAndRouteRequest);

}  // namespace
}  // namespace skiff
