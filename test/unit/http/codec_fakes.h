// Fakes for the codec tests (HTTP/1 and HTTP/2): an owner that collects
// written bytes, a decoder that records what it got, and server callbacks
// that hand them out.
#pragma once

#include <cstring>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "proxy/http/codec.h"

namespace skiff::http::testing {

// Bytes as a socket read would deliver them: into the worker's shared slab,
// as one slice. Successive reads land in the same slab, back to back, unless
// something else took the tail in between.
class Reader {
 public:
  BufferChain read(std::string_view bytes) {
    BufferChain out;
    while (!bytes.empty()) {
      std::span<char> room = rb_.prepare(1);
      size_t n = std::min(room.size(), bytes.size());
      std::memcpy(room.data(), bytes.data(), n);
      rb_.commit(n, out);
      bytes.remove_prefix(n);
    }
    return out;
  }
  // The next read starts in a fresh slab.
  void release() { SlabPool::local().retireCurrent(); }

 private:
  ReadBuffer rb_;
};

inline BufferChain chainOf(std::string_view bytes) {
  Reader r;
  return r.read(bytes);
}

class FakeOwner : public CodecOwner {
 public:
  void write(BufferChain& data) override {
    // The slabs the bytes left in, for zero-copy checks.
    for (const Slice& slice : data.slices()) written_slabs.insert(slice.slab());
    written += data.toString();
    ++writes;
    data.clear();
  }
  void scheduleDispatch() override { ++scheduled; }
  void readDisable(bool disable) override {
    read_disabled += disable ? 1 : -1;
    ++read_disable_calls;
  }
  void closeAfterFlush() override { ++close_after_flush; }
  void shutdownAfterFlush() override { ++shutdown_after_flush; }

  std::string take() { return std::exchange(written, {}); }

  std::string written;
  std::set<Slab*> written_slabs;
  int writes = 0;
  int scheduled = 0;
  int read_disabled = 0;  // Net depth.
  int read_disable_calls = 0;
  int close_after_flush = 0;
  int shutdown_after_flush = 0;
};

class FakeDecoder : public StreamDecoder {
 public:
  void decode1xxHeaders(HeaderMapPtr h) override { informational.push_back(std::move(h)); }
  void decodeHeaders(HeaderMapPtr h, bool end_stream) override {
    headers = std::move(h);
    ended = end_stream;
    if (on_headers) on_headers();
  }
  void decodeData(BufferChain& data, bool end_stream) override {
    for (const Slice& s : data.slices()) body_slabs.push_back(s.slab());
    body += data.toString();
    body_slices.move(data);
    ++data_calls;
    ended = end_stream;
    if (end_stream && on_end) on_end();
  }
  void decodeTrailers(HeaderMapPtr t) override {
    trailers = std::move(t);
    ended = true;
    if (on_end) on_end();
  }
  std::string header(std::string_view name) const {
    return headers ? std::string(headers->get(name).value_or("<none>")) : "<no headers>";
  }

  HeaderMapPtr headers;
  HeaderMapPtr trailers;
  std::vector<HeaderMapPtr> informational;
  std::string body;
  BufferChain body_slices;  // Kept, so slabs stay alive for zero-copy checks.
  std::vector<Slab*> body_slabs;
  int data_calls = 0;
  bool ended = false;
  std::function<void()> on_headers;
  std::function<void()> on_end;
};

class FakeStreamCallbacks : public StreamCallbacks {
 public:
  void onResetStream(ResetReason reason, std::string_view detail) override {
    resets.push_back(reason);
    last_detail = std::string(detail);
  }
  void onAboveWriteBufferHighWatermark() override { ++above; }
  void onBelowWriteBufferLowWatermark() override { ++below; }
  std::vector<ResetReason> resets;
  std::string last_detail;
  int above = 0;
  int below = 0;
};

class FakeServerCallbacks : public ServerConnectionCallbacks {
 public:
  struct Exchange {
    ResponseEncoder* encoder;
    FakeDecoder decoder;
    FakeStreamCallbacks callbacks;
  };
  StreamDecoder& newStream(ResponseEncoder& encoder) override {
    auto& x = *exchanges.emplace_back(std::make_unique<Exchange>());
    x.encoder = &encoder;
    encoder.stream().setCallbacks(&x.callbacks);
    if (on_new) on_new(x);
    return x.decoder;
  }
  Exchange& last() { return *exchanges.back(); }
  std::vector<std::unique_ptr<Exchange>> exchanges;
  std::function<void(Exchange&)> on_new;
};

// A HeaderMap from literal name/value pairs.
inline HeaderMapPtr makeHeaders(
    std::initializer_list<std::pair<std::string_view, std::string_view>> fields) {
  auto h = std::make_unique<HeaderMap>();
  for (const auto& [n, v] : fields) h->addView(n, v);
  return h;
}

}  // namespace skiff::http::testing
