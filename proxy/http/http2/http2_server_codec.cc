// The downstream side of HTTP/2: requests in, responses out, many streams at
// once. The connection manager picks this codec when the first bytes are the
// client preface "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" (h2c prior knowledge) or
// when ALPN chose "h2"; those bytes go to dispatch() like any others.
#include "proxy/http/http2/http2_codec.h"

namespace skiff::http {

namespace {

// An extended CONNECT (RFC 8441 4; the checks let :protocol come only with
// CONNECT, :scheme and :path) becomes the HTTP/1.1 Upgrade it stands for, as
// Envoy's codec turns it (transformUpgradeRequestFromH2toH1): GET, with
// `upgrade: <protocol>` and `connection: upgrade`, and no :protocol. The
// connection manager then matches it against upgrade_configs by that type
// ("websocket"), the router relays it to an HTTP/1.1 upstream as such, and
// the upstream's 101 goes back as a 200 (submitHeaders). Envoy leaves
// `:protocol bytestream` a CONNECT; so does skiff. The HTTP/1.1 fields that
// RFC 8441 5 leaves out of an HTTP/2 WebSocket handshake (sec-websocket-key,
// and -accept in the answer) are neither added nor removed, as in Envoy: a
// client that sends them reaches an upstream that wants them.
void toUpgradeRequest(HeaderMap& h) {
  std::string_view protocol = h.get(WellKnownHeader::kProtocol).value_or("");
  if (protocol == "bytestream") return;
  // The value stays where it is (the map's arena, or HPACK's static table):
  // removing the field keeps its bytes.
  h.remove(":protocol");
  h.setView(WellKnownHeader::kMethod, "GET");
  h.addView(WellKnownHeader::kUpgrade, protocol);
  h.addView(WellKnownHeader::kConnection, "upgrade");
}

}  // namespace

Http2ServerCodec::Http2ServerCodec(CodecOwner& owner, ServerConnectionCallbacks& callbacks,
                                   Http2Settings settings)
    : Http2Codec(owner, settings, /*server=*/true), callbacks_(callbacks) {
  CallScope scope(*this);  // Sends our SETTINGS.
}

Http2ServerCodec::~Http2ServerCodec() = default;

bool Http2ServerCodec::dispatch(BufferChain& data, CodecError& error) {
  return dispatchBytes(data, error);
}

void Http2ServerCodec::goAway() {
  if (goaway_submitted_ || failed_ || transport_closed_) return;
  CallScope scope(*this);
  goaway_submitted_ = true;
  // RFC 9113 6.8: the last stream id we may have processed; streams the
  // client opens after it are refused and may be retried elsewhere.
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
}

void Http2ServerCodec::shutdownNotice() {
  if (goaway_submitted_ || failed_ || transport_closed_) return;
  CallScope scope(*this);
  nghttp2_submit_shutdown_notice(session_);
}

Http2Codec::Http2Stream* Http2ServerCodec::onRequestHeadersBegin(int32_t stream_id) {
  Http2Stream& s = addStream(nullptr);
  s.id = stream_id;
  if (settings_.allow_connect) s.msg.flags |= h2msg::MessageState::kConnectProtocol;
  nghttp2_session_set_stream_user_data(session_, stream_id, &s);
  return &s;
}

void Http2ServerCodec::onHeaderBlock(Http2Stream& s, const nghttp2_frame& frame) {
  bool end_stream = (frame.hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame.headers.cat == NGHTTP2_HCAT_REQUEST) {
    // RFC 9113 8.3.1: without :authority, Host carries the authority; the
    // rest of skiff reads :authority only.
    if (!s.headers->has(":authority")) {
      if (auto host = s.headers->get("host")) s.headers->addView(":authority", *host);
    }
    if ((s.msg.flags & h2msg::MessageState::kProtocol) != 0) toUpgradeRequest(*s.headers);
    s.decoder_ = &callbacks_.newStream(s);
    deliverHeaders(s, end_stream);
    return;
  }
  // Trailers: nghttp2 has checked that they end the stream. They wait behind
  // any body bytes a read-disabled stream still holds.
  s.in_trailers = std::move(s.headers);
  s.in_end = true;
  deliverInput(s);
}

}  // namespace skiff::http
