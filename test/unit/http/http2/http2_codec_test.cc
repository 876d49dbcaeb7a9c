// The HTTP/2 codecs against a real nghttp2 session as the peer, in memory: a
// client session drives Http2ServerCodec, a server session drives
// Http2ClientCodec. Attacks that nghttp2 would refuse to send are written as
// raw frames.
#include "proxy/http/http2/http2_codec.h"

#include "test/unit/http/codec_fakes.h"

#include <gtest/gtest.h>

#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace skiff::http {
namespace {

using testing::FakeDecoder;
using testing::FakeOwner;
using testing::FakeServerCallbacks;
using testing::FakeStreamCallbacks;
using testing::makeHeaders;
using testing::Reader;

// A real nghttp2 session on the other end of the wire.
class Peer {
 public:
  struct StreamInfo {
    std::vector<std::pair<std::string, std::string>> headers;  // Every header block, in order.
    std::set<std::string> never_indexed;  // Names that came as HPACK "never indexed" literals.
    int header_blocks = 0;
    std::string body;
    bool closed = false;
    uint32_t close_code = 0;
    bool rst_received = false;
    bool ended = false;  // END_STREAM received.
    std::string get(const std::string& name) const {
      for (const auto& [n, v] : headers)
        if (n == name) return v;
      return "<none>";
    }
  };

  explicit Peer(bool server, std::vector<nghttp2_settings_entry> settings = {}) {
    nghttp2_session_callbacks* cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &Peer::onFrameRecv);
    nghttp2_session_callbacks_set_on_header_callback(cbs, &Peer::onHeader);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &Peer::onData);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &Peer::onClose);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, &Peer::onBeginHeaders);
    if (server) {
      nghttp2_session_server_new(&session, cbs, this);
    } else {
      nghttp2_session_client_new(&session, cbs, this);
    }
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, settings.data(), settings.size());
  }
  ~Peer() { nghttp2_session_del(session); }

  std::string send() {
    std::string out;
    for (;;) {
      const uint8_t* p;
      ssize_t n = nghttp2_session_mem_send(session, &p);
      if (n <= 0) break;
      out.append(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
    }
    return out;
  }
  void recv(const std::string& bytes) {
    ssize_t rv = nghttp2_session_mem_recv(session, reinterpret_cast<const uint8_t*>(bytes.data()),
                                          bytes.size());
    ASSERT_EQ(rv, static_cast<ssize_t>(bytes.size())) << nghttp2_strerror(static_cast<int>(rv));
  }

  // A request (client peer) with an optional body sent from body_.
  int32_t request(std::vector<std::pair<std::string, std::string>> fields, bool end_stream,
                  std::string body = "") {
    std::vector<nghttp2_nv> nva = toNv(fields);
    bodies_.push_back(std::make_unique<std::string>(std::move(body)));
    nghttp2_data_provider prd;
    prd.source.ptr = bodies_.back().get();
    prd.read_callback = &Peer::readBody;
    return nghttp2_submit_request(session, nullptr, nva.data(), nva.size(),
                                  end_stream ? nullptr : &prd, nullptr);
  }
  void respond(int32_t id, std::vector<std::pair<std::string, std::string>> fields,
               std::string body, bool with_body) {
    std::vector<nghttp2_nv> nva = toNv(fields);
    bodies_.push_back(std::make_unique<std::string>(std::move(body)));
    nghttp2_data_provider prd;
    prd.source.ptr = bodies_.back().get();
    prd.read_callback = &Peer::readBody;
    nghttp2_submit_response(session, id, nva.data(), nva.size(), with_body ? &prd : nullptr);
  }

  static std::vector<nghttp2_nv> toNv(std::vector<std::pair<std::string, std::string>>& fields) {
    std::vector<nghttp2_nv> nva;
    for (auto& [n, v] : fields) {
      nva.push_back({reinterpret_cast<uint8_t*>(n.data()), reinterpret_cast<uint8_t*>(v.data()),
                     n.size(), v.size(), NGHTTP2_NV_FLAG_NONE});
    }
    return nva;
  }

  nghttp2_session* session = nullptr;
  std::map<int32_t, StreamInfo> streams;
  std::map<uint8_t, int> frames;  // Frames received, by type.
  int32_t goaway_last_stream_id = -1;
  uint32_t goaway_code = 0;
  uint32_t last_rst_code = 0;
  std::vector<int32_t> request_ids;  // Server peer: streams the codec opened.

 private:
  static Peer& self(void* u) { return *static_cast<Peer*>(u); }
  static ssize_t readBody(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                          nghttp2_data_source* source, void*) {
    auto* body = static_cast<std::string*>(source->ptr);
    size_t n = std::min(length, body->size());
    std::memcpy(buf, body->data(), n);
    body->erase(0, n);
    if (body->empty()) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }
  static int onFrameRecv(nghttp2_session*, const nghttp2_frame* f, void* u) {
    Peer& p = self(u);
    ++p.frames[f->hd.type];
    if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
      p.streams[f->hd.stream_id].ended = true;
    }
    if (f->hd.type == NGHTTP2_GOAWAY) {
      p.goaway_last_stream_id = f->goaway.last_stream_id;
      p.goaway_code = f->goaway.error_code;
    } else if (f->hd.type == NGHTTP2_RST_STREAM) {
      p.streams[f->hd.stream_id].rst_received = true;
      p.last_rst_code = f->rst_stream.error_code;
    }
    return 0;
  }
  static int onBeginHeaders(nghttp2_session*, const nghttp2_frame* f, void* u) {
    Peer& p = self(u);
    ++p.streams[f->hd.stream_id].header_blocks;
    if (f->headers.cat == NGHTTP2_HCAT_REQUEST) p.request_ids.push_back(f->hd.stream_id);
    return 0;
  }
  static int onHeader(nghttp2_session*, const nghttp2_frame* f, const uint8_t* n, size_t nl,
                      const uint8_t* v, size_t vl, uint8_t flags, void* u) {
    StreamInfo& s = self(u).streams[f->hd.stream_id];
    s.headers.emplace_back(std::string(reinterpret_cast<const char*>(n), nl),
                           std::string(reinterpret_cast<const char*>(v), vl));
    if (flags & NGHTTP2_NV_FLAG_NO_INDEX) s.never_indexed.insert(s.headers.back().first);
    return 0;
  }
  static int onData(nghttp2_session*, uint8_t, int32_t id, const uint8_t* d, size_t len, void* u) {
    self(u).streams[id].body.append(reinterpret_cast<const char*>(d), len);
    return 0;
  }
  static int onClose(nghttp2_session*, int32_t id, uint32_t code, void* u) {
    StreamInfo& s = self(u).streams[id];
    s.closed = true;
    s.close_code = code;
    return 0;
  }

  std::vector<std::unique_ptr<std::string>> bodies_;
};

// Raw frames, for what a well-behaved nghttp2 will not send.
std::string frame(uint8_t type, uint8_t flags, uint32_t stream, std::string_view payload) {
  std::string f;
  size_t len = payload.size();
  f += static_cast<char>(len >> 16);
  f += static_cast<char>(len >> 8);
  f += static_cast<char>(len);
  f += static_cast<char>(type);
  f += static_cast<char>(flags);
  f += static_cast<char>(stream >> 24);
  f += static_cast<char>(stream >> 16);
  f += static_cast<char>(stream >> 8);
  f += static_cast<char>(stream);
  f.append(payload);
  return f;
}
constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
// HPACK: :method POST, :scheme http, :path /, :authority a.
const std::string kPostBlock("\x83\x86\x84\x41\x01\x61", 6);

template <typename Codec>
struct Wire {
  FakeOwner owner;
  Reader reader;
  std::set<Slab*> input_slabs;
  CodecError error;
  bool ok = true;
  int dispatched_scheduled = 0;

  bool feed(Codec& codec, std::string_view bytes) {
    BufferChain c = reader.read(bytes);
    for (const Slice& s : c.slices()) input_slabs.insert(s.slab());
    ok = codec.dispatch(c, error) && ok;
    return ok;
  }
  // Moves bytes both ways until both sides are quiet.
  void pump(Codec& codec, Peer& peer) {
    for (int i = 0; i < 1000; ++i) {
      bool any = false;
      if (owner.scheduled > dispatched_scheduled) {
        dispatched_scheduled = owner.scheduled;
        BufferChain empty;
        ok = codec.dispatch(empty, error) && ok;
        any = true;
      }
      std::string to_codec = peer.send();
      if (!to_codec.empty()) {
        feed(codec, to_codec);
        any = true;
      }
      std::string to_peer = owner.take();
      if (!to_peer.empty()) {
        peer.recv(to_peer);
        any = true;
      }
      if (!any) return;
    }
  }
};

class Http2ServerCodecTest : public ::testing::Test {
 protected:
  void start(Http2Settings settings = {}) {
    codec = std::make_unique<Http2ServerCodec>(wire.owner, callbacks, settings);
    wire.pump(*codec, peer);  // Preface and SETTINGS both ways.
  }
  int32_t get(std::string path = "/") {
    return peer.request(
        {{":method", "GET"}, {":scheme", "http"}, {":authority", "example.com"}, {":path", path}},
        true);
  }
  void pump() { wire.pump(*codec, peer); }
  // A map given to encodeHeaders lives until the codec's scheduled flush
  // has read it (codec.h), here until the test ends.
  HeaderMap& keep(HeaderMapPtr h) {
    held_.push_back(std::move(h));
    return *held_.back();
  }

  std::vector<HeaderMapPtr> held_;
  FakeServerCallbacks callbacks;
  Wire<Http2ServerCodec> wire;
  Peer peer{false};
  std::unique_ptr<Http2ServerCodec> codec;
};

TEST_F(Http2ServerCodecTest, Get) {
  start();
  int32_t id = get("/x?y=1");
  pump();
  ASSERT_EQ(callbacks.exchanges.size(), 1u);
  auto& x = *callbacks.exchanges[0];
  EXPECT_EQ(x.decoder.header(":method"), "GET");
  EXPECT_EQ(x.decoder.header(":scheme"), "http");
  EXPECT_EQ(x.decoder.header(":authority"), "example.com");
  EXPECT_EQ(x.decoder.header(":path"), "/x?y=1");
  EXPECT_TRUE(x.decoder.headers->namesLowercase());
  EXPECT_TRUE(x.decoder.ended);
  EXPECT_EQ(codec->activeStreams(), 1u);

  auto resp = makeHeaders({{":status", "200"},
                           {"Content-Type", "text/plain"},
                           {"Connection", "keep-alive"},
                           {"Transfer-Encoding", "chunked"},
                           {"te", "gzip"}});
  x.encoder->encodeHeaders(keep(std::move(resp)), false);
  BufferChain body = wire.reader.read("hello");
  x.encoder->encodeData(body, true);
  EXPECT_TRUE(body.empty());
  pump();
  const Peer::StreamInfo& s = peer.streams[id];
  EXPECT_EQ(s.get(":status"), "200");
  EXPECT_EQ(s.get("content-type"), "text/plain");
  EXPECT_EQ(s.get("connection"), "<none>");
  EXPECT_EQ(s.get("transfer-encoding"), "<none>");
  EXPECT_EQ(s.get("te"), "<none>");
  EXPECT_EQ(s.body, "hello");
  EXPECT_TRUE(s.closed);
  EXPECT_EQ(s.close_code, NGHTTP2_NO_ERROR);
  EXPECT_EQ(codec->activeStreams(), 0u);
  EXPECT_TRUE(x.callbacks.resets.empty());
  EXPECT_TRUE(wire.ok);
}

TEST_F(Http2ServerCodecTest, ReceivedFieldsOutliveTheSession) {
  // Names and values from HPACK's static table are kept as views into
  // nghttp2's static storage, the rest are copied: all of them stay readable
  // after the session that decoded them is gone, whether they came as
  // literals or from the dynamic table (the second request).
  start();
  for (int i = 0; i < 2; ++i) {
    peer.request({{":method", "GET"},
                  {":scheme", "http"},
                  {":authority", "example.com"},
                  {":path", "/p"},
                  {"accept-encoding", "gzip, deflate"},
                  {"user-agent", "agent/1"},
                  {"x-custom", "custom value"}},
                 true);
    pump();
  }
  ASSERT_EQ(callbacks.exchanges.size(), 2u);
  codec.reset();
  for (auto& x : callbacks.exchanges) {
    EXPECT_EQ(x->decoder.header(":method"), "GET");
    EXPECT_EQ(x->decoder.header(":scheme"), "http");
    EXPECT_EQ(x->decoder.header(":authority"), "example.com");
    EXPECT_EQ(x->decoder.header(":path"), "/p");
    EXPECT_EQ(x->decoder.header("accept-encoding"), "gzip, deflate");
    EXPECT_EQ(x->decoder.header("user-agent"), "agent/1");
    EXPECT_EQ(x->decoder.header("x-custom"), "custom value");
  }
}

TEST_F(Http2ServerCodecTest, HeadersAndBodiesEncodedOutsideDispatchLeaveInOneScheduledFlush) {
  // Response HEADERS and bodies encoded from outside the codec (the
  // upstream's read) are framed by a dispatch the owner runs later in the
  // loop iteration, one for all the streams that got any meanwhile.
  start();
  int32_t id1 = get("/1");
  int32_t id2 = get("/2");
  pump();
  ASSERT_EQ(callbacks.exchanges.size(), 2u);
  int writes = wire.owner.writes;
  int scheduled = wire.owner.scheduled;
  for (auto& x : callbacks.exchanges) {
    auto resp = makeHeaders({{":status", "200"}});
    x->encoder->encodeHeaders(keep(std::move(resp)), false);
  }
  EXPECT_EQ(wire.owner.writes, writes);
  EXPECT_EQ(wire.owner.scheduled, scheduled + 1);
  BufferChain b1 = wire.reader.read("one");
  BufferChain b2 = wire.reader.read("two");
  callbacks.exchanges[0]->encoder->encodeData(b1, true);
  callbacks.exchanges[1]->encoder->encodeData(b2, true);
  EXPECT_EQ(wire.owner.writes, writes);
  EXPECT_EQ(wire.owner.scheduled, scheduled + 1);
  BufferChain none;
  EXPECT_TRUE(codec->dispatch(none, wire.error));
  EXPECT_EQ(wire.owner.writes, writes + 1);
  pump();
  EXPECT_EQ(peer.streams[id1].body, "one");
  EXPECT_EQ(peer.streams[id2].body, "two");
  EXPECT_TRUE(peer.streams[id1].closed);
  EXPECT_TRUE(peer.streams[id2].closed);
  EXPECT_EQ(codec->activeStreams(), 0u);
  EXPECT_TRUE(wire.ok);
}

TEST_F(Http2ServerCodecTest, HostBecomesAuthorityAndCookiesJoin) {
  start();
  peer.request({{":method", "GET"},
                {":scheme", "http"},
                {":path", "/"},
                {"host", "h.example"},
                {"cookie", "a=1"},
                {"cookie", "b=2"}},
               true);
  pump();
  ASSERT_EQ(callbacks.exchanges.size(), 1u);
  EXPECT_EQ(callbacks.exchanges[0]->decoder.header(":authority"), "h.example");
  EXPECT_EQ(callbacks.exchanges[0]->decoder.header("cookie"), "a=1; b=2");
}

TEST_F(Http2ServerCodecTest, PostBodyIsZeroCopy) {
  start();
  std::string body(40000, 'b');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('a' + i % 26);
  peer.request({{":method", "POST"}, {":scheme", "http"}, {":authority", "a"}, {":path", "/up"}},
               false, body);
  pump();
  ASSERT_EQ(callbacks.exchanges.size(), 1u);
  auto& d = callbacks.exchanges[0]->decoder;
  EXPECT_EQ(d.body, body);
  EXPECT_TRUE(d.ended);
  ASSERT_FALSE(d.body_slabs.empty());
  // Every body slice is a view of a slab the bytes were read into.
  for (Slab* slab : d.body_slabs) EXPECT_TRUE(wire.input_slabs.count(slab)) << slab;
}

TEST_F(Http2ServerCodecTest, ResponseBodyMovesSlicesAndTrailersFollow) {
  start();
  int32_t id = peer.request(
      {{":method", "POST"}, {":scheme", "http"}, {":authority", "a"}, {":path", "/rpc"}}, false,
      "req");
  pump();
  ASSERT_EQ(callbacks.exchanges.size(), 1u);
  auto& x = *callbacks.exchanges[0];
  auto resp = makeHeaders({{":status", "200"}, {"content-type", "application/grpc"}});
  x.encoder->encodeHeaders(keep(std::move(resp)), false);
  Reader body_reader;
  BufferChain body = body_reader.read(std::string(3000, 'z'));
  Slab* body_slab = body.slices()[0].slab();
  x.encoder->encodeData(body, false);
  // The body slab itself went to the owner: DATA is framed, not copied.
  EXPECT_TRUE(wire.owner.written_slabs.count(body_slab));
  auto trailers = makeHeaders({{"grpc-status", "0"}, {"Grpc-Message", "ok"}});
  x.encoder->encodeTrailers(*trailers);
  pump();
  const Peer::StreamInfo& s = peer.streams[id];
  EXPECT_EQ(s.body, std::string(3000, 'z'));
  EXPECT_EQ(s.header_blocks, 2);
  EXPECT_EQ(s.get("grpc-status"), "0");
  EXPECT_EQ(s.get("grpc-message"), "ok");
  EXPECT_TRUE(s.closed);
  EXPECT_EQ(s.close_code, NGHTTP2_NO_ERROR);
  EXPECT_EQ(codec->activeStreams(), 0u);
}

// Response HEADERS without END_STREAM go alone; the first body or trailers
// attach the data provider, and later pieces resume it.
TEST_F(Http2ServerCodecTest, ResponseBodyInPiecesAndTrailersWithoutBody) {
  start();
  int32_t a = get("/a");
  int32_t b = get("/b");
  pump();
  ASSERT_EQ(callbacks.exchanges.size(), 2u);
  auto& xa = *callbacks.exchanges[0];
  auto& xb = *callbacks.exchanges[1];
  auto resp_a = makeHeaders({{":status", "200"}});
  xa.encoder->encodeHeaders(keep(std::move(resp_a)), false);
  auto resp_b = makeHeaders({{":status", "200"}, {"content-type", "application/grpc"}});
  xb.encoder->encodeHeaders(keep(std::move(resp_b)), false);
  pump();
  EXPECT_EQ(peer.streams[a].header_blocks, 1);
  EXPECT_FALSE(peer.streams[a].closed);
  Reader reader;
  BufferChain one = reader.read("one,");
  xa.encoder->encodeData(one, false);
  pump();
  BufferChain two = reader.read("two");
  xa.encoder->encodeData(two, false);
  BufferChain none;
  xa.encoder->encodeData(none, true);
  auto trailers = makeHeaders({{"grpc-status", "0"}});
  xb.encoder->encodeTrailers(*trailers);
  pump();
  EXPECT_EQ(peer.streams[a].body, "one,two");
  EXPECT_EQ(peer.streams[a].header_blocks, 1);
  EXPECT_TRUE(peer.streams[a].closed);
  EXPECT_EQ(peer.streams[a].close_code, NGHTTP2_NO_ERROR);
  EXPECT_EQ(peer.streams[b].body, "");
  EXPECT_EQ(peer.streams[b].header_blocks, 2);
  EXPECT_EQ(peer.streams[b].get("grpc-status"), "0");
  EXPECT_TRUE(peer.streams[b].closed);
  EXPECT_EQ(peer.streams[b].close_code, NGHTTP2_NO_ERROR);
  EXPECT_EQ(codec->activeStreams(), 0u);
}

TEST_F(Http2ServerCodecTest, RequestTrailers) {
  start();
  auto fields = std::vector<std::pair<std::string, std::string>>{
      {":method", "POST"}, {":scheme", "http"}, {":authority", "a"}, {":path", "/"}};
  std::vector<nghttp2_nv> nva = Peer::toNv(fields);
  int32_t id = nghttp2_submit_headers(peer.session, NGHTTP2_FLAG_NONE, -1, nullptr, nva.data(),
                                      nva.size(), nullptr);
  pump();
  auto tr = std::vector<std::pair<std::string, std::string>>{{"x-checksum", "abc"}};
  std::vector<nghttp2_nv> tnv = Peer::toNv(tr);
  nghttp2_submit_headers(peer.session, NGHTTP2_FLAG_END_STREAM, id, nullptr, tnv.data(), tnv.size(),
                         nullptr);
  pump();
  ASSERT_EQ(callbacks.exchanges.size(), 1u);
  auto& d = callbacks.exchanges[0]->decoder;
  ASSERT_TRUE(d.trailers);
  EXPECT_EQ(d.trailers->get("x-checksum").value_or(""), "abc");
  EXPECT_TRUE(d.ended);
}

TEST_F(Http2ServerCodecTest, ManyConcurrentStreams) {
  start();
  std::vector<int32_t> ids;
  for (int i = 0; i < 100; ++i) ids.push_back(get("/" + std::to_string(i)));
  pump();
  ASSERT_EQ(callbacks.exchanges.size(), 100u);
  EXPECT_EQ(codec->activeStreams(), 100u);
  // Answer in reverse order.
  for (int i = 99; i >= 0; --i) {
    auto& x = *callbacks.exchanges[i];
    auto resp = makeHeaders({{":status", "200"}});
    x.encoder->encodeHeaders(keep(std::move(resp)), false);
    BufferChain b = wire.reader.read(std::string(x.decoder.header(":path")));
    x.encoder->encodeData(b, true);
  }
  pump();
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(peer.streams[ids[i]].body, "/" + std::to_string(i));
    EXPECT_TRUE(peer.streams[ids[i]].closed);
  }
  EXPECT_EQ(codec->activeStreams(), 0u);
}

TEST_F(Http2ServerCodecTest, PeerResetReachesStream) {
  start();
  auto fields = std::vector<std::pair<std::string, std::string>>{
      {":method", "POST"}, {":scheme", "http"}, {":authority", "a"}, {":path", "/"}};
  std::vector<nghttp2_nv> nva = Peer::toNv(fields);
  int32_t id = nghttp2_submit_headers(peer.session, NGHTTP2_FLAG_NONE, -1, nullptr, nva.data(),
                                      nva.size(), nullptr);
  pump();
  ASSERT_EQ(callbacks.exchanges.size(), 1u);
  nghttp2_submit_rst_stream(peer.session, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
  pump();
  auto& x = *callbacks.exchanges[0];
  ASSERT_EQ(x.callbacks.resets.size(), 1u);
  EXPECT_EQ(x.callbacks.resets[0], ResetReason::kRemoteReset);
  EXPECT_EQ(codec->stats().rx_reset, 1u);
  EXPECT_EQ(codec->activeStreams(), 0u);
  EXPECT_TRUE(wire.ok);
}

TEST_F(Http2ServerCodecTest, LocalResetSendsRstStream) {
  start();
  int32_t id = get();
  pump();
  auto& x = *callbacks.exchanges[0];
  x.encoder->stream().resetStream(ResetReason::kLocalReset);
  pump();
  EXPECT_TRUE(peer.streams[id].rst_received);
  EXPECT_EQ(peer.last_rst_code, NGHTTP2_CANCEL);
  ASSERT_EQ(x.callbacks.resets.size(), 1u);
  EXPECT_EQ(x.callbacks.resets[0], ResetReason::kLocalReset);
  EXPECT_EQ(codec->stats().tx_reset, 1u);
  EXPECT_EQ(codec->activeStreams(), 0u);
  // The connection lives on.
  get();
  pump();
  EXPECT_EQ(callbacks.exchanges.size(), 2u);
}

TEST_F(Http2ServerCodecTest, GoAwayDrainsThenCloses) {
  start();
  get();
  int32_t second = get();
  pump();
  codec->goAway();
  pump();
  EXPECT_EQ(peer.goaway_last_stream_id, second);
  EXPECT_EQ(peer.goaway_code, NGHTTP2_NO_ERROR);
  EXPECT_EQ(wire.owner.close_after_flush, 0);
  for (auto& x : callbacks.exchanges) {
    auto resp = makeHeaders({{":status", "204"}});
    x->encoder->encodeHeaders(keep(std::move(resp)), true);
  }
  pump();
  EXPECT_EQ(wire.owner.close_after_flush, 1);
}

TEST_F(Http2ServerCodecTest, PeerGoAwayWithNoStreamsCloses) {
  start();
  nghttp2_submit_goaway(peer.session, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, nullptr, 0);
  pump();
  EXPECT_EQ(wire.owner.close_after_flush, 1);
}

TEST_F(Http2ServerCodecTest, ReadDisabledStreamKeepsWindowClosed) {
  Http2Settings settings;
  settings.initial_stream_window_size = 16384;
  start(settings);
  callbacks.on_new = [](FakeServerCallbacks::Exchange& x) {
    x.encoder->stream().readDisable(true);
  };
  std::string body(100000, 'q');
  int32_t id = peer.request(
      {{":method", "POST"}, {":scheme", "http"}, {":authority", "a"}, {":path", "/"}}, false, body);
  pump();
  ASSERT_EQ(callbacks.exchanges.size(), 1u);
  auto& x = *callbacks.exchanges[0];
  EXPECT_EQ(x.decoder.body.size(), 0u);
  // The peer sent one window's worth and stopped.
  EXPECT_EQ(nghttp2_session_get_stream_remote_window_size(peer.session, id), 0);
  int window_updates = peer.frames[NGHTTP2_WINDOW_UPDATE];
  x.encoder->stream().readDisable(true);  // Nested.
  x.encoder->stream().readDisable(false);
  pump();
  EXPECT_EQ(x.decoder.body.size(), 0u);
  x.encoder->stream().readDisable(false);
  pump();
  EXPECT_GT(peer.frames[NGHTTP2_WINDOW_UPDATE], window_updates);
  EXPECT_EQ(x.decoder.body, body);
  EXPECT_TRUE(x.decoder.ended);
}

TEST_F(Http2ServerCodecTest, EndedStreamsBodyGivesTheConnectionWindowBack) {
  // A body whose END_STREAM has arrived is consumed for the connection only
  // (the peer sends nothing more on the stream): the connection's window
  // still reopens, whether the body is delivered at once or after a
  // read-disable. nghttp2 sends a connection WINDOW_UPDATE once half the
  // window is consumed: here, when the second of two 16 KiB DATA frames, the
  // one with END_STREAM, is.
  Http2Settings settings;
  settings.initial_connection_window_size = 65535;  // nghttp2 updates it at half.
  start(settings);
  std::string body(32768, 'q');
  peer.request({{":method", "POST"}, {":scheme", "http"}, {":authority", "a"}, {":path", "/"}},
               false, body);
  pump();
  ASSERT_EQ(callbacks.exchanges.size(), 1u);
  EXPECT_EQ(callbacks.exchanges[0]->decoder.body, body);
  EXPECT_TRUE(callbacks.exchanges[0]->decoder.ended);
  EXPECT_EQ(nghttp2_session_get_remote_window_size(peer.session), 65535);

  callbacks.on_new = [](FakeServerCallbacks::Exchange& x) {
    x.encoder->stream().readDisable(true);
  };
  peer.request({{":method", "POST"}, {":scheme", "http"}, {":authority", "a"}, {":path", "/"}},
               false, body);
  pump();
  ASSERT_EQ(callbacks.exchanges.size(), 2u);
  auto& x = *callbacks.exchanges[1];
  EXPECT_EQ(x.decoder.body.size(), 0u);
  EXPECT_EQ(nghttp2_session_get_remote_window_size(peer.session), 65535 - 32768);
  x.encoder->stream().readDisable(false);
  pump();
  EXPECT_EQ(x.decoder.body, body);
  EXPECT_TRUE(x.decoder.ended);
  EXPECT_EQ(nghttp2_session_get_remote_window_size(peer.session), 65535);
  EXPECT_TRUE(wire.ok);
}

TEST_F(Http2ServerCodecTest, StreamWriteWatermarks) {
  Http2Settings settings;
  settings.stream_write_buffer_high_watermark = 16384;
  start(settings);
  int32_t id = get();
  pump();
  auto& x = *callbacks.exchanges[0];
  auto resp = makeHeaders({{":status", "200"}});
  x.encoder->encodeHeaders(keep(std::move(resp)), false);
  // 100000 bytes against the peer's 65535-byte window: the rest waits.
  BufferChain b = wire.reader.read(std::string(100000, 'w'));
  x.encoder->encodeData(b, false);
  EXPECT_EQ(x.callbacks.above, 1);
  EXPECT_EQ(x.callbacks.below, 0);
  pump();  // The peer's WINDOW_UPDATEs let the rest out.
  EXPECT_EQ(x.callbacks.below, 1);
  EXPECT_EQ(peer.streams[id].body.size(), 100000u);
  BufferChain empty;
  x.encoder->encodeData(empty, true);
  pump();
  EXPECT_TRUE(peer.streams[id].closed);
}

TEST_F(Http2ServerCodecTest, ConnectionWatermarksReachStreams) {
  start();
  get();
  pump();
  auto& x = *callbacks.exchanges[0];
  codec->onAboveWriteBufferHighWatermark();
  codec->onBelowWriteBufferLowWatermark();
  EXPECT_EQ(x.callbacks.above, 1);
  EXPECT_EQ(x.callbacks.below, 1);
}

TEST_F(Http2ServerCodecTest, TransportCloseResetsStreams) {
  start();
  get();
  get();
  pump();
  codec->onTransportClosed(ResetReason::kConnectionTermination);
  for (auto& x : callbacks.exchanges) {
    ASSERT_EQ(x->callbacks.resets.size(), 1u);
    EXPECT_EQ(x->callbacks.resets[0], ResetReason::kConnectionTermination);
  }
  EXPECT_EQ(codec->activeStreams(), 0u);
}

TEST_F(Http2ServerCodecTest, MalformedRequestEndsConnection) {
  // Envoy's default (override_stream_error_on_invalid_http_message unset):
  // a malformed request ends the whole connection, with a GOAWAY.
  start();
  int32_t bad = peer.request({{":method", "GET"}, {":scheme", "http"}, {":authority", "a"}}, true);
  pump();
  EXPECT_TRUE(callbacks.exchanges.empty());
  EXPECT_FALSE(wire.ok);
  EXPECT_EQ(wire.error.detail, "http2.invalid_http_messaging: Violation in HTTP messaging rule");
  EXPECT_EQ(wire.error.details, "http2.violation.of.messaging.rule");  // Envoy's, logged with DPE.
  EXPECT_EQ(codec->stats().rx_messaging_error, 1u);
  EXPECT_EQ(wire.owner.close_after_flush, 1);
  EXPECT_EQ(peer.goaway_code, NGHTTP2_PROTOCOL_ERROR);
  EXPECT_EQ(peer.goaway_last_stream_id, bad);
}

TEST_F(Http2ServerCodecTest, InvalidFieldEndsConnectionWithEnvoysDetails) {
  start();
  int32_t bad = peer.request({{":method", "GET"},
                              {":scheme", "http"},
                              {":path", "/"},
                              {":authority", "a"},
                              {"connection", "close"}},
                             true);
  pump();
  EXPECT_TRUE(callbacks.exchanges.empty());
  EXPECT_FALSE(wire.ok);
  EXPECT_EQ(wire.error.detail,
            "http2.invalid_http_messaging: Invalid HTTP header field was received");
  EXPECT_EQ(wire.error.details, "http2.invalid.header.field");
  EXPECT_EQ(codec->stats().rx_messaging_error, 1u);
  EXPECT_EQ(peer.goaway_code, NGHTTP2_PROTOCOL_ERROR);
  EXPECT_EQ(peer.goaway_last_stream_id, bad);
}

TEST_F(Http2ServerCodecTest, OversizedHeaderListResetsStream) {
  Http2Settings settings;
  settings.max_header_list_size_kb = 1;
  start(settings);
  int32_t id = peer.request({{":method", "GET"},
                             {":scheme", "http"},
                             {":authority", "a"},
                             {":path", "/"},
                             {"x-big", std::string(2000, 'x')}},
                            true);
  pump();
  EXPECT_TRUE(peer.streams[id].rst_received);
  EXPECT_EQ(codec->stats().header_overflow, 1u);
  EXPECT_TRUE(callbacks.exchanges.empty());
  EXPECT_TRUE(wire.ok);
  get();
  pump();
  EXPECT_EQ(callbacks.exchanges.size(), 1u);
}

TEST_F(Http2ServerCodecTest, ByteByByteRequest) {
  codec = std::make_unique<Http2ServerCodec>(wire.owner, callbacks);
  std::string body = "hello, byte by byte";
  peer.request({{":method", "PUT"}, {":scheme", "http"}, {":authority", "a"}, {":path", "/b"}},
               false, body);
  std::string bytes = peer.send();
  for (char c : bytes) ASSERT_TRUE(wire.feed(*codec, std::string_view(&c, 1)));
  ASSERT_EQ(callbacks.exchanges.size(), 1u);
  auto& d = callbacks.exchanges[0]->decoder;
  EXPECT_EQ(d.header(":method"), "PUT");
  EXPECT_EQ(d.header(":path"), "/b");
  EXPECT_EQ(d.body, body);
  EXPECT_TRUE(d.ended);
}

TEST_F(Http2ServerCodecTest, BadPrefaceFails) {
  codec = std::make_unique<Http2ServerCodec>(wire.owner, callbacks);
  EXPECT_FALSE(wire.feed(*codec, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
  EXPECT_EQ(wire.error.detail, "http2.invalid_preface");
}

TEST_F(Http2ServerCodecTest, RapidResetClosesConnection) {
  Http2Settings settings;
  settings.stream_reset_rate_burst = 10;
  settings.stream_reset_rate_per_sec = 1;
  start(settings);
  std::string attack;
  for (int i = 0; i < 50; ++i) {
    int32_t id = get();
    attack += peer.send();
    nghttp2_submit_rst_stream(peer.session, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    attack += peer.send();
  }
  wire.feed(*codec, attack);
  EXPECT_FALSE(wire.ok);
  EXPECT_EQ(wire.error.detail, "http2.too_many_stream_resets");
  EXPECT_EQ(codec->stats().rapid_reset, 1u);
  EXPECT_EQ(wire.owner.close_after_flush, 1);
  BufferChain more = wire.reader.read(peer.send());
  CodecError e;
  EXPECT_FALSE(codec->dispatch(more, e));
}

TEST_F(Http2ServerCodecTest, ContinuationFloodClosesConnection) {
  codec = std::make_unique<Http2ServerCodec>(wire.owner, callbacks);
  std::string attack(kPreface);
  attack += frame(NGHTTP2_SETTINGS, 0, 0, "");
  attack += frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_STREAM, 1, kPostBlock);
  const std::string field("\x00\x03x-a\x01\x62", 7);  // Literal "x-a: b".
  for (int i = 0; i < 20; ++i) attack += frame(NGHTTP2_CONTINUATION, 0, 1, field);
  EXPECT_FALSE(wire.feed(*codec, attack));
  EXPECT_EQ(wire.error.detail, "http2.too_many_continuations");
  EXPECT_EQ(codec->stats().protocol_error, 1u);
}

TEST_F(Http2ServerCodecTest, EmptyDataFloodClosesConnection) {
  codec = std::make_unique<Http2ServerCodec>(wire.owner, callbacks);
  std::string attack(kPreface);
  attack += frame(NGHTTP2_SETTINGS, 0, 0, "");
  attack += frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 1, kPostBlock);
  attack += frame(NGHTTP2_DATA, 0, 1, "");
  EXPECT_TRUE(wire.feed(*codec, attack));  // One empty frame is allowed.
  EXPECT_FALSE(wire.feed(*codec, frame(NGHTTP2_DATA, 0, 1, "")));
  EXPECT_EQ(wire.error.detail, "http2.inbound_empty_frames_flood");
  EXPECT_EQ(codec->stats().inbound_empty_frames_flood, 1u);
  ASSERT_EQ(callbacks.exchanges.size(), 1u);
  EXPECT_EQ(callbacks.exchanges[0]->callbacks.resets.size(), 1u);
  // A GOAWAY went out.
  EXPECT_NE(wire.owner.take().find(std::string("\x07\x00\x00\x00\x00\x00", 6)), std::string::npos);
}

TEST_F(Http2ServerCodecTest, PriorityFloodClosesConnection) {
  Http2Settings settings;
  settings.max_inbound_priority_frames_per_stream = 5;
  codec = std::make_unique<Http2ServerCodec>(wire.owner, callbacks, settings);
  std::string attack(kPreface);
  attack += frame(NGHTTP2_SETTINGS, 0, 0, "");
  const std::string prio("\x00\x00\x00\x00\x10", 5);
  for (int i = 0; i < 10; ++i) attack += frame(NGHTTP2_PRIORITY, 0, 3 + 2 * i, prio);
  EXPECT_FALSE(wire.feed(*codec, attack));
  EXPECT_EQ(wire.error.detail, "http2.inbound_priority_frames_flood");
  EXPECT_EQ(codec->stats().inbound_priority_frames_flood, 1u);
}

TEST_F(Http2ServerCodecTest, OutboundControlFloodClosesConnection) {
  Http2Settings settings;
  settings.max_outbound_control_frames = 20;
  start(settings);
  codec->onAboveWriteBufferHighWatermark();  // The socket stopped taking bytes.
  for (int i = 0; i < 50; ++i) nghttp2_submit_ping(peer.session, NGHTTP2_FLAG_NONE, nullptr);
  wire.feed(*codec, peer.send());
  EXPECT_FALSE(wire.ok);
  EXPECT_EQ(wire.error.detail, "http2.outbound_control_flood");
  EXPECT_EQ(codec->stats().outbound_control_flood, 1u);
  EXPECT_EQ(codec->stats().outbound_flood, 0u);
}

TEST_F(Http2ServerCodecTest, InformationalThenFinalResponse) {
  start();
  int32_t id = get();
  pump();
  auto& x = *callbacks.exchanges[0];
  auto info = makeHeaders({{":status", "103"}, {"Link", "</a.css>; rel=preload"}});
  x.encoder->encode1xxHeaders(*info);
  auto resp = makeHeaders({{":status", "bogus"}});
  x.encoder->encodeHeaders(keep(std::move(resp)), true);
  pump();
  const Peer::StreamInfo& s = peer.streams[id];
  EXPECT_EQ(s.header_blocks, 2);
  EXPECT_EQ(s.get("link"), "</a.css>; rel=preload");
  EXPECT_EQ(s.headers.back().second, "500");  // The final :status, made valid.
  EXPECT_TRUE(s.closed);
  EXPECT_EQ(s.close_code, NGHTTP2_NO_ERROR);
}

// RFC 8441 with allow_connect: the SETTINGS announce extended CONNECT, one
// reaches the user as the HTTP/1.1 Upgrade it stands for (as Envoy's codec
// hands it on), and an upstream's 101 leaves as a 200 without the
// connection-specific fields; the stream then carries bytes both ways.
TEST_F(Http2ServerCodecTest, ExtendedConnectBecomesAnUpgradeAnd101Becomes200) {
  Http2Settings settings;
  settings.allow_connect = true;
  start(settings);
  EXPECT_EQ(
      nghttp2_session_get_remote_settings(peer.session, NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL),
      1u);
  int32_t id = peer.request({{":method", "CONNECT"},
                             {":protocol", "websocket"},
                             {":scheme", "https"},
                             {":path", "/chat"},
                             {":authority", "example.com"},
                             {"sec-websocket-version", "13"}},
                            false, "frames in");
  pump();
  ASSERT_EQ(callbacks.exchanges.size(), 1u);
  auto& x = *callbacks.exchanges[0];
  EXPECT_EQ(x.decoder.header(":method"), "GET");
  EXPECT_EQ(x.decoder.header(":path"), "/chat");
  EXPECT_EQ(x.decoder.header(":authority"), "example.com");
  EXPECT_EQ(x.decoder.header("upgrade"), "websocket");
  EXPECT_EQ(x.decoder.header("connection"), "upgrade");
  EXPECT_FALSE(x.decoder.headers->has(":protocol"));
  EXPECT_EQ(upgradeType(*x.decoder.headers), "websocket");
  EXPECT_EQ(x.decoder.header("sec-websocket-version"), "13");
  EXPECT_EQ(x.decoder.body, "frames in");
  EXPECT_TRUE(x.decoder.ended);  // The peer half-closed after its bytes.

  auto resp = makeHeaders({{":status", "101"},
                           {"connection", "upgrade"},
                           {"upgrade", "websocket"},
                           {"sec-websocket-accept", "x"}});
  x.encoder->encodeHeaders(keep(std::move(resp)), false);
  BufferChain out = wire.reader.read("frames out");
  x.encoder->encodeData(out, false);
  pump();
  const Peer::StreamInfo& s = peer.streams[id];
  EXPECT_EQ(s.get(":status"), "200");
  EXPECT_EQ(s.get("connection"), "<none>");
  EXPECT_EQ(s.get("upgrade"), "<none>");
  EXPECT_EQ(s.get("sec-websocket-accept"), "x");
  EXPECT_EQ(s.body, "frames out");
  EXPECT_FALSE(s.closed);
  EXPECT_TRUE(wire.ok);
}

// Without allow_connect no SETTINGS_ENABLE_CONNECT_PROTOCOL goes out, and a
// :protocol makes the request malformed.
TEST_F(Http2ServerCodecTest, ProtocolWithoutAllowConnectIsMalformed) {
  start();
  EXPECT_EQ(
      nghttp2_session_get_remote_settings(peer.session, NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL),
      0u);
  peer.request({{":method", "CONNECT"},
                {":protocol", "websocket"},
                {":scheme", "https"},
                {":path", "/chat"},
                {":authority", "example.com"}},
               false);
  pump();
  EXPECT_TRUE(callbacks.exchanges.empty());
  EXPECT_FALSE(wire.ok);
  EXPECT_EQ(peer.goaway_code, static_cast<uint32_t>(NGHTTP2_PROTOCOL_ERROR));
  EXPECT_EQ(codec->stats().rx_messaging_error, 1u);
}

TEST_F(Http2ServerCodecTest, WindowUpdateFloodClosesConnection) {
  codec = std::make_unique<Http2ServerCodec>(wire.owner, callbacks);
  std::string attack(kPreface);
  attack += frame(NGHTTP2_SETTINGS, 0, 0, "");
  const std::string increment("\x00\x00\x00\x01", 4);
  for (int i = 0; i < 10; ++i) attack += frame(NGHTTP2_WINDOW_UPDATE, 0, 0, increment);
  EXPECT_FALSE(wire.feed(*codec, attack));
  EXPECT_EQ(wire.error.detail, "http2.inbound_window_update_frames_flood");
  EXPECT_EQ(codec->stats().inbound_window_update_frames_flood, 1u);
}

TEST_F(Http2ServerCodecTest, LocalReplyFromInsideDecodeHeaders) {
  start();
  callbacks.on_new = [](FakeServerCallbacks::Exchange& x) {
    x.decoder.on_headers = [&x] {
      auto resp = makeHeaders({{":status", "403"}});
      x.encoder->encodeHeaders(*resp, false);
      Reader r;
      BufferChain b = r.read("denied");
      x.encoder->encodeData(b, true);
    };
  };
  int32_t id = get();
  pump();
  EXPECT_EQ(peer.streams[id].get(":status"), "403");
  EXPECT_EQ(peer.streams[id].body, "denied");
  EXPECT_TRUE(peer.streams[id].closed);
  EXPECT_EQ(codec->activeStreams(), 0u);
}

TEST_F(Http2ServerCodecTest, ResetFromInsideDecodeCallbacks) {
  start();
  callbacks.on_new = [](FakeServerCallbacks::Exchange& x) {
    x.decoder.on_headers = [&x] { x.encoder->stream().resetStream(ResetReason::kLocalReset); };
  };
  int32_t first =
      peer.request({{":method", "POST"}, {":scheme", "http"}, {":authority", "a"}, {":path", "/"}},
                   false, std::string(50000, 'r'));
  pump();
  EXPECT_TRUE(peer.streams[first].rst_received);
  ASSERT_EQ(callbacks.exchanges.size(), 1u);
  EXPECT_EQ(callbacks.exchanges[0]->decoder.body, "");
  // Reset from inside decodeData, with more frames of the stream in the same read.
  callbacks.on_new = nullptr;
  int32_t second =
      peer.request({{":method", "POST"}, {":scheme", "http"}, {":authority", "a"}, {":path", "/"}},
                   false, std::string(50000, 's'));
  std::string bytes = peer.send();
  wire.feed(*codec, bytes.substr(0, 200));
  ASSERT_EQ(callbacks.exchanges.size(), 2u);
  auto& x = *callbacks.exchanges[1];
  x.encoder->stream().resetStream(ResetReason::kLocalReset);
  wire.feed(*codec, bytes.substr(200));
  pump();
  EXPECT_TRUE(peer.streams[second].rst_received);
  EXPECT_EQ(codec->activeStreams(), 0u);
  EXPECT_TRUE(wire.ok);
  // The connection window came back for the discarded bytes: a third upload fits.
  int32_t third =
      peer.request({{":method", "POST"}, {":scheme", "http"}, {":authority", "a"}, {":path", "/"}},
                   false, std::string(70000, 't'));
  pump();
  ASSERT_EQ(callbacks.exchanges.size(), 3u);
  EXPECT_EQ(callbacks.exchanges[2]->decoder.body.size(), 70000u);
  (void)third;
}

// The client codec against an nghttp2 server.
class Http2ClientCodecTest : public ::testing::Test {
 protected:
  void start(Http2Settings settings = {}, std::vector<nghttp2_settings_entry> peer_settings = {}) {
    peer = std::make_unique<Peer>(true, peer_settings);
    codec = std::make_unique<Http2ClientCodec>(wire.owner, settings);
    pump();
  }
  void pump() { wire.pump(*codec, *peer); }
  // A map given to encodeHeaders lives until the codec's scheduled flush
  // has read it (codec.h), here until the test ends.
  HeaderMap& keep(HeaderMapPtr h) {
    held_.push_back(std::move(h));
    return *held_.back();
  }
  RequestEncoder& get(FakeDecoder& decoder, FakeStreamCallbacks& cbs, std::string path = "/") {
    RequestEncoder& e = codec->newStream(decoder);
    e.stream().setCallbacks(&cbs);
    paths_.push_back(std::move(path));
    auto h = makeHeaders({{":method", "GET"},
                          {":scheme", "http"},
                          {":path", paths_.back()},
                          {"Host", "up.example"},
                          {"Connection", "keep-alive"},
                          {"X-Mixed-Case", "v"}});
    e.encodeHeaders(keep(std::move(h)), true);
    return e;
  }

  std::vector<HeaderMapPtr> held_;
  Wire<Http2ClientCodec> wire;
  std::unique_ptr<Peer> peer;
  std::unique_ptr<Http2ClientCodec> codec;
  std::deque<std::string> paths_;  // The maps above view these: a deque keeps them put.
};

// An HTTP/1.1 Upgrade leaves as an RFC 8441 extended CONNECT, which the
// peer (nghttp2 with its message checks on and the setting sent) accepts;
// its 200 reaches the decoder as the Upgrade's 101. Any other status is
// left alone.
TEST_F(Http2ClientCodecTest, UpgradeGoesAsExtendedConnectAnd200Becomes101) {
  start({}, {{NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1}});
  std::vector<int32_t> ids;
  FakeDecoder d[2];
  FakeStreamCallbacks cbs[2];
  for (int i = 0; i < 2; ++i) {
    RequestEncoder& e = codec->newStream(d[i]);
    e.stream().setCallbacks(&cbs[i]);
    auto h = makeHeaders({{":method", "GET"},
                          {":scheme", "http"},
                          {":path", i == 0 ? "/chat" : "/refuse"},
                          {":authority", "up.example"},
                          {"connection", "Upgrade"},
                          {"upgrade", "websocket"},
                          {"sec-websocket-key", "k"}});
    e.encodeHeaders(keep(std::move(h)), false);
    BufferChain out = wire.reader.read("frame");
    e.encodeData(out, false);
  }
  pump();
  ASSERT_EQ(peer->request_ids.size(), 2u);
  const Peer::StreamInfo& s = peer->streams[peer->request_ids[0]];
  EXPECT_EQ(s.get(":method"), "CONNECT");
  EXPECT_EQ(s.get(":protocol"), "websocket");
  EXPECT_EQ(s.get(":scheme"), "http");
  EXPECT_EQ(s.get(":path"), "/chat");
  EXPECT_EQ(s.get(":authority"), "up.example");
  EXPECT_EQ(s.get("upgrade"), "<none>");
  EXPECT_EQ(s.get("connection"), "<none>");
  EXPECT_EQ(s.get("sec-websocket-key"), "k");
  EXPECT_EQ(s.body, "frame");
  EXPECT_TRUE(wire.ok);

  for (int i = 0; i < 2; ++i) {
    peer->respond(peer->request_ids[static_cast<size_t>(i)], {{":status", i == 0 ? "200" : "404"}},
                  "", false);
  }
  pump();
  EXPECT_EQ(d[0].header(":status"), "101");
  EXPECT_EQ(d[0].header("upgrade"), "websocket");
  EXPECT_EQ(d[0].header("connection"), "upgrade");
  EXPECT_EQ(d[1].header(":status"), "404");
  EXPECT_EQ(d[1].header("upgrade"), "<none>");
}

TEST_F(Http2ClientCodecTest, GetWithInformationalBodyAndTrailers) {
  start();
  FakeDecoder d;
  FakeStreamCallbacks cbs;
  get(d, cbs, "/r");
  pump();
  ASSERT_EQ(peer->request_ids.size(), 1u);
  int32_t id = peer->request_ids[0];
  const Peer::StreamInfo& s = peer->streams[id];
  EXPECT_EQ(s.get(":authority"), "up.example");
  EXPECT_EQ(s.get(":path"), "/r");
  EXPECT_EQ(s.get(":scheme"), "http");
  EXPECT_EQ(s.get("host"), "<none>");
  EXPECT_EQ(s.get("connection"), "<none>");
  EXPECT_EQ(s.get("x-mixed-case"), "v");

  auto info = std::vector<std::pair<std::string, std::string>>{{":status", "103"}, {"link", "x"}};
  std::vector<nghttp2_nv> inv = Peer::toNv(info);
  nghttp2_submit_headers(peer->session, NGHTTP2_FLAG_NONE, id, nullptr, inv.data(), inv.size(),
                         nullptr);
  pump();
  ASSERT_EQ(d.informational.size(), 1u);
  EXPECT_EQ(d.informational[0]->status(), 103);

  // Response with a body, then trailers.
  auto fields = std::vector<std::pair<std::string, std::string>>{{":status", "200"}};
  std::vector<nghttp2_nv> nva = Peer::toNv(fields);
  nghttp2_submit_headers(peer->session, NGHTTP2_FLAG_NONE, id, nullptr, nva.data(), nva.size(),
                         nullptr);
  pump();
  EXPECT_EQ(d.header(":status"), "200");
  EXPECT_FALSE(d.ended);
  std::string payload = "response body";
  nghttp2_data_provider prd;
  prd.source.ptr = &payload;
  prd.read_callback = [](nghttp2_session*, int32_t, uint8_t* buf, size_t, uint32_t* flags,
                         nghttp2_data_source* src, void*) -> ssize_t {
    auto* p = static_cast<std::string*>(src->ptr);
    std::memcpy(buf, p->data(), p->size());
    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    return static_cast<ssize_t>(p->size());
  };
  nghttp2_submit_data(peer->session, NGHTTP2_FLAG_NONE, id, &prd);
  pump();
  auto tr = std::vector<std::pair<std::string, std::string>>{{"grpc-status", "0"}};
  std::vector<nghttp2_nv> tnv = Peer::toNv(tr);
  nghttp2_submit_trailer(peer->session, id, tnv.data(), tnv.size());
  pump();
  EXPECT_EQ(d.body, "response body");
  for (Slab* slab : d.body_slabs) EXPECT_TRUE(wire.input_slabs.count(slab));
  ASSERT_TRUE(d.trailers);
  EXPECT_EQ(d.trailers->get("grpc-status").value_or(""), "0");
  EXPECT_TRUE(d.ended);
  EXPECT_EQ(codec->activeStreams(), 0u);
  EXPECT_TRUE(cbs.resets.empty());
  EXPECT_TRUE(codec->canStartStream());
}

TEST_F(Http2ClientCodecTest, RequestIdIsNeverIndexedButOneIn64) {
  // A fresh x-request-id on every request would only churn the HPACK table:
  // it goes as a never-indexed literal, except the session's first id and
  // every 64th after it, which are indexed so that a table entry names the
  // field for the others.
  start();
  constexpr int kRequests = 66;
  std::vector<FakeDecoder> decoders(kRequests);
  std::vector<FakeStreamCallbacks> callbacks(kRequests);
  std::vector<std::string> ids;
  for (int i = 0; i < kRequests; ++i) ids.push_back("id-" + std::to_string(i));
  for (int i = 0; i < kRequests; ++i) {
    RequestEncoder& e = codec->newStream(decoders[i]);
    e.stream().setCallbacks(&callbacks[i]);
    auto h = makeHeaders({{":method", "GET"},
                          {":scheme", "http"},
                          {":path", "/"},
                          {":authority", "a"},
                          {"X-Request-Id", ids[i]},
                          {"x-other", "v"}});
    e.encodeHeaders(keep(std::move(h)), true);
  }
  pump();
  ASSERT_EQ(peer->request_ids.size(), static_cast<size_t>(kRequests));
  for (int i = 0; i < kRequests; ++i) {
    const Peer::StreamInfo& s = peer->streams[peer->request_ids[i]];
    EXPECT_EQ(s.get("x-request-id"), ids[i]);
    EXPECT_EQ(s.get("x-other"), "v");
    if (i % 64 == 0) {
      EXPECT_TRUE(s.never_indexed.empty()) << i;
    } else {
      EXPECT_EQ(s.never_indexed, std::set<std::string>{"x-request-id"}) << i;
    }
  }
}

TEST_F(Http2ClientCodecTest, FieldsLowercasedAndFilteredAtEveryNameLength) {
  // Names are checked for uppercase 8 bytes at a time (4 to 7 as two
  // overlapping halves) and filtered by their length first: an uppercase
  // letter anywhere, at lengths on both sides of 4, 8 and 16, and every
  // forbidden name in any case. '_' and '^' share uppercase's clear 0x20
  // bit, so words with them take the exact test.
  start();
  FakeDecoder d;
  FakeStreamCallbacks cbs;
  RequestEncoder& e = codec->newStream(d);
  e.stream().setCallbacks(&cbs);
  auto h = makeHeaders({{":method", "GET"},
                        {":scheme", "http"},
                        {":path", "/"},
                        {":authority", "a"},
                        {"X", "1"},
                        {"Abcd", "4"},
                        {"abCde", "5"},
                        {"abcdeF", "6"},
                        {"etag", "e"},
                        {"abcdefG", "7"},
                        {"abcdefgH", "8"},
                        {"Abcdefghi", "9"},
                        {"abcdefghijklmnoP", "16"},
                        {"abcdefghIjklmnopq", "17"},
                        {"abcdefghijklmnopqrstuvwxyZ", "26"},
                        {"TE", "trailers"},
                        {"Te", "gzip"},
                        {"HOST", "h"},
                        {"Upgrade", "websocket"},
                        {"Keep-Alive", "5"},
                        {"CONNECTION", "close"},
                        {"Proxy-Connection", "close"},
                        {"Transfer-Encoding", "chunked"},
                        {"upgradE", "x"},
                        {"x-upgrade", "kept"},
                        {"ab_cd^ef", "w"},
                        {"x_Under", "u"},
                        {"under_score_name", "v"}});
  e.encodeHeaders(keep(std::move(h)), true);
  pump();
  ASSERT_EQ(peer->request_ids.size(), 1u);
  const Peer::StreamInfo& s = peer->streams[peer->request_ids[0]];
  std::vector<std::pair<std::string, std::string>> regular;
  for (const auto& [n, v] : s.headers) {
    if (n[0] != ':') regular.emplace_back(n, v);
  }
  std::vector<std::pair<std::string, std::string>> want = {{"x", "1"},
                                                           {"abcd", "4"},
                                                           {"abcde", "5"},
                                                           {"abcdef", "6"},
                                                           {"etag", "e"},
                                                           {"abcdefg", "7"},
                                                           {"abcdefgh", "8"},
                                                           {"abcdefghi", "9"},
                                                           {"abcdefghijklmnop", "16"},
                                                           {"abcdefghijklmnopq", "17"},
                                                           {"abcdefghijklmnopqrstuvwxyz", "26"},
                                                           {"te", "trailers"},
                                                           {"x-upgrade", "kept"},
                                                           {"ab_cd^ef", "w"},
                                                           {"x_under", "u"},
                                                           {"under_score_name", "v"}};
  EXPECT_EQ(regular, want);
  EXPECT_TRUE(wire.ok);
}

TEST_F(Http2ClientCodecTest, DecodedNamesAreLowercaseAndNamesAddedLaterAreLowercased) {
  // A decoded map's names are lowercase (nghttp2 refuses any other), so the
  // encoder skips looking at them; a name added later in another spelling
  // is lowercased on the wire all the same.
  start();
  FakeDecoder d;
  FakeStreamCallbacks cbs;
  RequestEncoder& e = codec->newStream(d);
  e.stream().setCallbacks(&cbs);
  auto h =
      makeHeaders({{":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {":authority", "a"}});
  h->addView("x-first", "1");
  h->markNamesLowercase();
  h->set("X-Added", "2");
  h->addCopy("Another-One", "3");
  e.encodeHeaders(keep(std::move(h)), true);
  pump();
  ASSERT_EQ(peer->request_ids.size(), 1u);
  int32_t id = peer->request_ids[0];
  const Peer::StreamInfo& s = peer->streams[id];
  EXPECT_EQ(s.get("x-first"), "1");
  EXPECT_EQ(s.get("x-added"), "2");
  EXPECT_EQ(s.get("another-one"), "3");

  peer->respond(id, {{":status", "200"}, {"x-reply", "r"}}, "", true);
  pump();
  ASSERT_TRUE(d.headers);
  EXPECT_TRUE(d.headers->namesLowercase());
  EXPECT_EQ(d.header("x-reply"), "r");
  EXPECT_TRUE(wire.ok);
}

TEST_F(Http2ClientCodecTest, PostBodyMovesSlices) {
  start();
  FakeDecoder d;
  FakeStreamCallbacks cbs;
  RequestEncoder& e = codec->newStream(d);
  e.stream().setCallbacks(&cbs);
  auto h =
      makeHeaders({{":method", "POST"}, {":scheme", "http"}, {":path", "/"}, {":authority", "a"}});
  e.encodeHeaders(keep(std::move(h)), false);
  Reader r;
  BufferChain body = r.read(std::string(5000, 'p'));
  Slab* slab = body.slices()[0].slab();
  e.encodeData(body, true);
  EXPECT_TRUE(wire.owner.written_slabs.count(slab));
  pump();
  ASSERT_EQ(peer->request_ids.size(), 1u);
  int32_t id = peer->request_ids[0];
  EXPECT_EQ(peer->streams[id].body, std::string(5000, 'p'));
  peer->respond(id, {{":status", "201"}}, "", false);
  pump();
  EXPECT_EQ(d.header(":status"), "201");
  EXPECT_TRUE(d.ended);
}

TEST_F(Http2ClientCodecTest, RequestBodyInPiecesTrailersWithoutBodyAndHeldPost) {
  // A request's HEADERS go alone and its first body or trailers attach the
  // data provider; one held back for the peer's stream limit takes the
  // provider with it. Either way the peer sees the same frames.
  start({}, {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 2}});
  auto post = [&](FakeDecoder& d, FakeStreamCallbacks& cbs, const char* path) -> RequestEncoder& {
    RequestEncoder& e = codec->newStream(d);
    e.stream().setCallbacks(&cbs);
    auto h = makeHeaders(
        {{":method", "POST"}, {":scheme", "http"}, {":path", path}, {":authority", "a"}});
    e.encodeHeaders(keep(std::move(h)), false);
    return e;
  };
  FakeDecoder da, db, dc;
  FakeStreamCallbacks ca, cb, cc;
  Reader reader;
  RequestEncoder& a = post(da, ca, "/a");
  pump();
  ASSERT_EQ(peer->request_ids.size(), 1u);
  int32_t ia = peer->request_ids[0];
  EXPECT_EQ(peer->streams[ia].header_blocks, 1);
  EXPECT_FALSE(peer->streams[ia].ended);
  BufferChain one = reader.read("one,");
  a.encodeData(one, false);
  pump();
  EXPECT_EQ(peer->streams[ia].body, "one,");
  BufferChain two = reader.read("two");
  a.encodeData(two, false);
  BufferChain none;
  a.encodeData(none, true);
  pump();
  EXPECT_EQ(peer->streams[ia].body, "one,two");
  EXPECT_TRUE(peer->streams[ia].ended);

  RequestEncoder& b = post(db, cb, "/b");
  auto trailers = makeHeaders({{"X-Checksum", "1"}});
  b.encodeTrailers(*trailers);
  pump();
  ASSERT_EQ(peer->request_ids.size(), 2u);
  int32_t ib = peer->request_ids[1];
  EXPECT_EQ(peer->streams[ib].body, "");
  EXPECT_EQ(peer->streams[ib].header_blocks, 2);
  EXPECT_EQ(peer->streams[ib].get("x-checksum"), "1");
  EXPECT_TRUE(peer->streams[ib].ended);

  RequestEncoder& c = post(dc, cc, "/c");  // Over the peer's limit of 2: held.
  BufferChain held = reader.read("held");
  c.encodeData(held, true);
  pump();
  EXPECT_EQ(peer->request_ids.size(), 2u);
  peer->respond(ia, {{":status", "200"}}, "", false);
  pump();
  EXPECT_TRUE(da.ended);
  ASSERT_EQ(peer->request_ids.size(), 3u);
  int32_t ic = peer->request_ids[2];
  EXPECT_EQ(peer->streams[ic].get(":path"), "/c");
  EXPECT_EQ(peer->streams[ic].body, "held");
  EXPECT_TRUE(peer->streams[ic].ended);
  peer->respond(ib, {{":status", "200"}}, "", false);
  peer->respond(ic, {{":status", "200"}}, "", false);
  pump();
  EXPECT_TRUE(db.ended);
  EXPECT_TRUE(dc.ended);
  EXPECT_EQ(codec->activeStreams(), 0u);
}

TEST_F(Http2ClientCodecTest, RespectsPeerMaxConcurrentStreams) {
  start({}, {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 2}});
  EXPECT_TRUE(codec->canStartStream());
  FakeDecoder d1, d2;
  FakeStreamCallbacks c1, c2;
  get(d1, c1);
  EXPECT_TRUE(codec->canStartStream());
  get(d2, c2);
  EXPECT_FALSE(codec->canStartStream());
  EXPECT_EQ(codec->activeStreams(), 2u);
  pump();
  ASSERT_EQ(peer->request_ids.size(), 2u);
  peer->respond(peer->request_ids[0], {{":status", "200"}}, "", false);
  pump();
  EXPECT_TRUE(d1.ended);
  EXPECT_TRUE(codec->canStartStream());
  EXPECT_TRUE(codec->isReusable());
}

TEST_F(Http2ClientCodecTest, RequestHeldForPeerStreamLimitKeepsItsFields) {
  // nghttp2 reads the fields of a request it sends at once from the caller's
  // map; one it must hold back (over the peer's stream limit) is copied, so
  // the caller may change or free its map as soon as encodeHeaders returns.
  start({}, {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1}});
  FakeDecoder d1, d2;
  FakeStreamCallbacks c1, c2;
  get(d1, c1, "/first");
  RequestEncoder& e = codec->newStream(d2);
  e.stream().setCallbacks(&c2);
  std::string path = "/second", name = "x-held", value = "kept";
  {
    auto h = std::make_unique<HeaderMap>();
    h->addView(":method", "GET");
    h->addView(":scheme", "http");
    h->addView(":authority", "a");
    h->addView(":path", path);
    h->addView(name, value);
    e.encodeHeaders(*h, true);
  }
  path.assign(path.size(), 'X');
  name.assign(name.size(), 'y');
  value.assign(value.size(), 'Z');
  pump();
  ASSERT_EQ(peer->request_ids.size(), 1u);
  peer->respond(peer->request_ids[0], {{":status", "200"}}, "", false);
  pump();
  EXPECT_TRUE(d1.ended);
  ASSERT_EQ(peer->request_ids.size(), 2u);
  const Peer::StreamInfo& s = peer->streams[peer->request_ids[1]];
  EXPECT_EQ(s.get(":path"), "/second");
  EXPECT_EQ(s.get("x-held"), "kept");
}

TEST_F(Http2ClientCodecTest, PeerGoAwayResetsLaterStreams) {
  start();
  FakeDecoder d1, d2, d3;
  FakeStreamCallbacks c1, c2, c3;
  get(d1, c1);
  get(d2, c2);
  get(d3, c3);
  pump();
  ASSERT_EQ(peer->request_ids.size(), 3u);
  nghttp2_submit_goaway(peer->session, NGHTTP2_FLAG_NONE, peer->request_ids[0], NGHTTP2_NO_ERROR,
                        nullptr, 0);
  pump();
  EXPECT_TRUE(c1.resets.empty());
  ASSERT_EQ(c2.resets.size(), 1u);
  EXPECT_EQ(c2.resets[0], ResetReason::kRemoteReset);
  ASSERT_EQ(c3.resets.size(), 1u);
  EXPECT_EQ(c3.resets[0], ResetReason::kRemoteReset);
  EXPECT_FALSE(codec->canStartStream());
  EXPECT_FALSE(codec->isReusable());
  // The stream under the last id still completes.
  peer->respond(peer->request_ids[0], {{":status", "200"}}, "done", true);
  pump();
  EXPECT_EQ(d1.body, "done");
  EXPECT_TRUE(d1.ended);
  EXPECT_EQ(codec->activeStreams(), 0u);
  EXPECT_EQ(wire.owner.close_after_flush, 1);
}

TEST_F(Http2ClientCodecTest, StreamAfterPeerGoAwayIsRefusedRetryably) {
  start();
  nghttp2_submit_goaway(peer->session, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, nullptr, 0);
  pump();
  EXPECT_FALSE(codec->canStartStream());
  FakeDecoder d;
  FakeStreamCallbacks cbs;
  get(d, cbs);  // A caller that did not check canStartStream().
  pump();
  // nghttp2 refuses the HEADERS as it would send them: the same reason as a
  // stream above the peer's last stream id, which a router may retry.
  ASSERT_EQ(cbs.resets.size(), 1u);
  EXPECT_EQ(cbs.resets[0], ResetReason::kRemoteReset);
  EXPECT_EQ(cbs.last_detail, "REFUSED_STREAM");
  EXPECT_EQ(codec->activeStreams(), 0u);
}

TEST_F(Http2ClientCodecTest, RequestResetBeforeItsScheduledFlushStillCloses) {
  // A request's HEADERS wait for the flush scheduled at the end of the loop
  // iteration. Reset before it, nghttp2 would drop the HEADERS and the
  // RST_STREAM both and never report the stream closed: it stayed counted
  // against the peer's stream limit for the connection's life. The reset
  // sends the HEADERS first.
  start();
  FakeDecoder d;
  FakeStreamCallbacks cbs;
  RequestEncoder& e = get(d, cbs);
  EXPECT_EQ(codec->activeStreams(), 1u);
  e.stream().resetStream(ResetReason::kLocalReset);
  pump();
  EXPECT_EQ(codec->activeStreams(), 0u);
  ASSERT_EQ(peer->request_ids.size(), 1u);
  EXPECT_TRUE(peer->streams[peer->request_ids[0]].rst_received);
  EXPECT_EQ(peer->last_rst_code, static_cast<uint32_t>(NGHTTP2_CANCEL));
  EXPECT_TRUE(codec->canStartStream());
  EXPECT_TRUE(wire.ok);
}

TEST_F(Http2ClientCodecTest, RequestWaitingForItsFlushLeavesBeforeReadBytes) {
  // Bytes read before the scheduled flush may lower the peer's stream limit
  // (SETTINGS), and nghttp2 would then hold a request that reads its fields
  // in place until a stream closes, long after its map is gone. A dispatch
  // sends the waiting requests before it reads.
  start();
  FakeDecoder d1, d2;
  FakeStreamCallbacks c1, c2;
  get(d1, c1, "/first");
  pump();
  ASSERT_EQ(peer->request_ids.size(), 1u);
  RequestEncoder& e = codec->newStream(d2);
  e.stream().setCallbacks(&c2);
  std::string path = "/second", name = "x-held", value = "kept";
  auto h = std::make_unique<HeaderMap>();
  h->addView(":method", "GET");
  h->addView(":scheme", "http");
  h->addView(":authority", "a");
  h->addView(":path", path);
  h->addView(name, value);
  e.encodeHeaders(*h, true);
  nghttp2_settings_entry one{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1};
  nghttp2_submit_settings(peer->session, NGHTTP2_FLAG_NONE, &one, 1);
  EXPECT_TRUE(wire.feed(*codec, peer->send()));
  h.reset();
  path.assign(path.size(), 'X');
  name.assign(name.size(), 'y');
  value.assign(value.size(), 'Z');
  peer->respond(peer->request_ids[0], {{":status", "200"}}, "", false);
  pump();
  EXPECT_TRUE(d1.ended);
  // The second request left before the SETTINGS was read, with its fields
  // as they were.
  ASSERT_EQ(peer->request_ids.size(), 2u);
  const Peer::StreamInfo& second = peer->streams[peer->request_ids[1]];
  EXPECT_EQ(second.get(":path"), "/second");
  EXPECT_EQ(second.get("x-held"), "kept");
  peer->respond(peer->request_ids[1], {{":status", "200"}}, "", false);
  pump();
  EXPECT_TRUE(d2.ended);
  EXPECT_EQ(codec->activeStreams(), 0u);
  EXPECT_TRUE(wire.ok);
}

TEST_F(Http2ClientCodecTest, ResetsBothWays) {
  start();
  FakeDecoder d1, d2;
  FakeStreamCallbacks c1, c2;
  RequestEncoder& e1 = get(d1, c1);
  get(d2, c2);
  pump();
  ASSERT_EQ(peer->request_ids.size(), 2u);
  e1.stream().resetStream(ResetReason::kLocalReset);
  nghttp2_submit_rst_stream(peer->session, NGHTTP2_FLAG_NONE, peer->request_ids[1],
                            NGHTTP2_REFUSED_STREAM);
  pump();
  EXPECT_TRUE(peer->streams[peer->request_ids[0]].rst_received);
  EXPECT_EQ(peer->last_rst_code, NGHTTP2_CANCEL);
  ASSERT_EQ(c1.resets.size(), 1u);
  EXPECT_EQ(c1.resets[0], ResetReason::kLocalReset);
  ASSERT_EQ(c2.resets.size(), 1u);
  EXPECT_EQ(c2.resets[0], ResetReason::kRemoteReset);
  EXPECT_EQ(codec->stats().tx_reset, 1u);
  EXPECT_EQ(codec->stats().rx_reset, 1u);
  EXPECT_EQ(codec->activeStreams(), 0u);
  EXPECT_TRUE(codec->isReusable());
}

TEST_F(Http2ClientCodecTest, LocalGoAwayStopsNewStreams) {
  start();
  codec->goAway();
  pump();
  EXPECT_EQ(peer->goaway_code, NGHTTP2_NO_ERROR);
  EXPECT_FALSE(codec->canStartStream());
  EXPECT_FALSE(codec->isReusable());
}

TEST_F(Http2ClientCodecTest, ResetBeforeHeadersNeverReachesWire) {
  start();
  FakeDecoder d;
  FakeStreamCallbacks cbs;
  RequestEncoder& e = codec->newStream(d);
  e.stream().setCallbacks(&cbs);
  EXPECT_EQ(codec->activeStreams(), 1u);
  e.stream().resetStream(ResetReason::kLocalReset);
  EXPECT_EQ(codec->activeStreams(), 0u);
  pump();
  EXPECT_TRUE(peer->request_ids.empty());
}

TEST_F(Http2ClientCodecTest, TransportCloseResetsStreams) {
  start();
  FakeDecoder d;
  FakeStreamCallbacks cbs;
  get(d, cbs);
  pump();
  codec->onTransportClosed(ResetReason::kConnectionFailure);
  ASSERT_EQ(cbs.resets.size(), 1u);
  EXPECT_EQ(cbs.resets[0], ResetReason::kConnectionFailure);
  EXPECT_FALSE(codec->canStartStream());
}

// The codec reads received fields' rcbufs inline (http2_rcbuf): what it reads
// must be what nghttp2's own accessors say, for static and decoded buffers.
TEST(Http2RcbufTest, InlineReadsMatchNghttp2) {
  struct Seen {
    int fields = 0;
    int static_values = 0;
    int mismatches = 0;
  } seen;
  auto check = [](nghttp2_rcbuf* buf, Seen& seen) {
    nghttp2_vec api = nghttp2_rcbuf_get_buf(buf);
    nghttp2_vec inl = http2_rcbuf::bytes(buf);
    bool is_static = nghttp2_rcbuf_is_static(buf) != 0;
    if (api.base != inl.base || api.len != inl.len || is_static != http2_rcbuf::isStatic(buf)) {
      ++seen.mismatches;
    }
    return is_static;
  };
  nghttp2_session_callbacks* cbs;
  nghttp2_session_callbacks_new(&cbs);
  static decltype(check)* checker = &check;
  nghttp2_session_callbacks_set_on_header_callback2(
      cbs, [](nghttp2_session*, const nghttp2_frame*, nghttp2_rcbuf* name, nghttp2_rcbuf* value,
              uint8_t, void* user) {
        Seen& s = *static_cast<Seen*>(user);
        ++s.fields;
        (*checker)(name, s);
        if ((*checker)(value, s)) ++s.static_values;
        return 0;
      });
  nghttp2_session* server;
  nghttp2_session_server_new(&server, cbs, &seen);
  nghttp2_session* client;
  nghttp2_session_client_new(&client, cbs, &seen);
  nghttp2_session_callbacks_del(cbs);
  nghttp2_submit_settings(client, NGHTTP2_FLAG_NONE, nullptr, 0);  // Sent after the preface.
  std::vector<std::pair<std::string, std::string>> fields = {{":method", "GET"},
                                                             {":scheme", "http"},
                                                             {":authority", "example.com"},
                                                             {":path", "/a/path"},
                                                             {"x-made-up", "a value"}};
  for (int round = 0; round < 2; ++round) {  // The second block reads the dynamic table.
    std::vector<nghttp2_nv> nva = Peer::toNv(fields);
    ASSERT_GT(nghttp2_submit_request(client, nullptr, nva.data(), nva.size(), nullptr, nullptr), 0);
    const uint8_t* p;
    for (ssize_t n; (n = nghttp2_session_mem_send(client, &p)) > 0;) {
      ASSERT_EQ(nghttp2_session_mem_recv(server, p, static_cast<size_t>(n)), n);
    }
  }
  nghttp2_session_del(client);
  nghttp2_session_del(server);
  EXPECT_EQ(seen.fields, 10);
  EXPECT_EQ(seen.static_values, 4);  // GET and http, twice.
  EXPECT_EQ(seen.mismatches, 0);
}

}  // namespace
}  // namespace skiff::http
