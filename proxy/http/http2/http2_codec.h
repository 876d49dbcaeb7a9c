// HTTP/2 codecs on nghttp2: Http2ServerCodec (downstream side: h2c prior
// knowledge or h2 after ALPN; requests in, responses out) and Http2ClientCodec
// (upstream side: requests out, responses in). Both implement
// proxy/http/codec.h and share Http2Codec, which owns the nghttp2 session.
//
// Bytes in: dispatch() feeds nghttp2_session_mem_recv one slice at a time, so
// every DATA chunk nghttp2 reports points into a known slice and becomes a
// Slice over the same slab (no copy). Body bytes reach decodeData once per
// DATA frame, when the frame ends (END_STREAM rides on that call). Header fields are copied into
// the HeaderMap's arena: HPACK decodes them into nghttp2's own buffers, so that is the copy the
// protocol forces.
//
// Bytes out: submit_* calls queue frames; at the end of each outermost call
// into the codec (dispatch, encode*, resetStream, ...) one flush runs
// nghttp2_session_send and hands everything to CodecOwner::write() at once.
// Control frames and HEADERS are copied out of nghttp2's buffer into slabs;
// DATA goes out with NGHTTP2_DATA_FLAG_NO_COPY: a copied 9-byte frame header,
// then the body slices moved from the stream's queue.
//
// Flow control is tied to backpressure: WINDOW_UPDATE is never automatic. A
// stream's received bytes are consumed (nghttp2_session_consume) only once
// its decoder has taken them; while the stream is read-disabled they wait in
// the codec and the peer's window closes.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/buffer/object_pool.h"
#include "proxy/http/codec.h"
#include "proxy/http/http2/http2_message_checks.h"

namespace skiff::http {

// Reading a received field's rcbuf. nghttp2 1.52 exports these as functions
// (nghttp2_rcbuf_get_buf, nghttp2_rcbuf_is_static), so onHeader made four
// out-of-line calls per field; the struct's layout (lib/nghttp2_rcbuf.h:
// allocator user data, free function, base, len, ref; ref is -1 for a static
// rcbuf) lets them be read inline, which saved about 250 instructions per
// proxied h2c request. Only for the versions whose layout was checked (the
// unit tests compare both ways); any other version takes the calls.
#if NGHTTP2_VERSION_NUM >= 0x013400 && NGHTTP2_VERSION_NUM < 0x013500
namespace http2_rcbuf {
struct Layout {
  void* mem_user_data;
  void* free;
  uint8_t* base;
  size_t len;
  int32_t ref;
};
inline nghttp2_vec bytes(nghttp2_rcbuf* rcbuf) {
  const auto* r = reinterpret_cast<const Layout*>(rcbuf);
  return {r->base, r->len};
}
inline bool isStatic(const nghttp2_rcbuf* rcbuf) {
  return reinterpret_cast<const Layout*>(rcbuf)->ref == -1;
}
}  // namespace http2_rcbuf
#else
namespace http2_rcbuf {
inline nghttp2_vec bytes(nghttp2_rcbuf* rcbuf) { return nghttp2_rcbuf_get_buf(rcbuf); }
inline bool isStatic(const nghttp2_rcbuf* rcbuf) { return nghttp2_rcbuf_is_static(rcbuf) != 0; }
}  // namespace http2_rcbuf
#endif

// Envoy's http2_protocol_options (and the HCM's max_request_headers_kb), with
// Envoy's defaults.
struct Http2Settings {
  uint32_t hpack_table_size = 4096;                     // SETTINGS_HEADER_TABLE_SIZE.
  uint32_t max_concurrent_streams = 2147483647;         // SETTINGS_MAX_CONCURRENT_STREAMS.
  uint32_t initial_stream_window_size = 268435456;      // SETTINGS_INITIAL_WINDOW_SIZE.
  uint32_t initial_connection_window_size = 268435456;  // Connection window (WINDOW_UPDATE 0).
  uint32_t max_header_list_size_kb = 60;                // SETTINGS_MAX_HEADER_LIST_SIZE, enforced.
  uint32_t max_outbound_frames = 10000;                 // Frames queued while the socket is slow.
  uint32_t max_outbound_control_frames = 1000;          // Of those, PING/SETTINGS ACK, RST_STREAM.
  uint32_t max_consecutive_inbound_frames_with_empty_payload = 1;
  uint32_t max_inbound_priority_frames_per_stream = 100;
  uint32_t max_inbound_window_update_frames_per_data_frame_sent = 10;
  uint32_t stream_reset_rate_burst = 1000;  // Rapid reset (CVE-2023-44487): token bucket
  uint32_t stream_reset_rate_per_sec = 33;  // on inbound RST_STREAM, server side only.
  uint32_t max_continuations = 8;           // CONTINUATION flood (CVE-2024-28182).
  // allow_connect: the server sends SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 and
  // accepts extended CONNECT (RFC 8441), which reaches the connection
  // manager as an HTTP/1.1 Upgrade (see Http2ServerCodec::onHeaderBlock).
  bool allow_connect = false;
  // Bytes a stream may queue toward its peer before it tells its producer to
  // stop (StreamCallbacks::onAboveWriteBufferHighWatermark); it resumes at half.
  uint32_t stream_write_buffer_high_watermark = 1024 * 1024;
};

// What the protections saw, for the connection manager's stats (Envoy names
// them http2.rx_reset, http2.outbound_flood, ...).
struct Http2Stats {
  uint64_t rx_reset = 0;         // RST_STREAM received.
  uint64_t tx_reset = 0;         // RST_STREAM sent.
  uint64_t header_overflow = 0;  // A header list over max_header_list_size_kb (stream reset).
  uint64_t outbound_flood = 0;   // Too many frames queued toward a slow peer.
  uint64_t outbound_control_flood = 0;  // Of those, too many PING/SETTINGS ACKs or RST_STREAMs.
  uint64_t inbound_empty_frames_flood = 0;
  uint64_t inbound_priority_frames_flood = 0;
  uint64_t inbound_window_update_frames_flood = 0;
  uint64_t rapid_reset = 0;     // nghttp2's stream reset rate limit fired.
  uint64_t protocol_error = 0;  // Connection errors nghttp2 found (including CONTINUATION flood).
  // Malformed messages (RFC 9113 8.1.1: bad or missing pseudo-headers,
  // invalid or connection-specific fields, a content-length the header
  // section contradicts; http2_message_checks.h). As Envoy does by default,
  // they end the whole connection.
  uint64_t rx_messaging_error = 0;

  // Calls fn(name, value) for each counter, by Envoy's name (the caller adds
  // the root: "http2." downstream, "cluster.<name>.http2." upstream).
  template <typename Fn>
  void forEach(Fn&& fn) const {
    fn("rx_reset", rx_reset);
    fn("tx_reset", tx_reset);
    fn("header_overflow", header_overflow);
    fn("outbound_flood", outbound_flood);
    fn("outbound_control_flood", outbound_control_flood);
    fn("inbound_empty_frames_flood", inbound_empty_frames_flood);
    fn("inbound_priority_frames_flood", inbound_priority_frames_flood);
    fn("inbound_window_update_frames_flood", inbound_window_update_frames_flood);
    fn("rapid_reset", rapid_reset);
    fn("protocol_error", protocol_error);
    fn("rx_messaging_error", rx_messaging_error);
  }
};

// What the server and client codecs share: the nghttp2 session, its
// callbacks, the streams, the flush and the protections.
class Http2Codec {
 public:
  Http2Codec(const Http2Codec&) = delete;
  Http2Codec& operator=(const Http2Codec&) = delete;

  const Http2Stats& stats() const { return stats_; }

  // Flushes every codec of this thread that scheduled a flush (see
  // DeferredFlushScope), unless it is inside a call of its own, which
  // flushes when it returns. A dispatch runs it when it returns, and the
  // worker before its socket writes and before it deletes anything.
  static void flushWaiting();

 protected:
  // One stream in either direction. A ResponseEncoder is also a valid
  // RequestEncoder, so both codecs hand out this one type.
  class Http2Stream final : public ResponseEncoder, public Stream {
   public:
    Http2Stream(Http2Codec& codec, StreamDecoder* decoder) : codec_(codec), decoder_(decoder) {}
    ~Http2Stream() override;

    // From the worker's free list: a loop iteration may open the streams of
    // every connection before it frees any, so the list keeps up to 16,384
    // (4 MiB): a proxied request has one downstream and one upstream, 12,800
    // at 64 connections of 100. 512 missed on 85% of the streams there,
    // 8,192 on 9%.
    static void* operator new(size_t size) { return ObjectPool<Http2Stream, 16384>::take(size); }
    static void operator delete(void* p, size_t size) {
      ObjectPool<Http2Stream, 16384>::give(p, size);
    }

    // StreamEncoder / ResponseEncoder
    void encodeHeaders(const HeaderMap& headers, bool end_stream) override;
    void encodeData(BufferChain& data, bool end_stream) override;
    void encodeTrailers(const HeaderMap& trailers) override;
    void encode1xxHeaders(const HeaderMap& headers) override;
    Stream& stream() override { return *this; }
    // Stream
    void setCallbacks(StreamCallbacks* callbacks) override { callbacks_ = callbacks; }
    void resetStream(ResetReason reason) override;
    void readDisable(bool disable) override;
    void resetAfterResponse() override;

    Http2Codec& codec_;
    StreamDecoder* decoder_;                // Where decoded parts go; nullptr once done.
    StreamCallbacks* callbacks_ = nullptr;  // nullptr once done.
    Http2Stream* prev = nullptr;            // Links in codec_'s stream list (owned there).
    Http2Stream* next = nullptr;
    int32_t id = -1;  // -1 until the client submits its HEADERS.

    // Receiving.
    HeaderMapPtr headers;            // Header block being received.
    std::string cookies;             // Cookie fields, joined with "; " (RFC 9113 8.2.3).
    size_t header_bytes = 0;         // Size of the block so far, as HPACK counts it.
    bool header_overflow = false;    // The block passed max_header_list_size_kb.
    bool headers_delivered = false;  // Final (non-1xx) headers reached the decoder.
    BufferChain in;                  // Received DATA not yet delivered.
    HeaderMapPtr in_trailers;        // Received trailers not yet delivered.
    bool in_end = false;             // END_STREAM received, not yet delivered.
    bool remote_ended = false;       // The decoder saw end_stream.
    uint32_t read_disables = 0;      // Outstanding readDisable(true) calls.
    uint64_t unconsumed = 0;         // Bytes received and not yet consumed (window).
    h2msg::MessageState msg;         // What RFC 9113 8's checks have seen of its messages.
    bool msg_reset = false;          // Reset for its DATA (RFC 9113 8.1.1): input ignored.

    // Sending.
    BufferChain out;  // Body bytes waiting for nghttp2 to frame them.
    std::vector<std::pair<std::string, std::string>> out_trailers;  // Copied (see .cc).
    bool has_trailers = false;                                      // encodeTrailers() was called.
    bool headers_sent = false;                                      // encodeHeaders() was called.
    bool local_ended = false;                                       // The last part was encoded.
    bool provider = false;         // A data provider is attached in nghttp2.
    bool body_due = false;         // HEADERS went without one: the body attaches it.
    bool deferred = false;         // The provider returned NGHTTP2_ERR_DEFERRED.
    bool above_watermark = false;  // out passed the stream's high watermark.

    bool done = false;              // The user is finished with it (ended both ways, or reset).
    bool closed = false;            // nghttp2 closed it (or it never opened).
    bool local_reset_sent = false;  // We sent RST_STREAM (not the peer).
    // resetAfterResponse(): the response is whole, the request is not, and
    // the user gave the stream up. If more of the request comes (DATA
    // without END_STREAM), RST_STREAM NO_ERROR follows our END_STREAM.
    bool reset_after_end = false;
    bool request_went_on = false;  // That DATA came.
    bool retired = false;          // Moved from the stream list to dead_.
    // Client: the HTTP/1.1 Upgrade type this request went out as (an
    // extended CONNECT, RFC 8441), empty for any other request. A view into
    // the request's map, which its sender keeps until the stream ends.
    std::string_view upgrade;
  };

  Http2Codec(CodecOwner& owner, const Http2Settings& settings, bool server);
  virtual ~Http2Codec();

  // Keeps the codec from flushing or freeing streams while an outer call is
  // on the stack; the outermost one flushes when it leaves.
  class CallScope {
   public:
    explicit CallScope(Http2Codec& codec) : codec_(codec) { ++codec_.depth_; }
    ~CallScope() {
      if (codec_.depth_ == 1) codec_.onOutermostExit();
      --codec_.depth_;
    }
    CallScope(const CallScope&) = delete;
    CallScope& operator=(const CallScope&) = delete;

   private:
    Http2Codec& codec_;
  };

  // encodeData's and encodeHeaders' scope: like CallScope, but when it is
  // the outermost call it leaves the flush for later in this loop
  // iteration: to the end of the dispatch of the codec the call came from
  // (a response usually arrives while the upstream codec dispatches a read,
  // a request while the downstream codec does), or else to the worker's
  // prepare step (flushWaiting), or to a dispatch the owner runs
  // (CodecOwner::scheduleDispatch) where there is no worker. Each HEADERS
  // and each body was a flush (an nghttp2_session_send and an owner write)
  // of its own; now one flush frames the messages of every stream that got
  // one (batching HEADERS too took about 500 instructions off a proxied
  // h2c request, bench/probe.sh instr-h2 64000 64x100 h2). With defer false
  // it is a CallScope (see encodeHeaders).
  class DeferredFlushScope {
   public:
    explicit DeferredFlushScope(Http2Codec& codec, bool defer = true)
        : codec_(codec), defer_(defer) {
      ++codec_.depth_;
    }
    ~DeferredFlushScope() {
      if (codec_.depth_ == 1) {
        if (defer_) {
          // Usually both are set already, after the first stream's call.
          if (!codec_.scheduled_ || !codec_.flush_waiting_) codec_.scheduleFlush();
        } else {
          codec_.onOutermostExit();
        }
      }
      --codec_.depth_;
    }
    DeferredFlushScope(const DeferredFlushScope&) = delete;
    DeferredFlushScope& operator=(const DeferredFlushScope&) = delete;

   private:
    Http2Codec& codec_;
    const bool defer_;
  };

  // Connection, shared.
  bool dispatchBytes(BufferChain& data, CodecError& error);
  void onConnectionAboveHighWatermark();
  void onConnectionBelowLowWatermark();
  void closeTransport(ResetReason reason);
  size_t openStreams() const { return stream_count_; }
  // The streams in the list now, for loops whose body may retire them.
  std::vector<Http2Stream*> streamsSnapshot() const;

  // Direction hooks.
  // Server: a request's header block begins; returns its new stream.
  // Client: unused (returns the stream with that id, if any).
  virtual Http2Stream* onRequestHeadersBegin(int32_t stream_id) = 0;
  // A complete header block (headers, 1xx, or trailers) for s.
  virtual void onHeaderBlock(Http2Stream& s, const nghttp2_frame& frame) = 0;

  Http2Stream& addStream(StreamDecoder* decoder);
  Http2Stream* findStream(int32_t stream_id) const;
  // Submits s's HEADERS (with a data provider unless end_stream).
  void submitHeaders(Http2Stream& s, const HeaderMap& headers, bool end_stream, bool request);
  // Attaches s's data provider once a message has body or trailers to send.
  void submitBody(Http2Stream& s);
  // The data provider that reads s's queued body (Http2Callbacks::onReadData).
  static nghttp2_data_provider dataProvider(Http2Stream& s);
  // Hands s's buffered input to its decoder unless it is read-disabled.
  void deliverInput(Http2Stream& s);
  void deliverHeaders(Http2Stream& s, bool end_stream);
  // The user is done with s when both directions ended.
  void maybeDone(Http2Stream& s);
  // Tells the user that s is dead, and detaches it.
  void notifyReset(Http2Stream& s, ResetReason reason, std::string_view detail);
  // More of a request came after its stream's user gave it up
  // (resetAfterResponse): the stream is reset once the response has left.
  void requestGoesOnAfterEnd(Http2Stream& s);
  // s's END_STREAM has left: RST_STREAM NO_ERROR, unless the request has
  // ended too.
  void resetAfterEnd(Http2Stream& s);
  // Moves s (closed by nghttp2 and done for the user) to dead_.
  void retire(Http2Stream& s);
  // Records a connection error: GOAWAY with goaway_code (unless kNoGoaway:
  // nghttp2 already sent one), every stream reset, closeAfterFlush(), and
  // dispatch() fails from now on.
  static constexpr uint32_t kNoGoaway = 0xffffffff;
  void fail(std::string_view detail, uint32_t goaway_code);
  // fail()'s second half, run by the flush once the GOAWAY has left.
  void resetStreamsAfterFailure();
  void checkStreamWatermark(Http2Stream& s);
  void onOutermostExit();
  void flush();
  // Asks the owner for a dispatch with no bytes, whose scope flushes, and
  // lists the codec for flushWaiting.
  void scheduleFlush();

  CodecOwner& owner_;
  Http2Settings settings_;
  Http2Stats stats_;
  const bool server_;
  nghttp2_session* session_ = nullptr;

  // Every stream nghttp2 (or the user) holds, oldest first, owned here. The
  // list is intrusive, so a stream costs one pooled block and no list node.
  Http2Stream* first_stream_ = nullptr;
  Http2Stream* last_stream_ = nullptr;
  size_t stream_count_ = 0;
  std::vector<std::unique_ptr<Http2Stream>> dead_;  // Closed; freed at the outermost exit.
  std::vector<nghttp2_nv> nva_;           // submitHeaders' field list, reused; only grows.
  Http2Stream* header_stream_ = nullptr;  // The stream of the header block being received,
  int32_t header_stream_id_ = 0;          // and its id (0: none); cleared when it retires.
  // The stream of the last DATA chunk received and its id, so the frame's
  // end needs no second lookup; cleared when it retires.
  Http2Stream* data_stream_ = nullptr;
  int32_t data_stream_id_ = 0;
  // The stream of the last DATA frame sent and its id, so its close (which
  // usually follows) needs no lookup; cleared when it retires.
  Http2Stream* sent_stream_ = nullptr;
  int32_t sent_stream_id_ = 0;
  std::deque<std::string> lowered_;       // Names lowercased for HEADERS not yet serialized.
  uint32_t request_ids_encoded_ = 0;      // x-request-id fields submitted (see appendFields).
  std::vector<Http2Stream*> drained_;     // Sent DATA while over their watermark.
  BufferChain output_;                    // Bytes to hand to the owner.
  const Slice* current_slice_ = nullptr;  // The slice mem_recv is reading.
  int depth_ = 0;                         // Nested CallScopes.
  bool scheduled_ = false;                // scheduleDispatch() is pending.
  bool flush_waiting_ = false;            // Listed for flushWaiting(),
  Http2Codec* next_waiting_ = nullptr;    // before this one.
  // Request HEADERS that read their fields in place wait in nghttp2's queue
  // for the scheduled flush (see submitHeaders).
  bool requests_unsent_ = false;
  bool pending_delivery_ = false;  // A re-enabled stream has input waiting.
  // Streams with reset_after_end set; while there are none, sending a frame
  // looks no stream up.
  uint32_t resets_after_end_ = 0;

  // Connection state.
  bool failed_ = false;       // A connection error; dispatch() fails.
  std::string error_detail_;  // Why.
  // Envoy's %RESPONSE_CODE_DETAILS% for a malformed message that ended the
  // connection before its stream reached the user (CodecError::details).
  std::string_view error_details_;
  bool transport_closed_ = false;        // No more writes.
  bool close_requested_ = false;         // closeAfterFlush() was called (or is due).
  bool close_after_flush_due_ = false;   // fail() wants closeAfterFlush() once its GOAWAY is out.
  bool streams_reset_due_ = false;       // fail() wants the streams reset once its GOAWAY is out.
  bool goaway_submitted_ = false;        // We sent (or queued) a GOAWAY ourselves.
  bool goaway_received_ = false;         // The peer sent GOAWAY.
  bool above_high_watermark_ = false;    // The owner's write queue is over its mark.
  bool outbound_flood_ = false;          // An outbound frame limit was passed while sending.
  bool outbound_control_flood_ = false;  // The control frame limit was passed while sending.
  uint32_t library_goaway_code_ = 0;     // nghttp2 sent a GOAWAY with this error on its own.
  bool destroying_ = false;              // In the destructor: callbacks do nothing.

  // Protection counters (Envoy's flood checks).
  uint32_t consecutive_empty_frames_ = 0;
  uint64_t inbound_priority_frames_ = 0;
  uint64_t inbound_window_update_frames_ = 0;
  uint64_t inbound_streams_ = 0;  // Streams opened (either side); scales flood limits.
  uint64_t outbound_data_frames_ = 0;
  uint64_t frames_while_blocked_ = 0;          // Sent while above the high watermark.
  uint64_t control_frames_while_blocked_ = 0;  // Of those, control frames.

 private:
  friend struct Http2Callbacks;
};

class Http2ServerCodec final : public ServerConnection, public Http2Codec {
 public:
  Http2ServerCodec(CodecOwner& owner, ServerConnectionCallbacks& callbacks,
                   Http2Settings settings = {});
  ~Http2ServerCodec() override;

  // Connection
  bool dispatch(BufferChain& data, CodecError& error) override;
  Protocol protocol() const override { return Protocol::kHttp2; }
  // Sends GOAWAY (NO_ERROR) with the last stream id seen; closes after the
  // open streams end.
  void goAway() override;
  // RFC 9113 6.8: a GOAWAY with the largest stream id (2^31-1), which
  // refuses nothing: the client learns to open no new streams, and streams
  // already on their way are served until goAway() sends the real last id.
  void shutdownNotice() override;
  void onAboveWriteBufferHighWatermark() override { onConnectionAboveHighWatermark(); }
  void onBelowWriteBufferLowWatermark() override { onConnectionBelowLowWatermark(); }
  void onTransportClosed(ResetReason reason) override { closeTransport(reason); }
  size_t activeStreams() const override { return openStreams(); }

 private:
  Http2Stream* onRequestHeadersBegin(int32_t stream_id) override;
  void onHeaderBlock(Http2Stream& s, const nghttp2_frame& frame) override;

  ServerConnectionCallbacks& callbacks_;
};

class Http2ClientCodec final : public ClientConnection, public Http2Codec {
 public:
  explicit Http2ClientCodec(CodecOwner& owner, Http2Settings settings = {});
  ~Http2ClientCodec() override;

  // Connection
  bool dispatch(BufferChain& data, CodecError& error) override;
  Protocol protocol() const override { return Protocol::kHttp2; }
  void goAway() override;
  void onAboveWriteBufferHighWatermark() override { onConnectionAboveHighWatermark(); }
  void onBelowWriteBufferLowWatermark() override { onConnectionBelowLowWatermark(); }
  void onTransportClosed(ResetReason reason) override { closeTransport(reason); }
  size_t activeStreams() const override { return openStreams(); }

  // ClientConnection
  RequestEncoder& newStream(StreamDecoder& response_decoder) override;
  // Under the peer's SETTINGS_MAX_CONCURRENT_STREAMS, no GOAWAY, no error.
  bool canStartStream() const override;
  bool isReusable() const override {
    return !failed_ && !goaway_received_ && !goaway_submitted_ && !transport_closed_;
  }

 private:
  Http2Stream* onRequestHeadersBegin(int32_t stream_id) override { return findStream(stream_id); }
  void onHeaderBlock(Http2Stream& s, const nghttp2_frame& frame) override;
};

}  // namespace skiff::http
