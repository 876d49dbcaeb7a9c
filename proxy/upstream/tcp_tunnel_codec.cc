#include "proxy/upstream/tcp_tunnel_codec.h"

#include <memory>

namespace skiff::upstream {

http::RequestEncoder& TcpTunnelCodec::newStream(http::StreamDecoder& response_decoder) {
  used_ = true;
  active_ = true;
  decoder_ = &response_decoder;
  return *this;
}

bool TcpTunnelCodec::dispatch(BufferChain& data, http::CodecError&) {
  if (!active_ || decoder_ == nullptr || data.empty()) {
    data.clear();
    return true;
  }
  // Zero copy: the slices as they were read. A stream that stopped reading
  // may get this one read more; the socket reads no further until it resumes.
  decoder_->decodeData(data, false);
  return true;
}

void TcpTunnelCodec::encodeHeaders(const HeaderMap&, bool end_stream) {
  if (!active_ || decoder_ == nullptr) return;
  // The connection is up: that is the CONNECT's answer (Envoy makes the same
  // 200 when its TCP upstream connects).
  auto headers = std::make_unique<HeaderMap>();
  headers->addView(WellKnownHeader::kStatus, "200");
  decoder_->decodeHeaders(std::move(headers), false);
  if (end_stream && active_) {
    BufferChain none;
    encodeData(none, true);
  }
}

void TcpTunnelCodec::encodeData(BufferChain& data, bool end_stream) {
  if (!active_ || request_done_) {
    data.clear();
    return;
  }
  if (!data.empty()) owner_.write(data);
  if (!end_stream) return;
  request_done_ = true;
  owner_.shutdownAfterFlush();  // The downstream's FIN, passed on.
  maybeEnd();
}

void TcpTunnelCodec::encodeTrailers(const HeaderMap&) {
  BufferChain none;
  encodeData(none, true);  // Trailers only end the data.
}

bool TcpTunnelCodec::onRemoteEof() {
  if (!active_ || response_done_ || decoder_ == nullptr) return false;
  response_done_ = true;
  http::StreamDecoder* decoder = decoder_;
  decoder_ = nullptr;
  BufferChain none;
  decoder->decodeData(none, true);
  maybeEnd();
  return true;
}

void TcpTunnelCodec::maybeEnd() {
  if (active_ && request_done_ && response_done_) end();
}

void TcpTunnelCodec::end() {
  active_ = false;
  decoder_ = nullptr;
  callbacks_ = nullptr;
  while (read_disables_ > 0) {
    --read_disables_;
    owner_.readDisable(false);
  }
}

void TcpTunnelCodec::onTransportClosed(http::ResetReason reason) {
  if (!active_) return;
  http::StreamCallbacks* callbacks = callbacks_;
  end();
  if (reason != http::ResetReason::kConnectionFailure) {
    reason = http::ResetReason::kConnectionTermination;
  }
  if (callbacks) callbacks->onResetStream(reason, "upstream connection closed");
}

void TcpTunnelCodec::resetStream(http::ResetReason) {
  // The borrower gives the connection up (and closes it through the pool).
  if (active_) end();
}

void TcpTunnelCodec::readDisable(bool disable) {
  if (!active_) return;
  if (disable) {
    ++read_disables_;
    owner_.readDisable(true);
  } else if (read_disables_ > 0) {
    --read_disables_;
    owner_.readDisable(false);
  }
}

void TcpTunnelCodec::onAboveWriteBufferHighWatermark() {
  if (active_ && callbacks_) callbacks_->onAboveWriteBufferHighWatermark();
}

void TcpTunnelCodec::onBelowWriteBufferLowWatermark() {
  if (active_ && callbacks_) callbacks_->onBelowWriteBufferLowWatermark();
}

}  // namespace skiff::upstream
