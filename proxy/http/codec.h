// The seam between the HTTP protocols and everything above them. HTTP/1.1
// (llhttp) and HTTP/2 (nghttp2) implement these; the connection manager, the
// router and the upstream pools use only these. Interfaces only, no code.
//
// A codec is a pure transform between bytes and streams: it never touches a
// socket. Bytes arrive through dispatch(); bytes to send leave through
// CodecOwner::write(). That keeps TLS (a transform on buffers) invisible here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "proxy/buffer/buffer.h"
#include "proxy/http/header_map.h"

namespace skiff::http {

enum class Protocol : uint8_t { kHttp10, kHttp11, kHttp2 };

enum class ResetReason {
  kLocalReset,             // We gave up on the stream (timeout, filter, drain).
  kRemoteReset,            // The peer reset it (RST_STREAM), or closed mid-message.
  kConnectionFailure,      // The connection never came up.
  kConnectionTermination,  // The connection went away with the stream open.
  kProtocolError,          // The peer broke the protocol on this stream.
};

const char* resetReasonName(ResetReason reason);

// A protocol error found while decoding. For a server codec, http_status is
// the status to answer with before closing (400, 413, 431); 0 means close
// without an answer.
struct CodecError {
  int http_status = 0;
  std::string detail;  // Short, for logs and response-code details.
  // Envoy's %RESPONSE_CODE_DETAILS% for the error (a static string, e.g.
  // "http1.codec_error"); empty when the codec does not give one.
  std::string_view details;
  // A stream was open and was reset for the error (it logs it itself).
  bool stream_reset = false;
};

// Receives the decoded messages of one stream, in order: headers, then data
// (zero or more), then optionally trailers. end_stream marks the last call.
class StreamDecoder {
 public:
  virtual ~StreamDecoder() = default;
  // Informational (1xx) response headers; client side only.
  virtual void decode1xxHeaders(HeaderMapPtr headers) = 0;
  virtual void decodeHeaders(HeaderMapPtr headers, bool end_stream) = 0;
  // The decoder takes the bytes by moving them out of data.
  virtual void decodeData(BufferChain& data, bool end_stream) = 0;
  virtual void decodeTrailers(HeaderMapPtr trailers) = 0;
};

// Events on one stream that are not messages.
class StreamCallbacks {
 public:
  virtual ~StreamCallbacks() = default;
  // The stream is dead; no more calls will come for it.
  virtual void onResetStream(ResetReason reason, std::string_view detail) = 0;
  // The bytes this stream has queued toward its peer passed the high-water
  // mark; the producer should stop (readDisable its own source) until
  // onBelowWriteBufferLowWatermark().
  virtual void onAboveWriteBufferHighWatermark() = 0;
  virtual void onBelowWriteBufferLowWatermark() = 0;
};

// Lifetime: a codec may free a stream once both of its directions have ended
// (HTTP/2 does, when the outermost codec call returns). A user detaches its
// callbacks before the call that can end the stream, never after it.
class Stream {
 public:
  virtual ~Stream() = default;
  // One set of callbacks per stream; nullptr detaches.
  virtual void setCallbacks(StreamCallbacks* callbacks) = 0;
  virtual void resetStream(ResetReason reason) = 0;
  // Stops (or resumes) delivering this stream's incoming data. Calls nest:
  // n disables need n enables. This is how backpressure reaches the socket.
  virtual void readDisable(bool disable) = 0;
  // The response is complete and the request is not: the user is finished
  // with the stream (no more callbacks), and the rest of the request is
  // dropped. HTTP/2: if more of the request comes, RST_STREAM NO_ERROR
  // follows the response's last frame (RFC 9113 8.1), so that the client
  // stops sending; a request that ends with its next frame is not reset
  // (curl 7.88 drops a whole response when the reset comes while its body
  // is still unsent). HTTP/1, which cannot resync, closes the connection
  // instead (the connection manager asks for that).
  virtual void resetAfterResponse() {}
};

// Sends one message (headers, data, trailers) of a stream.
class StreamEncoder {
 public:
  virtual ~StreamEncoder() = default;
  // Unless it is made from inside the codec's own dispatch (then the fields
  // are copied), the HTTP/2 codec serializes headers where they are, in a
  // flush later in this loop iteration, before the worker deletes anything
  // (a request with a body goes at once): the map must stay alive and
  // unchanged until then. The connection manager and the router keep theirs
  // for the stream's life.
  virtual void encodeHeaders(const HeaderMap& headers, bool end_stream) = 0;
  // Takes the bytes by moving them out of data.
  virtual void encodeData(BufferChain& data, bool end_stream) = 0;
  virtual void encodeTrailers(const HeaderMap& trailers) = 0;
  virtual Stream& stream() = 0;
};

class ResponseEncoder : public StreamEncoder {
 public:
  virtual void encode1xxHeaders(const HeaderMap& headers) = 0;
};

using RequestEncoder = StreamEncoder;

// What a codec needs from the connection it runs on.
class CodecOwner {
 public:
  virtual ~CodecOwner() = default;
  // Queues bytes for the peer, moving them out of data.
  virtual void write(BufferChain& data) = 0;
  // Asks for dispatch() to be called again soon with no new bytes, from the
  // event loop rather than from inside the current call (HTTP/1 resumes
  // parsing a pipelined request after the previous response has ended).
  virtual void scheduleDispatch() = 0;
  // Stops or resumes reading from the socket (nests like Stream::readDisable).
  virtual void readDisable(bool disable) = 0;
  // Closes the connection once every queued byte is written.
  virtual void closeAfterFlush() = 0;
  // Half-closes the connection (FIN) once every queued byte is written;
  // reading goes on. A tunnel's stream ends its outgoing data this way.
  virtual void shutdownAfterFlush() = 0;
};

class Connection {
 public:
  virtual ~Connection() = default;
  // Decodes as much of data as the protocol allows now. Bytes that must wait
  // (a pipelined request while the previous response is in progress) stay in
  // the codec. An error means the connection must close.
  virtual bool dispatch(BufferChain& data, CodecError& error) = 0;
  virtual Protocol protocol() const = 0;
  // Graceful drain: HTTP/1 closes after the current response, HTTP/2 sends
  // GOAWAY with the last stream id.
  virtual void goAway() = 0;
  // The connection's write queue crossed a watermark; the codec tells its
  // streams (StreamCallbacks).
  virtual void onAboveWriteBufferHighWatermark() = 0;
  virtual void onBelowWriteBufferLowWatermark() = 0;
  // The transport closed (or failed): every open stream is reset.
  virtual void onTransportClosed(ResetReason reason) = 0;
  // The peer half-closed the transport (FIN). A codec carrying a tunnel
  // (an accepted Upgrade or CONNECT on HTTP/1, a raw TCP upstream) ends its
  // stream's incoming data there and returns true: the connection stays open
  // for the other direction. false: the owner handles the FIN as before. The
  // default is for codecs that never carry a tunnel on the connection itself.
  virtual bool onRemoteEof() { return false; }
  // Streams open right now.
  virtual size_t activeStreams() const = 0;
};

class ServerConnectionCallbacks {
 public:
  virtual ~ServerConnectionCallbacks() = default;
  // A request started. The returned decoder receives it; encoder sends the
  // response. Both stay valid until the stream ends or is reset.
  virtual StreamDecoder& newStream(ResponseEncoder& encoder) = 0;
};

class ServerConnection : public Connection {
 public:
  // The first step of a graceful drain (HTTP/2's shutdown notice): tells
  // the client to open no more streams while those it may have sent already
  // are still served; goAway() follows. Does nothing for HTTP/1.
  virtual void shutdownNotice() {}
};

class ClientConnection : public Connection {
 public:
  // Starts a request whose response goes to response_decoder.
  virtual RequestEncoder& newStream(StreamDecoder& response_decoder) = 0;
  // Whether another stream may start now (HTTP/1: no stream open and the
  // connection is reusable; HTTP/2: under the peer's max_concurrent_streams).
  virtual bool canStartStream() const = 0;
  // Whether the connection may be kept for later requests (HTTP/1: no
  // `connection: close`, no framing error).
  virtual bool isReusable() const = 0;
};

}  // namespace skiff::http
