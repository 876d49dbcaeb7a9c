// The upstream side of HTTP/2: requests out, responses in, as many streams at
// once as the peer's SETTINGS_MAX_CONCURRENT_STREAMS allows.
#include "proxy/http/http2/http2_codec.h"

namespace skiff::http {

Http2ClientCodec::Http2ClientCodec(CodecOwner& owner, Http2Settings settings)
    : Http2Codec(owner, settings, /*server=*/false) {
  CallScope scope(*this);  // Sends the connection preface and our SETTINGS.
}

Http2ClientCodec::~Http2ClientCodec() = default;

bool Http2ClientCodec::dispatch(BufferChain& data, CodecError& error) {
  return dispatchBytes(data, error);
}

void Http2ClientCodec::goAway() {
  if (goaway_submitted_ || failed_ || transport_closed_) return;
  CallScope scope(*this);
  goaway_submitted_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
}

RequestEncoder& Http2ClientCodec::newStream(StreamDecoder& response_decoder) {
  // The stream id comes with the HEADERS, in encodeHeaders().
  return addStream(&response_decoder);
}

bool Http2ClientCodec::canStartStream() const {
  if (!isReusable()) return false;
  uint32_t max =
      nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  return stream_count_ < max;
}

void Http2ClientCodec::onHeaderBlock(Http2Stream& s, const nghttp2_frame& frame) {
  bool end_stream = (frame.hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (!s.headers_delivered) {
    int status = s.headers->status();
    if (status >= 100 && status < 200) {
      s.decoder_->decode1xxHeaders(std::move(s.headers));
      return;
    }
    s.headers_delivered = true;
    if (!s.upgrade.empty() && status == 200) {
      // The upstream accepted the extended CONNECT (RFC 8441 5): for the
      // rest of skiff it is the 101 of the HTTP/1.1 Upgrade that it stood
      // for, as Envoy's codec makes it (transformUpgradeResponseFromH2toH1).
      // Any other status is an ordinary response.
      s.headers->setView(WellKnownHeader::kStatus, "101");
      s.headers->addCopy(WellKnownHeader::kUpgrade, s.upgrade);
      s.headers->addView(WellKnownHeader::kConnection, "upgrade");
    }
    deliverHeaders(s, end_stream);
    return;
  }
  s.in_trailers = std::move(s.headers);
  s.in_end = true;
  deliverInput(s);
}

}  // namespace skiff::http
