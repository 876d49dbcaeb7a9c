// The downstream side of HTTP/1.1: requests in, responses out, one exchange
// at a time (pipelined requests wait, unparsed, until the response before
// them has ended).
#include <algorithm>
#include <string>

#include "proxy/common/log.h"
#include "proxy/http/http1/http1_codec.h"

namespace skiff::http {

using http1_detail::HeaderWriter;

namespace {

bool startsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && equalsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

// RFC 9110 10.1.4: the "trailers" member of TE says that the client will not
// discard trailer fields. TE is a comma-separated list; members may carry
// parameters (";q=...").
bool acceptsTrailers(const HeaderMap& headers) {
  for (const HeaderMap::Entry& e : headers.entries()) {
    if (!equalsIgnoreCase(e.name, "te")) continue;
    std::string_view rest = e.value;
    while (!rest.empty()) {
      size_t comma = rest.find(',');
      std::string_view member = rest.substr(0, std::min(comma, rest.find(';')));
      while (!member.empty() && (member.front() == ' ' || member.front() == '\t')) {
        member.remove_prefix(1);
      }
      while (!member.empty() && (member.back() == ' ' || member.back() == '\t')) {
        member.remove_suffix(1);
      }
      if (equalsIgnoreCase(member, "trailers")) return true;
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  return false;
}

}  // namespace

Http1ServerCodec::Http1ServerCodec(CodecOwner& owner, ServerConnectionCallbacks& callbacks,
                                   Http1Settings settings)
    : Http1Codec(owner, settings, HTTP_REQUEST), callbacks_(callbacks) {}

Http1ServerCodec::~Http1ServerCodec() = default;

bool Http1ServerCodec::dispatch(BufferChain& data, CodecError& error) {
  if (error_detail_ != nullptr) {
    data.clear();
    error.http_status = error_status_;
    error.detail = error_detail_;
    return false;
  }
  if (stopped_) {
    data.clear();  // Closing: nothing more is read.
    return true;
  }
  pending_.move(data);
  in_dispatch_ = true;
  bool ok = parsePending();
  in_dispatch_ = false;
  if (!ok) return handleError(error);
  if (stopped_) pending_.clear();
  checkBufferedInput();
  return true;
}

bool Http1ServerCodec::handleError(CodecError& error) {
  error.http_status = error_status_;
  error.detail = error_detail_;
  error.details = responseCodeDetails();
  error.stream_reset = stream_.active;
  pending_.clear();
  checkBufferedInput();
  if (closing_) return false;
  if (error_status_ != 0 && !stream_.response_started) {
    // Envoy's codec answers with a local reply whose body is the status's
    // reason phrase ("Bad Request"); the parser's words go to the debug log
    // and the details (http1.codec_error, ...) to the access log.
    SKIFF_LOG(kDebug, std::string("HTTP/1 request refused: ") + error_detail_);
    const std::string_view body = codecErrorBody(error_status_);
    BufferChain out;
    {
      HeaderWriter w(out);
      w.addStatusLine(error_status_);
      w.add("content-type: text/plain\r\nconnection: close\r\ncontent-length: ");
      w.addNumber(body.size());
      w.add("\r\n\r\n");
      w.add(body);
    }
    owner_.write(out);
  }
  resetActive(ResetReason::kProtocolError, error_detail_);
  refusedHeaders().reset();
  closing_ = true;
  owner_.closeAfterFlush();
  return false;
}

void Http1ServerCodec::goAway() {
  close_after_response_ = true;
  if (!stream_.active && !closing_) {
    closing_ = true;
    stopped_ = true;
    owner_.closeAfterFlush();
  }
}

void Http1ServerCodec::onAboveWriteBufferHighWatermark() {
  if (stream_.active && stream_.callbacks_) stream_.callbacks_->onAboveWriteBufferHighWatermark();
}

void Http1ServerCodec::onBelowWriteBufferLowWatermark() {
  if (stream_.active && stream_.callbacks_) stream_.callbacks_->onBelowWriteBufferLowWatermark();
}

void Http1ServerCodec::onTransportClosed(ResetReason reason) {
  stopped_ = true;
  closing_ = true;
  if (!in_dispatch_) {
    pending_.clear();
    releaseMessage();
  }
  resetActive(reason, "downstream connection closed");
}

bool Http1ServerCodec::onRemoteEof() {
  return tunnelEof(stream_.active && !stream_.request_complete);
}

void Http1ServerCodec::onMessageBegin() {
  // Pseudo-headers first, as HTTP/2 wants them; values are filled in when
  // the header block is complete.
  m_->headers->addView(WellKnownHeader::kMethod, "");
  m_->headers->addView(WellKnownHeader::kScheme, "http");
  m_->headers->addView(WellKnownHeader::kPath, "");
  m_->headers->addView(WellKnownHeader::kAuthority, "");
}

int Http1ServerCodec::onHeadersComplete() {
  if (m_->parser.http_major != 1 || m_->parser.http_minor > 1) {
    return fail(505, "unsupported HTTP version");
  }
  const bool connect = m_->parser.method == HTTP_CONNECT;
  if (m_->te_seen) {
    // Envoy's codec: Transfer-Encoding with Content-Length is a 400 (llhttp's
    // words, which name Envoy's details); then any transfer coding but a
    // lone "chunked", and any on a CONNECT (whose body means nothing), is
    // 501 Not Implemented (RFC 9112 6.1).
    if (m_->parser.flags & F_CONTENT_LENGTH) {
      return fail(400, "Content-Length can't be present with Transfer-Encoding");
    }
    if (m_->te_unsupported || connect) {
      return fail(501, "Request has invalid `Transfer-Encoding`");
    }
  }
  bool http10 = m_->parser.http_minor == 0;
  std::string_view scheme = "http";
  std::string_view path = m_->url_open ? m_->url : std::string_view();
  std::string_view authority = m_->authority;
  // RFC 9112 3.2.2: with an absolute-form target, the server "MUST ignore
  // the received Host header field (if any) and instead use the host
  // information of the request-target".
  if (connect) {
    // RFC 9112 3.2.3: a CONNECT's target is in authority-form (host:port),
    // and it is what the tunnel goes to (Envoy matches it, not Host).
    authority = path;
    path = {};
    if (authority.empty() || authority.find('/') != std::string_view::npos) {
      return fail(400, "CONNECT target is not host:port");
    }
  } else if (startsWithIgnoreCase(path, "http://") || startsWithIgnoreCase(path, "https://")) {
    size_t colon = path.find(':');
    scheme = path.substr(0, colon);
    std::string_view rest = path.substr(colon + 3);
    size_t slash = rest.find_first_of("/?");
    authority = rest.substr(0, slash);
    path = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
    if (authority.empty()) return fail(400, "absolute request target without a host");
  } else if (!m_->host_seen && !http10) {
    // RFC 9112 3.2: "A server MUST respond with a 400 (Bad Request) status
    // code to any HTTP/1.1 request message that lacks a Host header field".
    return fail(400, "missing Host header field");
  }
  if (path.empty() && !connect) return fail(400, "empty request target");

  std::span<HeaderMap::Entry> e = m_->headers->mutableEntries();
  e[0].value = llhttp_method_name(static_cast<llhttp_method_t>(m_->parser.method));
  e[1].value = scheme;
  e[2].value = path;
  if (authority.empty()) {
    m_->headers->removeAt(3);
  } else {
    e[3].value = authority;
  }
  if (connect) {
    // RFC 9113 8.5 shape, which the rest of skiff shares: :method and
    // :authority only.
    m_->headers->removeAt(2);
    m_->headers->removeAt(1);
  }
  removeConnectionNominated();
  // llhttp sets upgrade for a CONNECT, and for an Upgrade field that
  // Connection names. The two fields that ask for it were dropped as
  // hop-by-hop; they come back so that the connection manager can decide
  // and the upstream can be asked.
  const bool upgrade = m_->parser.upgrade != 0;
  if (upgrade && !connect) {
    m_->headers->addView(WellKnownHeader::kConnection, "upgrade");
    m_->headers->addView(WellKnownHeader::kUpgrade, m_->upgrade);
  }

  if (!llhttp_should_keep_alive(&m_->parser)) close_after_response_ = true;
  // After an Upgrade or a CONNECT the connection is a tunnel, or (refused)
  // its next bytes cannot be trusted to be HTTP: it closes after this stream.
  if (upgrade) close_after_response_ = true;
  protocol_ = http10 ? Protocol::kHttp10 : Protocol::kHttp11;

  ActiveRequest& s = stream_;
  s.active = true;
  s.request_complete = false;
  s.response_started = false;
  s.response_complete = false;
  s.head_request = m_->parser.method == HTTP_HEAD;
  s.http10 = http10;
  s.te_trailers = enable_trailers_ && !http10 && acceptsTrailers(*m_->headers);
  s.chunked_out = false;
  s.no_body_out = false;
  s.upgrade = upgrade;
  s.connect = connect;
  s.tunnel_out = false;
  s.callbacks_ = nullptr;
  ++stream_epoch_;
  decoder_ = &callbacks_.newStream(stream_);
  m_->ready_headers = std::move(m_->headers);
  return 0;
}

void Http1ServerCodec::onMessageComplete() {
  if (!stream_.active) {
    deliverMessageEnd();  // Discards: the stream was reset.
    return;
  }
  if (stream_.upgrade) {
    // The request's head (and body, if it had one) is done; the bytes that
    // follow are the tunnel's, whether the upstream accepts it or not. The
    // headers and body go to the decoder from parsePending, without an end.
    tunnel_ = true;
    return;
  }
  stream_.request_complete = true;
  deliverMessageEnd();
  maybeEndStream();
}

void Http1ServerCodec::onResponseComplete() {
  stream_.response_complete = true;
  if (stream_.upgrade && !stream_.tunnel_out && !stream_.request_complete && !closing_) {
    // A refused Upgrade or CONNECT (an ordinary answer): what the client
    // sends next need not be HTTP, so nothing more is read and the
    // connection closes once the answer is out, as Envoy does.
    closing_ = true;
    stopped_ = true;
    if (!in_dispatch_) pending_.clear();
    owner_.closeAfterFlush();
  }
  maybeEndStream();
}

void Http1ServerCodec::maybeEndStream() {
  ActiveRequest& s = stream_;
  if (!s.active || !s.request_complete || !s.response_complete) return;
  s.active = false;
  s.callbacks_ = nullptr;
  decoder_ = nullptr;
  clearStreamReadDisables();
  if (close_after_response_) {
    if (!closing_) {
      closing_ = true;
      stopped_ = true;
      owner_.closeAfterFlush();
    }
  } else if (!in_dispatch_ && !pending_.empty()) {
    // A pipelined request waits in pending_; parse it from the event loop.
    owner_.scheduleDispatch();
  }
}

void Http1ServerCodec::resetActive(ResetReason reason, std::string_view detail) {
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
  clearStreamReadDisables();
  if (callbacks) callbacks->onResetStream(reason, detail);
}

void Http1ServerCodec::ActiveRequest::encodeHeaders(const HeaderMap& headers, bool end_stream) {
  if (!active || response_started) return;
  Http1ServerCodec& c = codec_;
  int status = headers.status();
  if (upgrade && (connect ? (status >= 200 && status < 300) : status == 101)) {
    encodeTunnelHeaders(headers, status, end_stream);
    return;
  }
  if (status < 200 || status > 999) status = 500;  // 1xx go through encode1xxHeaders.
  response_started = true;
  no_body_out = head_request || status == 204 || status == 304;
  BufferChain out;
  {
    HeaderWriter w(out);
    w.addStatusLine(status);
    bool has_content_length = false;
    if (te_trailers && !no_body_out && !end_stream) {
      // Trailers come (if at all) after the body, so a client that accepts
      // them gets a chunked body that has room for them, whatever length the
      // upstream announced.
      w.addFieldsWithoutLength(headers);
    } else {
      w.addFields(headers, has_content_length, false);
    }
    if (!has_content_length) {
      if (end_stream) {
        if (!no_body_out) w.add("content-length: 0\r\n");
      } else if (!no_body_out) {
        if (http10) {
          c.close_after_response_ = true;  // HTTP/1.0 has no chunked: the close ends the body.
        } else {
          chunked_out = true;
          w.add("transfer-encoding: chunked\r\n");
        }
      }
    }
    if (c.close_after_response_) {
      w.add("connection: close\r\n");
    } else if (http10) {
      w.add("connection: keep-alive\r\n");
    }
    w.add("\r\n");
  }
  c.owner_.write(out);
  if (end_stream) c.onResponseComplete();
}

void Http1ServerCodec::ActiveRequest::encodeTunnelHeaders(const HeaderMap& headers, int status,
                                                          bool end_stream) {
  Http1ServerCodec& c = codec_;
  response_started = true;
  tunnel_out = true;
  BufferChain out;
  {
    HeaderWriter w(out);
    w.addStatusLine(status);
    // No framing: the tunnel's bytes follow, up to the connection's end.
    // RFC 9110 9.3.6: "A server MUST NOT send any Transfer-Encoding or
    // Content-Length header fields in a 2xx (Successful) response to CONNECT."
    w.addTunnelFields(headers, /*keep_upgrade=*/!connect, /*keep_content_length=*/false,
                      /*skip_host=*/false);
    w.add("\r\n");
  }
  c.owner_.write(out);
  if (end_stream) {
    c.owner_.shutdownAfterFlush();
    c.onResponseComplete();
  }
}

void Http1ServerCodec::ActiveRequest::encodeData(BufferChain& data, bool end_stream) {
  if (!active || !response_started || response_complete) {
    data.clear();
    return;
  }
  Http1ServerCodec& c = codec_;
  if (tunnel_out) {
    // Zero copy: the slices go out as they came, unframed.
    if (!data.empty()) c.owner_.write(data);
    if (end_stream) {
      c.owner_.shutdownAfterFlush();  // The upstream's FIN, passed on.
      c.onResponseComplete();
    }
    return;
  }
  BufferChain out;
  if (no_body_out) {
    data.clear();
  } else if (chunked_out) {
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
  if (end_stream) c.onResponseComplete();
}

void Http1ServerCodec::ActiveRequest::encodeTrailers(const HeaderMap& trailers) {
  if (!active || !response_started || response_complete) return;
  Http1ServerCodec& c = codec_;
  if (tunnel_out) {
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
      // RFC 9112 7.1.2: the trailer section follows the last chunk.
      if (c.enable_trailers_) w.addFields(trailers, unused, false);
      w.add("\r\n");
    }
    c.owner_.write(out);
  }
  // A content-length body has no place for trailers: they are dropped.
  c.onResponseComplete();
}

void Http1ServerCodec::ActiveRequest::encode1xxHeaders(const HeaderMap& headers) {
  // RFC 9110 15.2: "A server MUST NOT send a 1xx response to an HTTP/1.0 client."
  if (!active || response_started || http10) return;
  int status = headers.status();
  if (status < 100 || status > 199 || status == 101) return;
  BufferChain out;
  {
    HeaderWriter w(out);
    w.addStatusLine(status);
    bool unused = false;
    w.addFields(headers, unused, false);
    w.add("\r\n");
  }
  codec_.owner_.write(out);
}

void Http1ServerCodec::ActiveRequest::resetStream(ResetReason reason) {
  if (!active) return;
  Http1ServerCodec& c = codec_;
  // HTTP/1 has no way to end one exchange early but to close the connection.
  c.stopped_ = true;
  // Inside dispatch() llhttp may be reading pending_ right now; dispatch()
  // drops it when the parser returns.
  if (!c.in_dispatch_) c.pending_.clear();
  c.resetActive(reason, "");
  if (!c.closing_) {
    c.closing_ = true;
    c.owner_.closeAfterFlush();
  }
}

void Http1ServerCodec::ActiveRequest::readDisable(bool disable) {
  if (active) codec_.streamReadDisable(disable);
}

}  // namespace skiff::http
