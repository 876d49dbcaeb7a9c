// HTTP/1.1 codecs on llhttp: Http1ServerCodec (downstream side: parses
// requests, writes responses) and Http1ClientCodec (upstream side: writes
// requests, parses responses). Both implement proxy/http/codec.h.
//
// Input is fed to llhttp one slice at a time, so every view llhttp hands back
// points into a known slice: header names and values become views into the
// slab (the HeaderMap pins it), body bytes become slices over the same slab.
// After each message the parser pauses, and the bytes that follow stay in the
// codec until the stream ends (pipelining is answered in order).
//
// Tunnels: after an Upgrade request (or a CONNECT) and after the 101 (or the
// 2xx to CONNECT) that accepts it, the bytes that follow are no longer HTTP:
// they reach the stream's decoder as data, slices as they were read, and the
// peer's FIN (onRemoteEof) ends that data. Data encoded toward a tunnel goes
// out unframed, and its end half-closes the connection (shutdownAfterFlush).
// The stream ends once both directions have; the connection is then closed.
#pragma once

#include <llhttp.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "proxy/http/codec.h"

namespace skiff::http {

struct Http1Settings {
  uint32_t max_request_headers_kb = 60;   // Start line + header block; more is a 431.
  uint32_t max_headers_count = 100;       // Header fields per message; more is a 431.
  size_t max_buffered_input = 64 * 1024;  // Unparsed bytes held before readDisable(true).
  // Envoy's http_protocol_options.enable_trailers (default off): trailers
  // are decoded and passed on, and encoded in the last chunk; off, both
  // directions drop them.
  bool enable_trailers = false;
};

namespace http1_detail {

// Serializes a header block: small pieces gather on the stack and reach the
// chain in few appendCopy calls. This is the one copy on the encode path
// (serializing headers); bodies move as slices.
class HeaderWriter {
 public:
  explicit HeaderWriter(BufferChain& out) : out_(out) {}
  ~HeaderWriter() { flush(); }
  void add(std::string_view bytes) {
    if (bytes.size() > sizeof(buf_) - used_) {
      addLarge(bytes);
      return;
    }
    copyShort(buf_ + used_, bytes.data(), bytes.size());
    used_ += bytes.size();
  }
  void addNumber(uint64_t n);
  // "HTTP/1.1 <status> <reason phrase>\r\n"
  void addStatusLine(int status);
  // "name: value\r\n"
  void addField(std::string_view name, std::string_view value) {
    size_t need = name.size() + value.size() + 4;
    if (need > sizeof(buf_) - used_) {
      add(name);
      add(": ");
      add(value);
      add("\r\n");
      return;
    }
    char* p = buf_ + used_;
    copyShort(p, name.data(), name.size());
    p += name.size();
    p[0] = ':';
    p[1] = ' ';
    copyShort(p + 2, value.data(), value.size());
    p += 2 + value.size();
    p[0] = '\r';
    p[1] = '\n';
    used_ += need;
  }
  // The connection-specific fields addFields() leaves out, as seen.
  struct HopFields {
    std::string_view upgrade;
    std::string_view connection;
    // An HTTP/1.1 Upgrade: an Upgrade field that Connection names.
    bool asksUpgrade() const { return !upgrade.empty() && listHasToken(connection, "upgrade"); }
  };
  // Every field of headers except pseudo-headers and connection-specific ones;
  // sets has_content_length when one was written, and fills hop (if given)
  // with the Upgrade and Connection fields it left out.
  void addFields(const HeaderMap& headers, bool& has_content_length, bool skip_host,
                 HopFields* hop = nullptr);
  // The same without content-length: the body goes out chunked instead.
  void addFieldsWithoutLength(const HeaderMap& headers);
  // The fields of a message that opens a tunnel (an Upgrade request or its
  // 101, a CONNECT request or its 2xx): no framing of ours follows it, so
  // transfer-encoding, keep-alive and proxy-connection are left out;
  // connection and upgrade stay when keep_upgrade; content-length stays when
  // keep_content_length (RFC 9110 9.3.6: none in a 2xx to CONNECT).
  void addTunnelFields(const HeaderMap& headers, bool keep_upgrade, bool keep_content_length,
                       bool skip_host);
  void flush();

 private:
  // Bytes that do not fit what is left of buf_.
  void addLarge(std::string_view bytes);
  // memcpy without the call for the 1 to 16 bytes most names and values
  // have: two loads and two stores that may overlap (bench/probe.sh instr:
  // 16,327 -> 16,145 instructions per proxied request).
  static void copyShort(char* d, const char* s, size_t n) {
    if (n > 16) {
      std::memcpy(d, s, n);
    } else if (n >= 8) {
      uint64_t a, b;
      std::memcpy(&a, s, 8);
      std::memcpy(&b, s + n - 8, 8);
      std::memcpy(d, &a, 8);
      std::memcpy(d + n - 8, &b, 8);
    } else if (n >= 4) {
      uint32_t a, b;
      std::memcpy(&a, s, 4);
      std::memcpy(&b, s + n - 4, 4);
      std::memcpy(d, &a, 4);
      std::memcpy(d + n - 4, &b, 4);
    } else if (n > 0) {
      char a = s[0], b = s[n / 2], c = s[n - 1];
      d[0] = a;
      d[n / 2] = b;
      d[n - 1] = c;
    }
  }

  BufferChain& out_;
  size_t used_ = 0;
  char buf_[1024];
};

// The names the codec handles itself, matched with HeaderMap's patterns.
inline constexpr HeaderName kHostName = kHeaderName<WellKnownHeader::kHost>;
inline constexpr HeaderName kUpgradeName = kHeaderName<WellKnownHeader::kUpgrade>;
inline constexpr HeaderName kConnectionName = kHeaderName<WellKnownHeader::kConnection>;
inline constexpr HeaderName kKeepAliveName = kHeaderName<WellKnownHeader::kKeepAlive>;
inline constexpr HeaderName kContentLengthName = kHeaderName<WellKnownHeader::kContentLength>;
inline constexpr HeaderName kProxyConnectionName = kHeaderName<WellKnownHeader::kProxyConnection>;
inline constexpr HeaderName kTransferEncodingName = kHeaderName<WellKnownHeader::kTransferEncoding>;

// Reason phrase for a status code ("OK", "Not Found"); "Unknown" otherwise.
std::string_view reasonPhrase(int status);
// Appends "<hex size>\r\n".
void appendChunkHeader(BufferChain& out, size_t size);

}  // namespace http1_detail

// The body of the answer to a request the codec refused, as Envoy's codec
// sends it (a local reply with the status's name): "Bad Request", "Request
// Header Fields Too Large", "Not Implemented".
inline std::string_view codecErrorBody(int status) { return http1_detail::reasonPhrase(status); }

// What both directions share: the llhttp loop, the header block builder with
// its RFC 9112 checks, and the delivery of decoded messages to a StreamDecoder.
class Http1Codec {
 public:
  Http1Codec(const Http1Codec&) = delete;
  Http1Codec& operator=(const Http1Codec&) = delete;

 protected:
  Http1Codec(CodecOwner& owner, const Http1Settings& settings, llhttp_type_t type);
  virtual ~Http1Codec();

  // Hooks for the two directions.
  virtual void onMessageBegin() = 0;
  // Returns 0 (body follows per framing), 1 (no body), or -1 after fail().
  virtual int onHeadersComplete() = 0;
  virtual void onMessageComplete() = 0;
  // Whether the parser, paused after a message, may go on to the next one now.
  virtual bool mayResume() const = 0;

  // Feeds pending_ to llhttp until it is empty, paused or stopped. Returns
  // false on a protocol error (error_status_ / error_detail_ say which).
  bool parsePending();
  // Records an error found in a callback; returns the code to give llhttp.
  int fail(int status, const char* detail);
  // Envoy's response code details for the recorded error (its HTTP/1
  // codec's words: "http1.codec_error", "http1.headers_too_large", ...).
  std::string_view responseCodeDetails() const;
  // The request headers of a stream reset for a parse error before they
  // were delivered (they go with the body of the same read).
  static HeaderMapPtr& refusedHeaders();
  // Hands decoded headers and body bytes to decoder_.
  void flushDecoded(bool end_stream);
  // Delivers the end of the message (headers and body left over, trailers).
  // The stream state must already say the message is complete: the decoder may
  // start the next stream from inside this call.
  void deliverMessageEnd();
  // Removes the fields that Connection: names (RFC 9110 7.6.1).
  void removeConnectionNominated();
  // Tunnel: hands pending_ to the decoder as data, and the peer's FIN as its
  // end, unless the stream stopped reading.
  void relayTunnel();
  // Tunnel: the incoming direction is about to end (before the last
  // delivery) / has ended (after it).
  virtual void tunnelInputEnding() = 0;
  virtual void tunnelInputEnded() = 0;
  // The peer's FIN on a tunnel; false when there is no tunnel to end.
  bool tunnelEof(bool stream_open);
  // Adjusts the codec's own readDisable on the owner from the buffered size.
  void checkBufferedInput();
  // One owner readDisable call, nesting counted in stream_read_disables_.
  void streamReadDisable(bool disable);
  // Undoes the readDisable calls a finished stream left behind.
  void clearStreamReadDisables();

  // What only a message being parsed needs: the parser and the header
  // block under construction. It comes from a per-worker free list when
  // bytes of a message arrive and goes back once the message has been parsed
  // and delivered, so a connection between messages (an idle keep-alive
  // connection, or one waiting for its response) holds none of it.
  struct Message {
    llhttp_t parser;
    HeaderMapPtr headers;          // Headers (or trailers) being built.
    HeaderMapPtr ready_headers;    // Headers built, not yet delivered.
    BufferChain body;              // Body bytes not yet delivered.
    bool in_header_block = false;  // Counting bytes toward the header size limit.
    bool in_trailers = false;      // Fields now go to the trailers map.
    bool host_seen = false;
    // The message's Transfer-Encoding: seen, and whether it is anything but
    // one field that says exactly "chunked" (Envoy's codec refuses it: a
    // request with 501, a response as an upstream protocol error).
    bool te_seen = false;
    bool te_unsupported = false;
    uint32_t header_count = 0;  // Fields in the current header block.
    int64_t header_bytes = 0;   // Header block bytes before the current slice.
    // What the header block may still take, counted from the current slice's
    // start: max_request_headers_kb * 1024 - header_bytes. Kept so that a span
    // callback checks the limit with one compare.
    int64_t header_room = 0;
    std::string_view authority;                       // Host value (request) seen so far.
    std::vector<std::string_view> connection_values;  // Values of Connection: fields.
    std::string_view upgrade;                         // Value of the Upgrade field.

    // The slice llhttp is reading now.
    const Slice* slice = nullptr;
    const char* base = nullptr;   // slice->data()
    const char* end = nullptr;    // slice->data() + slice->size()
    Slab* pinned_slab = nullptr;  // Slab already pinned by headers.

    std::string_view url;
    std::string_view field;
    std::string_view value;
    bool url_open = false;
    bool url_at_end = false;
    bool field_open = false;
    bool field_at_end = false;
    bool value_open = false;
    bool value_at_end = false;
    // Obs-fold detection (see onHeaderValue): between a field's colon and the
    // first piece of its value.
    const char* field_end = nullptr;  // End of the field name's last piece (its colon).
    bool awaiting_value = false;      // The colon came, no piece of the value yet.
    const char* value_gap = nullptr;  // Where the bytes since the colon start in this slice.
    uint8_t value_gap_state = 0;      // What earlier slices had there (scanValueGap).
  };

  // The message being parsed, made on first use.
  Message& message() { return m_ ? *m_ : startMessage(); }
  // Returns the message state to the worker's free list (nothing in it is
  // still needed: the message was parsed and delivered, or parsing stopped).
  void releaseMessage();

  CodecOwner& owner_;
  Message* m_ = nullptr;  // Null between messages.

  BufferChain pending_;                // Received bytes not yet consumed by llhttp.
  uint32_t stream_read_disables_ = 0;  // Outstanding Stream::readDisable(true) calls.
  uint32_t stream_epoch_ = 0;  // Bumped when a stream starts or is reset; stops stale delivery.
  uint32_t max_request_headers_kb_;
  uint32_t max_headers_count_;
  uint32_t max_buffered_input_;
  // The 4-byte fields sit together and the flags after type_, with no holes
  // (see Http1ServerCodec's fields).
  int error_status_ = 0;
  const char* error_detail_ = nullptr;
  StreamDecoder* decoder_ = nullptr;  // Where decoded parts go; nullptr discards.
  llhttp_type_t type_;
  bool enable_trailers_;              // Http1Settings::enable_trailers.
  bool paused_ = false;               // A message ended; the next waits for mayResume().
  bool stopped_ = false;              // No more parsing: error, close, or upgrade.
  bool in_dispatch_ = false;          // Inside dispatch(): no need to scheduleDispatch().
  bool owner_read_disabled_ = false;  // We called owner_.readDisable(true) for buffering.
  bool delivering_end_ = false;       // Inside deliverMessageEnd().
  // The bytes after the current message are the tunnel's data, not HTTP.
  bool tunnel_ = false;
  bool remote_eof_ = false;  // Tunnel: the peer's FIN came; delivered once pending_ is.

 private:
  friend struct Http1Callbacks;

  Message& startMessage();
  // The RFC 9112 checks on the name of the field being read (its colon has
  // come): 0, or what fail() did.
  int nameError();
  int commitField();
};

class Http1ServerCodec final : public ServerConnection, private Http1Codec {
 public:
  Http1ServerCodec(CodecOwner& owner, ServerConnectionCallbacks& callbacks,
                   Http1Settings settings = {});
  ~Http1ServerCodec() override;

  // Connection
  bool dispatch(BufferChain& data, CodecError& error) override;
  Protocol protocol() const override { return protocol_; }
  void goAway() override;
  void onAboveWriteBufferHighWatermark() override;
  void onBelowWriteBufferLowWatermark() override;
  void onTransportClosed(ResetReason reason) override;
  bool onRemoteEof() override;
  size_t activeStreams() const override { return stream_.active ? 1 : 0; }
  // After a protocol error: the status the codec answered with (0: none),
  // and Envoy's response code details for it.
  int errorStatus() const { return error_status_; }
  std::string_view errorDetails() const { return responseCodeDetails(); }
  // During the reset for a protocol error: the stream's request headers if
  // the error came before they were delivered (null otherwise).
  HeaderMapPtr takeRefusedHeaders() { return std::move(refusedHeaders()); }
  // Whether a message is being parsed (its parser and header block held);
  // false between messages, when the connection costs only this object.
  bool holdsMessageState() const { return m_ != nullptr; }

 private:
  // The one request/response exchange in progress. Reused for every request
  // on the connection, so a request costs no allocation beyond its HeaderMap.
  class ActiveRequest final : public ResponseEncoder, public Stream {
   public:
    explicit ActiveRequest(Http1ServerCodec& codec) : codec_(codec) {}
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

    void start();
    // The 101 to an Upgrade, or a 2xx to a CONNECT: the tunnel is open.
    void encodeTunnelHeaders(const HeaderMap& headers, int status, bool end_stream);

    Http1ServerCodec& codec_;
    StreamCallbacks* callbacks_ = nullptr;
    bool active = false;             // Between a request's start and the stream's end.
    bool request_complete = false;   // The whole request was decoded.
    bool response_started = false;   // Response headers were written.
    bool response_complete = false;  // The whole response was written.
    bool head_request = false;       // The response carries no body.
    bool http10 = false;             // HTTP/1.0 request: no chunked, no 1xx.
    bool te_trailers = false;        // enable_trailers and the request's TE says trailers.
    bool chunked_out = false;        // The response body is chunk-framed.
    bool no_body_out = false;        // Body bytes are dropped (HEAD, 204, 304).
    bool upgrade = false;            // An Upgrade request, or a CONNECT.
    bool connect = false;            // A CONNECT.
    bool tunnel_out = false;         // The response accepted the tunnel: bytes go out as they are.
  };

  void onMessageBegin() override;
  int onHeadersComplete() override;
  void onMessageComplete() override;
  bool mayResume() const override { return !stream_.active && !close_after_response_; }
  void tunnelInputEnding() override { stream_.request_complete = true; }
  void tunnelInputEnded() override { maybeEndStream(); }

  void onResponseComplete();
  void maybeEndStream();
  void resetActive(ResetReason reason, std::string_view detail);
  bool handleError(CodecError& error);

  // These three first: they fill the 4 bytes of Http1Codec's tail padding, so
  // the codec is 176 bytes (a 192-byte malloc chunk, not 208, per connection).
  Protocol protocol_ = Protocol::kHttp11;
  bool close_after_response_ = false;  // Say connection: close, close after this response.
  bool closing_ = false;               // closeAfterFlush() was called.
  ServerConnectionCallbacks& callbacks_;
  ActiveRequest stream_{*this};
};

class Http1ClientCodec final : public ClientConnection, private Http1Codec {
 public:
  explicit Http1ClientCodec(CodecOwner& owner, Http1Settings settings = {});
  ~Http1ClientCodec() override;

  // Connection
  bool dispatch(BufferChain& data, CodecError& error) override;
  Protocol protocol() const override { return Protocol::kHttp11; }
  void goAway() override { reusable_ = false; }
  void onAboveWriteBufferHighWatermark() override;
  void onBelowWriteBufferLowWatermark() override;
  void onTransportClosed(ResetReason reason) override;
  bool onRemoteEof() override;
  size_t activeStreams() const override { return stream_.active ? 1 : 0; }

  // ClientConnection
  RequestEncoder& newStream(StreamDecoder& response_decoder) override;
  bool canStartStream() const override { return !stream_.active && reusable_; }
  bool isReusable() const override { return reusable_; }
  // Whether a message is being parsed (its parser and header block held).
  bool holdsMessageState() const { return m_ != nullptr; }

 private:
  class ActiveRequest final : public RequestEncoder, public Stream {
   public:
    explicit ActiveRequest(Http1ClientCodec& codec) : codec_(codec) {}
    void encodeHeaders(const HeaderMap& headers, bool end_stream) override;
    void encodeData(BufferChain& data, bool end_stream) override;
    void encodeTrailers(const HeaderMap& trailers) override;
    Stream& stream() override { return *this; }
    void setCallbacks(StreamCallbacks* callbacks) override { callbacks_ = callbacks; }
    void resetStream(ResetReason reason) override;
    void readDisable(bool disable) override;
    // A CONNECT: authority-form, and no framing follows.
    void encodeConnectHeaders(const HeaderMap& headers, bool end_stream);

    Http1ClientCodec& codec_;
    StreamCallbacks* callbacks_ = nullptr;
    StreamDecoder* response_decoder = nullptr;
    bool active = false;
    bool request_complete = false;
    bool response_started = false;  // Final (non-1xx) response headers began.
    bool response_complete = false;
    bool head_request = false;  // The response has no body.
    bool chunked_out = false;
    bool upgrade = false;  // An Upgrade request, or a CONNECT: its data goes out unframed.
    bool connect = false;  // A CONNECT.
  };

  void onMessageBegin() override;
  int onHeadersComplete() override;
  void onMessageComplete() override;
  bool mayResume() const override { return stream_.active && !stream_.response_complete; }
  void tunnelInputEnding() override { stream_.response_complete = true; }
  void tunnelInputEnded() override { maybeEndStream(); }

  void maybeEndStream();
  void resetActive(ResetReason reason, std::string_view detail);

  ActiveRequest stream_{*this};
  bool reusable_ = true;        // No connection: close, no error, not drained.
  bool informational_ = false;  // The message being decoded is a 1xx.
  bool opens_tunnel_ = false;   // The message being decoded is a 101 / 2xx that accepts a tunnel.
  bool keep_alive_ = true;      // The response being decoded allows reuse.
};

}  // namespace skiff::http
