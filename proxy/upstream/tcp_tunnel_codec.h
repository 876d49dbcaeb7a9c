// The upstream side of a terminated CONNECT (a route whose upgrade_configs
// has CONNECT with connect_config): no HTTP toward the upstream at all, the
// connection itself is the tunnel. It implements the client codec interface
// so that the pool, its limits and its stats, and the router serve it like
// any other upstream connection: one stream per connection, never reused.
//
// The request's headers are not sent. As the stream starts (the pool hands
// out only connected connections) the response decoder gets a 200 at once,
// which the router passes downstream. From then on the request's data goes
// out as bytes, the bytes that come back are the response's data, and a FIN
// either way ends that direction (half-close). Bytes move as slices.
#pragma once

#include <cstdint>

#include "proxy/http/codec.h"

namespace skiff::upstream {

class TcpTunnelCodec final : public http::ClientConnection,
                             public http::RequestEncoder,
                             public http::Stream {
 public:
  explicit TcpTunnelCodec(http::CodecOwner& owner) : owner_(owner) {}

  // http::Connection
  bool dispatch(BufferChain& data, http::CodecError& error) override;
  // Not HTTP at all; reported as HTTP/1.1 so that the pool treats it as one
  // stream per connection that closes when it is given up.
  http::Protocol protocol() const override { return http::Protocol::kHttp11; }
  void goAway() override {}
  void onAboveWriteBufferHighWatermark() override;
  void onBelowWriteBufferLowWatermark() override;
  void onTransportClosed(http::ResetReason reason) override;
  bool onRemoteEof() override;
  size_t activeStreams() const override { return active_ ? 1 : 0; }

  // http::ClientConnection
  http::RequestEncoder& newStream(http::StreamDecoder& response_decoder) override;
  bool canStartStream() const override { return !used_; }
  bool isReusable() const override { return false; }

  // http::RequestEncoder
  void encodeHeaders(const HeaderMap& headers, bool end_stream) override;
  void encodeData(BufferChain& data, bool end_stream) override;
  void encodeTrailers(const HeaderMap& trailers) override;
  http::Stream& stream() override { return *this; }

  // http::Stream
  void setCallbacks(http::StreamCallbacks* callbacks) override { callbacks_ = callbacks; }
  void resetStream(http::ResetReason reason) override;
  void readDisable(bool disable) override;

 private:
  // Ends the stream once both directions have.
  void maybeEnd();
  void end();

  http::CodecOwner& owner_;
  http::StreamDecoder* decoder_ = nullptr;  // The response side; null once it has ended.
  http::StreamCallbacks* callbacks_ = nullptr;
  uint32_t read_disables_ = 0;  // Outstanding readDisable(true) calls, undone at the end.
  bool used_ = false;           // The one stream was started.
  bool active_ = false;         // Between newStream and the end of both directions (or a reset).
  bool request_done_ = false;   // The downstream's data ended: FIN sent upstream.
  bool response_done_ = false;  // The upstream's FIN came.
};

}  // namespace skiff::upstream
