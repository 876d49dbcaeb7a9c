// The upstream side of HTTP/1.1: requests out, responses in, one exchange at
// a time on a connection that the pool may reuse.
#include <array>

#include "proxy/http/http1/http1_codec.h"

namespace skiff::http {

using http1_detail::HeaderWriter;

namespace {

// "000".."999", so :status is a view into static storage rather than a copy.
constexpr std::array<char, 3000> kStatusDigits = [] {
  std::array<char, 3000> t{};
  for (int i = 0; i < 1000; ++i) {
    t[i * 3] = static_cast<char>('0' + i / 100);
    t[i * 3 + 1] = static_cast<char>('0' + i / 10 % 10);
    t[i * 3 + 2] = static_cast<char>('0' + i % 10);
  }
  return t;
}();

std::string_view statusDigits(int status) {
  return {kStatusDigits.data() + static_cast<size_t>(status) * 3, 3};
}

// RFC 9110 8.6: "A user agent SHOULD NOT send a Content-Length header field
// when the request message does not contain content and the method
// semantics do not anticipate such data."
bool anticipatesNoContent(std::string_view method) { return method == "GET" || method == "HEAD"; }

}  // namespace

Http1ClientCodec::Http1ClientCodec(CodecOwner& owner, Http1Settings settings)
    : Http1Codec(owner, settings, HTTP_RESPONSE) {}

Http1ClientCodec::~Http1ClientCodec() = default;

RequestEncoder& Http1ClientCodec::newStream(StreamDecoder& response_decoder) {
  ActiveRequest& s = stream_;
  s.active = true;
  s.callbacks_ = nullptr;
  s.response_decoder = &response_decoder;
  s.request_complete = false;
  s.response_started = false;
  s.response_complete = false;
  s.head_request = false;
  s.chunked_out = false;
  s.upgrade = false;
  s.connect = false;
  ++stream_epoch_;
  decoder_ = &response_decoder;
  return s;
}

bool Http1ClientCodec::dispatch(BufferChain& data, CodecError& error) {
  if (error_detail_ == nullptr && !stopped_ && !data.empty() && !stream_.active) {
    // Bytes with no request to answer: the connection cannot be trusted.
    error_status_ = 0;
    error_detail_ = "unexpected data from upstream";
  }
  if (error_detail_ == nullptr && stopped_) {
    data.clear();
    return true;
  }
  bool ok = error_detail_ == nullptr;
  if (ok) {
    pending_.move(data);
    in_dispatch_ = true;
    ok = parsePending();
    in_dispatch_ = false;
    if (ok && stopped_) pending_.clear();  // Reset from inside a callback.
    if (ok && !stopped_ && !stream_.active && !pending_.empty()) {
      error_detail_ = "unexpected data after the response";
      ok = false;
    }
  }
  if (!ok) {
    data.clear();
    pending_.clear();
    stopped_ = true;
    reusable_ = false;
    error.http_status = 0;  // Nothing to answer upstream; the router picks the status.
    error.detail = error_detail_;
    resetActive(ResetReason::kProtocolError, error_detail_);
    checkBufferedInput();
    return false;
  }
  checkBufferedInput();
  return true;
}

void Http1ClientCodec::onAboveWriteBufferHighWatermark() {
  if (stream_.active && stream_.callbacks_) stream_.callbacks_->onAboveWriteBufferHighWatermark();
}

void Http1ClientCodec::onBelowWriteBufferLowWatermark() {
  if (stream_.active && stream_.callbacks_) stream_.callbacks_->onBelowWriteBufferLowWatermark();
}

void Http1ClientCodec::onTransportClosed(ResetReason reason) {
  reusable_ = false;
  if (stream_.active && !stopped_ && stream_.response_started && m_ &&
      llhttp_message_needs_eof(&m_->parser)) {
    // A response without content-length or chunked ends where the connection does.
    llhttp_finish(&m_->parser);
  }
  stopped_ = true;
  if (!in_dispatch_) {
    pending_.clear();
    releaseMessage();
  }
  if (reason != ResetReason::kConnectionFailure) reason = ResetReason::kConnectionTermination;
  resetActive(reason, "upstream connection closed before the response was complete");
}

bool Http1ClientCodec::onRemoteEof() {
  return tunnelEof(stream_.active && !stream_.response_complete);
}

void Http1ClientCodec::onMessageBegin() {
  informational_ = false;
  m_->headers->addView(WellKnownHeader::kStatus, "");
}

int Http1ClientCodec::onHeadersComplete() {
  if (m_->parser.http_major != 1 || m_->parser.http_minor > 1) {
    return fail(502, "unsupported HTTP version");
  }
  // Envoy's codec refuses a response with a transfer coding it does not
  // understand, as it refuses such a request: a coding dropped here would
  // reach the client as if it were the content.
  if (m_->te_unsupported) return fail(502, "unsupported transfer encoding");
  int status = m_->parser.status_code;
  ActiveRequest& s = stream_;
  const bool opens_tunnel =
      s.active && s.upgrade && (s.connect ? (status >= 200 && status < 300) : status == 101);
  if (status == 101 && !opens_tunnel) return fail(502, "101 to a request that asked no upgrade");
  if (status < 100 || status > 999) return fail(502, "invalid status code");
  m_->headers->mutableEntries()[0].value = statusDigits(status);
  removeConnectionNominated();
  if (opens_tunnel) {
    // The upgrade fields were dropped as hop-by-hop; the 101 carries them on.
    if (!s.connect) {
      m_->headers->addView(WellKnownHeader::kConnection, "upgrade");
      if (!m_->upgrade.empty()) m_->headers->addView(WellKnownHeader::kUpgrade, m_->upgrade);
    }
    opens_tunnel_ = true;
    reusable_ = false;  // What follows is the tunnel, to the connection's end.
    s.response_started = true;
    m_->ready_headers = std::move(m_->headers);
    return 1;  // No body: the message ends here and the tunnel's bytes follow.
  }
  if (status < 200) {
    informational_ = true;
    m_->ready_headers = std::move(m_->headers);
    return 1;  // 1xx: no body; the final response follows.
  }
  stream_.response_started = true;
  m_->ready_headers = std::move(m_->headers);
  // The response to a HEAD carries framing fields but no body.
  return stream_.head_request ? 1 : 0;
}

void Http1ClientCodec::onMessageComplete() {
  if (informational_) {
    informational_ = false;
    HeaderMapPtr headers = std::move(m_->ready_headers);
    if (stream_.active && decoder_ && headers) decoder_->decode1xxHeaders(std::move(headers));
    return;
  }
  if (opens_tunnel_) {
    // The headers go to the decoder from parsePending, without an end.
    opens_tunnel_ = false;
    tunnel_ = true;
    return;
  }
  if (!llhttp_should_keep_alive(&m_->parser)) reusable_ = false;
  if (!stream_.active) {
    deliverMessageEnd();  // Discards: the stream was reset.
    return;
  }
  // The stream ends before the last delivery, so that the decoder may start
  // the next request on this connection from inside it.
  stream_.response_complete = true;
  maybeEndStream();
  deliverMessageEnd();
}

void Http1ClientCodec::maybeEndStream() {
  ActiveRequest& s = stream_;
  if (!s.active || !s.response_complete) return;
  // A tunnel ends once both directions have.
  if (tunnel_ && !s.request_complete) return;
  // A response that ends before its request leaves the server's view of the
  // connection unknown.
  if (!s.request_complete) reusable_ = false;
  s.active = false;
  s.callbacks_ = nullptr;
  clearStreamReadDisables();
}

void Http1ClientCodec::resetActive(ResetReason reason, std::string_view detail) {
  ActiveRequest& s = stream_;
  if (!s.active) return;
  StreamCallbacks* callbacks = s.callbacks_;
  s.active = false;
  s.callbacks_ = nullptr;
  decoder_ = nullptr;
  if (m_) {
    m_->ready_headers.reset();
    m_->body.clear();
  }
  ++stream_epoch_;
  reusable_ = false;
  clearStreamReadDisables();
  if (callbacks) callbacks->onResetStream(reason, detail);
}

void Http1ClientCodec::ActiveRequest::encodeHeaders(const HeaderMap& headers, bool end_stream) {
  if (!active || request_complete) return;
  Http1ClientCodec& c = codec_;
  std::string_view method = headers.method();
  std::string_view authority = headers.authority();
  head_request = method == "HEAD";
  connect = method == "CONNECT";
  if (connect) {
    upgrade = true;
    encodeConnectHeaders(headers, end_stream);
    return;
  }
  BufferChain out;
  {
    HeaderWriter w(out);
    w.add(method);
    w.add(" ");
    w.add(headers.path());
    w.add(" HTTP/1.1\r\n");
    if (!authority.empty()) w.addField("host", authority);
    bool has_content_length = false;
    http1_detail::HeaderWriter::HopFields hop;
    w.addFields(headers, has_content_length, !authority.empty(), &hop);
    upgrade = hop.asksUpgrade();
    if (upgrade) {
      // No framing of ours: the request's own content-length stays, and what
      // follows it is the tunnel's bytes.
      w.addField("connection", "upgrade");
      w.addField("upgrade", hop.upgrade);
    } else if (!has_content_length) {
      if (end_stream) {
        if (!anticipatesNoContent(method)) w.add("content-length: 0\r\n");
      } else {
        chunked_out = true;
        w.add("transfer-encoding: chunked\r\n");
      }
    }
    w.add("\r\n");
  }
  c.owner_.write(out);
  if (end_stream) request_complete = true;
}

void Http1ClientCodec::ActiveRequest::encodeConnectHeaders(const HeaderMap& headers,
                                                           bool end_stream) {
  Http1ClientCodec& c = codec_;
  std::string_view authority = headers.authority();
  BufferChain out;
  {
    HeaderWriter w(out);
    // RFC 9112 3.2.3: authority-form.
    w.add("CONNECT ");
    w.add(authority);
    w.add(" HTTP/1.1\r\n");
    if (!authority.empty()) w.addField("host", authority);
    // No framing: what follows is the tunnel's bytes.
    w.addTunnelFields(headers, /*keep_upgrade=*/false, /*keep_content_length=*/false,
                      /*skip_host=*/!authority.empty());
    w.add("\r\n");
  }
  c.owner_.write(out);
  if (end_stream) request_complete = true;
}

void Http1ClientCodec::ActiveRequest::encodeData(BufferChain& data, bool end_stream) {
  if (!active || request_complete) {
    data.clear();
    return;
  }
  Http1ClientCodec& c = codec_;
  if (upgrade) {
    // Zero copy: the slices go out as they came, unframed.
    if (!data.empty()) c.owner_.write(data);
    if (end_stream) {
      request_complete = true;
      c.owner_.shutdownAfterFlush();  // The downstream's FIN, passed on.
      c.maybeEndStream();
    }
    return;
  }
  BufferChain out;
  if (chunked_out) {
    if (!data.empty()) {
      http1_detail::appendChunkHeader(out, data.length());
      out.move(data);
      out.appendCopy(end_stream ? "\r\n0\r\n\r\n" : "\r\n");  // Chunk framing.
    } else if (end_stream) {
      out.appendCopy("0\r\n\r\n");  // Chunk framing: the last chunk.
    }
  } else {
    out.move(data);
  }
  if (!out.empty()) c.owner_.write(out);
  if (end_stream) request_complete = true;
}

void Http1ClientCodec::ActiveRequest::encodeTrailers(const HeaderMap& trailers) {
  if (!active || request_complete) return;
  Http1ClientCodec& c = codec_;
  if (upgrade) {
    // A tunnel has no trailers; they only end its data.
    BufferChain none;
    encodeData(none, true);
    return;
  }
  if (chunked_out) {
    BufferChain out;
    {
      HeaderWriter w(out);
      w.add("0\r\n");
      bool unused = false;
      if (c.enable_trailers_) w.addFields(trailers, unused, false);
      w.add("\r\n");
    }
    c.owner_.write(out);
  }
  // A content-length body has no place for trailers: they are dropped.
  request_complete = true;
}

void Http1ClientCodec::ActiveRequest::resetStream(ResetReason reason) {
  Http1ClientCodec& c = codec_;
  if (!active) {
    // The response was complete and is being handed over: the rest of it
    // is dropped, and the connection stays good.
    if (c.delivering_end_) ++c.stream_epoch_;
    return;
  }
  // Half a request or half a response is on the wire: the connection is done.
  c.stopped_ = true;
  // Inside dispatch() llhttp may be reading pending_ right now; dispatch()
  // drops it when the parser returns.
  if (!c.in_dispatch_) c.pending_.clear();
  c.resetActive(reason, "");
}

void Http1ClientCodec::ActiveRequest::readDisable(bool disable) {
  if (active) codec_.streamReadDisable(disable);
}

}  // namespace skiff::http
