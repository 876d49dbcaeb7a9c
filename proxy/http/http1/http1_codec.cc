// What the HTTP/1 server and client codecs share: feeding llhttp slice by
// slice, building header maps of views into the slabs, the RFC 9112 checks
// that llhttp 8.1 leaves to its user, and header block serialization.
#include "proxy/http/http1/http1_codec.h"

#include "proxy/http/http1/llhttp_hooks.h"

#include <charconv>
#include <cstring>
#include <string>

namespace skiff::http {
namespace http1_detail {

void HeaderWriter::addLarge(std::string_view bytes) {
  flush();
  if (bytes.size() > sizeof(buf_)) {
    out_.appendCopy(bytes);  // A huge field: copied straight into the chain.
    return;
  }
  std::memcpy(buf_, bytes.data(), bytes.size());
  used_ = bytes.size();
}

void HeaderWriter::addNumber(uint64_t n) {
  char tmp[24];
  auto r = std::to_chars(tmp, tmp + sizeof(tmp), n);
  add({tmp, static_cast<size_t>(r.ptr - tmp)});
}

void HeaderWriter::addStatusLine(int status) {
  // Most responses: one piece instead of five and a number conversion.
  if (status == 200) {
    add("HTTP/1.1 200 OK\r\n");
    return;
  }
  add("HTTP/1.1 ");
  addNumber(static_cast<uint64_t>(status));
  add(" ");
  add(http1_detail::reasonPhrase(status));
  add("\r\n");
}

void HeaderWriter::addFields(const HeaderMap& headers, bool& has_content_length, bool skip_host,
                             HopFields* hop) {
  for (const HeaderMap::Entry& e : headers.entries()) {
    std::string_view name = e.name;
    if (name.empty() || name[0] == ':') continue;  // Pseudo-headers never go on the wire.
    // One switch on the length finds the few names that need a decision.
    switch (name.size()) {
      case 4:
        if (skip_host && kHostName.matches(name)) continue;
        break;
      // The connection-specific fields (isConnectionSpecific): this hop's
      // framing is ours to choose; an upgrade is the caller's.
      case 7:
        if (kUpgradeName.matches(name)) {
          if (hop) hop->upgrade = e.value;
          continue;
        }
        break;
      case 10:
        if (kConnectionName.matches(name)) {
          if (hop) hop->connection = e.value;
          continue;
        }
        if (kKeepAliveName.matches(name)) continue;
        break;
      case 14:
        if (kContentLengthName.matches(name)) has_content_length = true;
        break;
      case 16:
        if (kProxyConnectionName.matches(name)) continue;
        break;
      case 17:
        if (kTransferEncodingName.matches(name)) continue;
        break;
      default:
        break;
    }
    addField(name, e.value);
  }
}

void HeaderWriter::addFieldsWithoutLength(const HeaderMap& headers) {
  for (const HeaderMap::Entry& e : headers.entries()) {
    if (e.name.empty() || e.name[0] == ':') continue;
    if (isConnectionSpecific(e.name) || kContentLengthName.matches(e.name)) continue;
    addField(e.name, e.value);
  }
}

void HeaderWriter::addTunnelFields(const HeaderMap& headers, bool keep_upgrade,
                                   bool keep_content_length, bool skip_host) {
  for (const HeaderMap::Entry& e : headers.entries()) {
    if (e.name.empty() || e.name[0] == ':') continue;
    if (skip_host && equalsIgnoreCase(e.name, "host")) continue;
    if (!keep_content_length && equalsIgnoreCase(e.name, "content-length")) continue;
    if (isConnectionSpecific(e.name)) {
      bool upgrade_field =
          equalsIgnoreCase(e.name, "upgrade") || equalsIgnoreCase(e.name, "connection");
      if (!keep_upgrade || !upgrade_field) continue;
    }
    addField(e.name, e.value);
  }
}

void HeaderWriter::flush() {
  if (used_ == 0) return;
  // The one copy on the encode path: serializing headers into a slab.
  out_.appendCopy({buf_, used_});
  used_ = 0;
}

std::string_view reasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 102:
      return "Processing";
    case 103:
      return "Early Hints";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 203:
      return "Non-Authoritative Information";
    case 204:
      return "No Content";
    case 205:
      return "Reset Content";
    case 206:
      return "Partial Content";
    case 207:
      return "Multi-Status";
    case 300:
      return "Multiple Choices";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 402:
      return "Payment Required";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 407:
      return "Proxy Authentication Required";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 416:
      return "Range Not Satisfiable";
    case 417:
      return "Expectation Failed";
    case 421:
      return "Misdirected Request";
    case 422:
      return "Unprocessable Content";
    case 425:
      return "Too Early";
    case 426:
      return "Upgrade Required";
    case 428:
      return "Precondition Required";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 451:
      return "Unavailable For Legal Reasons";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    case 507:
      return "Insufficient Storage";
    case 508:
      return "Loop Detected";
    case 511:
      return "Network Authentication Required";
    default:
      return "Unknown";
  }
}

void appendChunkHeader(BufferChain& out, size_t size) {
  char tmp[24];
  auto r = std::to_chars(tmp, tmp + sizeof(tmp) - 2, size, 16);
  r.ptr[0] = '\r';
  r.ptr[1] = '\n';
  out.appendCopy({tmp, static_cast<size_t>(r.ptr + 2 - tmp)});  // Chunk framing.
}

}  // namespace http1_detail

namespace {

bool isOws(char c) { return c == ' ' || c == '\t'; }

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && isOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && isOws(s.back())) s.remove_suffix(1);
  return s;
}

// Message states waiting for reuse on this worker. Bounded: a burst of
// concurrent messages gives its surplus back to the allocator.
class MessagePool {
 public:
  template <typename M>
  M* take() {
    if (free_.empty()) return new M;
    M* m = static_cast<M*>(free_.back());
    free_.pop_back();
    return m;
  }
  template <typename M>
  void give(M* m) {
    if (free_.size() >= kMaxFree) {
      delete m;
      return;
    }
    free_.push_back(m);
  }
  template <typename M>
  void drop() {
    for (void* m : free_) delete static_cast<M*>(m);
    free_.clear();
  }

 private:
  static constexpr size_t kMaxFree = 256;
  std::vector<void*> free_;
};

}  // namespace

// llhttp calls plain functions; these find the codec in parser->data.
struct Http1Callbacks {
  using Message = Http1Codec::Message;

  static Http1Codec& codec(llhttp_t* p) { return *static_cast<Http1Codec*>(p->data); }

  // Whether the header block, up to span_end, is over the size limit.
  static bool overHeaderLimit(const Message& m, const char* span_end) {
    return span_end - m.base > m.header_room;
  }

  // Appends llhttp's span [at, at+len) to acc. The first piece of a field is
  // the common case and stays inline: a view into the slab, pinned once.
  static void appendSpan(Message& m, std::string_view& acc, bool& open, bool& ended_at_slice_end,
                         const char* at, size_t len) {
    ended_at_slice_end = at + len == m.end;
    if (!open) {
      if (m.slice->slab() != m.pinned_slab) {
        m.headers->pin(*m.slice);
        m.pinned_slab = m.slice->slab();
      }
      acc = {at, len};
      open = true;
      return;
    }
    appendMore(m, acc, at, len);
  }

  static void appendMore(Message& m, std::string_view& acc, const char* at, size_t len) {
    if (acc.data() + acc.size() == at) {
      acc = {acc.data(), acc.size() + len};  // The same slab, contiguous: still a view.
      return;
    }
    if (m.slice->slab() != m.pinned_slab) {
      m.headers->pin(*m.slice);
      m.pinned_slab = m.slice->slab();
    }
    // Copy: this field was split across two reads that sit in different
    // slices, so its two pieces are joined in the map's arena.
    std::string joined;
    joined.reserve(acc.size() + len);
    joined.append(acc);
    joined.append(at, len);
    acc = m.headers->intern(joined);
  }

  static int onMessageBegin(llhttp_t* p) {
    Http1Codec& c = codec(p);
    Message& m = *c.m_;
    m.in_header_block = true;
    m.in_trailers = false;
    m.header_bytes = 0;  // Every message starts at the start of a slice (we pause between them).
    m.header_room = int64_t{c.max_request_headers_kb_} * 1024;
    m.header_count = 0;
    m.authority = {};
    m.host_seen = false;
    m.connection_values.clear();
    m.upgrade = {};
    m.url_open = m.field_open = m.value_open = m.awaiting_value = false;
    m.headers = std::make_unique<HeaderMap>();
    m.pinned_slab = nullptr;
    c.onMessageBegin();
    return 0;
  }

  // The span callbacks come only inside a header block (the start line, the
  // fields, the trailers), so they check its size without asking.
  static int onUrl(llhttp_t* p, const char* at, size_t len) {
    Http1Codec& c = codec(p);
    Message& m = *c.m_;
    if (overHeaderLimit(m, at + len)) return c.fail(431, "header block too large");
    appendSpan(m, m.url, m.url_open, m.url_at_end, at, len);
    return 0;
  }

  // onHeaderField and onHeaderValue: the common piece (the whole name or
  // value, in a slab already pinned, within the size limit) is handled in a
  // function that makes no call, so that it saves no registers; anything
  // else goes to the general function, as a tail call. Same checks, same
  // result (bench/probe.sh instr: 15,843 -> 15,648 per proxied request).
  static int onHeaderField(llhttp_t* p, const char* at, size_t len) {
    Message& m = *codec(p).m_;
    if (!m.in_header_block || overHeaderLimit(m, at + len) || m.field_open ||
        m.slice->slab() != m.pinned_slab) {
      return onHeaderFieldPiece(p, at, len);
    }
    m.field_at_end = at + len == m.end;
    m.field = {at, len};
    m.field_open = true;
    m.field_end = at + len;
    awaitValue(m);
    return 0;
  }

  [[gnu::noinline]] static int onHeaderFieldPiece(llhttp_t* p, const char* at, size_t len) {
    Http1Codec& c = codec(p);
    Message& m = *c.m_;
    if (!m.in_header_block) {
      // The first trailer field (after the last chunk).
      m.in_header_block = true;
      m.in_trailers = true;
      m.header_bytes = -(at - m.base);
      m.header_room = int64_t{c.max_request_headers_kb_} * 1024 - m.header_bytes;
      m.header_count = 0;
      m.headers = std::make_unique<HeaderMap>();
      m.pinned_slab = nullptr;
    }
    if (overHeaderLimit(m, at + len)) return c.fail(431, "header block too large");
    appendSpan(m, m.field, m.field_open, m.field_at_end, at, len);
    m.field_end = at + len;
    awaitValue(m);
    return 0;
  }

  // What onHeaderValue needs to tell an obs-fold, as of the name's last
  // piece so far (a later piece sets it again). There is no
  // on_header_field_complete callback: with llhttp's wrapper it cost 32
  // instructions per field, and its checks on the name are nameError's, made
  // when the field is committed or before any other error of its value
  // (bench/probe.sh instr: 14,227 -> 14,125 per proxied request).
  static void awaitValue(Message& m) {
    m.awaiting_value = true;
    m.value_gap = m.field_end + 1;  // After the colon.
    m.value_gap_state = 0;
  }

  // Folds the bytes [p, end) between a field's colon and its value into
  // state: 0 no LF yet, 1 a LF was the last byte, 2 a byte followed a LF.
  static uint8_t scanValueGap(uint8_t state, const char* p, const char* end) {
    for (; p < end && state != 2; ++p) {
      if (state == 1 || *p == '\n') ++state;
    }
    return state;
  }

  // Whether the bytes since the colon, up to at, hold a LF followed by a
  // byte (scanValueGap says 2). The usual gap, ": " in one slice, is one
  // byte and cannot, so it skips the loop.
  static bool foldsBefore(const Message& m, const char* at) {
    if (m.value_gap_state == 0 && at - m.value_gap <= 1) return false;
    return scanValueGap(m.value_gap_state, m.value_gap, at) == 2;
  }

  static int onHeaderValue(llhttp_t* p, const char* at, size_t len) {
    Message& m = *codec(p).m_;
    if (overHeaderLimit(m, at + len) || m.value_open || !m.awaiting_value ||
        m.slice->slab() != m.pinned_slab || foldsBefore(m, at)) {
      return onHeaderValuePiece(p, at, len);
    }
    m.awaiting_value = false;
    m.value_at_end = at + len == m.end;
    m.value = {at, len};
    m.value_open = true;
    return 0;
  }

  [[gnu::noinline]] static int onHeaderValuePiece(llhttp_t* p, const char* at, size_t len) {
    Http1Codec& c = codec(p);
    Message& m = *c.m_;
    // A bad name is the first error of its field, as if found at its colon.
    if (int rc = c.nameError(); rc != 0) return rc;
    if (overHeaderLimit(m, at + len)) return c.fail(431, "header block too large");
    // llhttp 8.1 accepts obs-fold ("X: a\r\n b") and hands the value over in
    // pieces. A value may legitimately come in two pieces only when the first
    // ended at the end of one slice and the second starts the next one.
    // RFC 9112 5.2: "A server that receives an obs-fold in a request message
    // ... MUST either reject the message by sending a 400 (Bad Request) ...";
    // a proxy or gateway receiving one in a response must not forward it.
    bool split = m.value_open && m.value_at_end && at == m.base;
    if (!split) {
      if (m.value_open) return c.fail(400, "obsolete line folding in header value");
      // A fold with an empty first line ("X:\r\n b", "X:\r\n \r\n") arrives
      // as one piece, after a LF and more bytes since the colon. An empty
      // value ("X:\r\n", "X: \r\n") arrives as an empty piece right after
      // its line's LF, which is then the last byte since the colon.
      uint8_t gap = m.awaiting_value ? scanValueGap(m.value_gap_state, m.value_gap, at) : 0;
      m.awaiting_value = false;
      if (gap == 2) return c.fail(400, "obsolete line folding in header value");
    }
    appendSpan(m, m.value, m.value_open, m.value_at_end, at, len);
    return 0;
  }

  static int onHeaderValueComplete(llhttp_t* p) { return codec(p).commitField(); }

  static int onHeadersComplete(llhttp_t* p) {
    Http1Codec& c = codec(p);
    c.m_->in_header_block = false;
    int rc = c.onHeadersComplete();
    if (rc < 0 || c.error_status_ != 0 || c.error_detail_ != nullptr) return -1;
    return rc;
  }

  static int onBody(llhttp_t* p, const char* at, size_t len) {
    Http1Codec& c = codec(p);
    Message& m = *c.m_;
    if (c.decoder_ == nullptr || len == 0) return 0;
    // No copy: a slice over the same slab, sharing it.
    uint32_t begin = m.slice->begin() + static_cast<uint32_t>(at - m.base);
    m.body.append(Slice(m.slice->slab(), begin, begin + static_cast<uint32_t>(len)));
    return 0;
  }

  static int onMessageComplete(llhttp_t* p) {
    Http1Codec& c = codec(p);
    c.m_->in_header_block = false;
    c.onMessageComplete();
    // Stop after every message: the next one waits for this stream to end.
    return HPE_PAUSED;
  }

  // llhttp_unity.c binds the parser's hooks to these same callbacks
  // (llhttp_hooks.h): one set here needs its hook there.
  static const llhttp_settings_t* settings() {
    static const llhttp_settings_t s = [] {
      llhttp_settings_t s;
      llhttp_settings_init(&s);
      s.on_message_begin = onMessageBegin;
      s.on_url = onUrl;
      s.on_header_field = onHeaderField;
      s.on_header_value = onHeaderValue;
      s.on_header_value_complete = onHeaderValueComplete;
      s.on_headers_complete = onHeadersComplete;
      s.on_body = onBody;
      s.on_message_complete = onMessageComplete;
      return s;
    }();
    return &s;
  }

  static MessagePool& pool() {
    thread_local struct Pool {
      MessagePool pool;
      ~Pool() { pool.drop<Http1Codec::Message>(); }
    } p;
    return p.pool;
  }
};

}  // namespace skiff::http

// The parser calls these directly (llhttp_unity.c: no lookup in the
// settings, no call through a pointer).
extern "C" {
using skiff::http::Http1Callbacks;
int skiff_http1_on_message_begin(llhttp_t* p) { return Http1Callbacks::onMessageBegin(p); }
int skiff_http1_on_url(llhttp_t* p, const char* at, size_t len) {
  return Http1Callbacks::onUrl(p, at, len);
}
int skiff_http1_on_header_field(llhttp_t* p, const char* at, size_t len) {
  return Http1Callbacks::onHeaderField(p, at, len);
}
int skiff_http1_on_header_value(llhttp_t* p, const char* at, size_t len) {
  return Http1Callbacks::onHeaderValue(p, at, len);
}
int skiff_http1_on_header_value_complete(llhttp_t* p) {
  return Http1Callbacks::onHeaderValueComplete(p);
}
int skiff_http1_on_headers_complete(llhttp_t* p) { return Http1Callbacks::onHeadersComplete(p); }
int skiff_http1_on_body(llhttp_t* p, const char* at, size_t len) {
  return Http1Callbacks::onBody(p, at, len);
}
int skiff_http1_on_message_complete(llhttp_t* p) { return Http1Callbacks::onMessageComplete(p); }
}

namespace skiff::http {

Http1Codec::Http1Codec(CodecOwner& owner, const Http1Settings& settings, llhttp_type_t type)
    : owner_(owner),
      max_request_headers_kb_(settings.max_request_headers_kb),
      max_headers_count_(settings.max_headers_count),
      max_buffered_input_(static_cast<uint32_t>(settings.max_buffered_input)),
      type_(type),
      enable_trailers_(settings.enable_trailers) {}

Http1Codec::~Http1Codec() { releaseMessage(); }

Http1Codec::Message& Http1Codec::startMessage() {
  m_ = Http1Callbacks::pool().take<Message>();
  // A fresh parser per message: the previous one stopped (paused) right
  // after its message, so this is where the next one would begin anyway.
  // Lenient flags stay off: they are how request smuggling gets in.
  llhttp_init(&m_->parser, type_, Http1Callbacks::settings());
  m_->parser.data = this;
  return *m_;
}

void Http1Codec::releaseMessage() {
  if (!m_) return;
  Message& m = *m_;
  m.headers.reset();
  m.ready_headers.reset();
  m.body.clear();
  m.connection_values.clear();  // Keeps its capacity for the next message.
  m.slice = nullptr;
  m.base = m.end = nullptr;
  m.pinned_slab = nullptr;
  m.url = m.field = m.value = m.authority = m.upgrade = {};
  m.url_open = m.field_open = m.value_open = m.awaiting_value = false;
  m.in_header_block = m.in_trailers = m.host_seen = false;
  m.te_seen = m.te_unsupported = false;
  Http1Callbacks::pool().give(m_);
  m_ = nullptr;
}

HeaderMapPtr& Http1Codec::refusedHeaders() {
  // Per worker, not per connection: it holds a map only from a parse error
  // to the end of that dispatch (handleError clears it).
  thread_local HeaderMapPtr headers;
  return headers;
}

std::string_view Http1Codec::responseCodeDetails() const {
  if (error_detail_ == nullptr) return {};
  std::string_view d = error_detail_;
  if (error_status_ == 431) {
    return d == "too many header fields" ? "http1.too_many_headers" : "http1.headers_too_large";
  }
  // llhttp's reasons for the errors Envoy's codec names on their own.
  if (d == "Content-Length can't be present with Transfer-Encoding") {
    return "http1.content_length_and_chunked_not_allowed";
  }
  if (d == "Invalid `Transfer-Encoding` header value" ||
      d == "Request has invalid `Transfer-Encoding`") {
    return "http1.invalid_transfer_encoding";
  }
  if (d == "Invalid header value char") return "http1.invalid_characters";
  if (d == "missing Host header field") return "missing_host_header";
  return "http1.codec_error";
}

int Http1Codec::fail(int status, const char* detail) {
  if (error_detail_ == nullptr) {
    error_status_ = status;
    error_detail_ = detail;
  }
  if (m_) llhttp_set_error_reason(&m_->parser, detail);
  return HPE_USER;
}

int Http1Codec::nameError() {
  const Message& m = *m_;
  // llhttp 8.1 hands over an empty name (": v", and no name piece at all)
  // and keeps the spaces of "Host : a" in the name.
  if (!m.field_open || m.field.empty()) return fail(400, "empty header field name");
  // RFC 9112 5.1: "No whitespace is allowed between the field name and
  // colon. ... A server MUST reject, with a response status code of 400
  // (Bad Request), any received request message that contains whitespace
  // between a header field name and colon."
  if (isOws(m.field.back())) return fail(400, "whitespace between header field name and colon");
  return 0;
}

int Http1Codec::commitField() {
  using namespace http1_detail;  // The HeaderName constants.
  Message& m = *m_;
  if (!m.field_open || m.field.empty() || isOws(m.field.back())) return nameError();
  std::string_view name = m.field;
  std::string_view value = m.value_open ? m.value : std::string_view();
  m.field_open = m.value_open = false;
  m.awaiting_value = false;
  if (++m.header_count > max_headers_count_) return fail(431, "too many header fields");
  // One switch on the length sorts out the few names the codec handles
  // itself; every other field is added as it came.
  switch (name.size()) {
    case 4:
      if (!m.in_trailers && type_ == HTTP_REQUEST && kHostName.matches(name)) {
        // RFC 9112 3.2: "A server MUST respond with a 400 (Bad Request) status
        // code to any HTTP/1.1 request message ... that contains more than one
        // Host header field line".
        if (m.host_seen) return fail(400, "more than one Host header field");
        m.host_seen = true;
        m.authority = value;  // Becomes :authority.
        return 0;
      }
      break;
    // The connection-specific fields (isConnectionSpecific) are hop-by-hop:
    // llhttp has read the framing from them already.
    case 7:
      if (kUpgradeName.matches(name)) {
        if (!m.in_trailers) m.upgrade = value;  // Kept only if the message opens a tunnel.
        return 0;
      }
      break;
    case 10:
      if (kConnectionName.matches(name)) {
        if (!m.in_trailers) m.connection_values.push_back(value);
        return 0;
      }
      if (kKeepAliveName.matches(name)) return 0;
      break;
    case 16:
      if (kProxyConnectionName.matches(name)) return 0;
      break;
    case 17:
      if (kTransferEncodingName.matches(name)) {
        if (!m.in_trailers) {
          // Envoy's codec takes the field's value as a whole (two fields
          // join with a comma): only "chunked", in any case, is understood.
          static constexpr HeaderName kChunked{"chunked"};
          std::string_view coding = trimOws(value);
          if (m.te_seen || coding.size() != 7 || !kChunked.matches(coding)) {
            m.te_unsupported = true;
          }
          m.te_seen = true;
        }
        return 0;
      }
      break;
    default:
      break;
  }
  m.headers->addView(name, value);
  return 0;
}

void Http1Codec::removeConnectionNominated() {
  Message& m = *m_;
  for (std::string_view list : m.connection_values) {
    while (!list.empty()) {
      size_t comma = list.find(',');
      std::string_view token = trimOws(list.substr(0, comma));
      list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
      if (token.empty() || token[0] == ':') continue;
      static constexpr HeaderName kClose{"close"};
      if (kClose.matches(token) || http1_detail::kKeepAliveName.matches(token) ||
          http1_detail::kUpgradeName.matches(token)) {
        continue;
      }
      // Framing stays: dropping content-length would change the message.
      if (http1_detail::kContentLengthName.matches(token)) continue;
      m.headers->remove(token);
    }
  }
  m.connection_values.clear();
}

void Http1Codec::flushDecoded(bool end_stream) {
  Message& m = *m_;
  if (decoder_ == nullptr) {
    m.ready_headers.reset();
    m.body.clear();
    return;
  }
  uint32_t epoch = stream_epoch_;
  if (m.ready_headers) {
    bool headers_end = end_stream && m.body.empty();
    decoder_->decodeHeaders(std::move(m.ready_headers), headers_end);
    if (headers_end) return;
    if (epoch != stream_epoch_ || decoder_ == nullptr) {
      if (m_) m_->body.clear();
      return;
    }
  }
  if (!m.body.empty() || end_stream) decoder_->decodeData(m.body, end_stream);
  if (m_) m_->body.clear();
}

void Http1Codec::deliverMessageEnd() {
  Message& m = *m_;
  StreamDecoder* decoder = decoder_;
  // The message is over: a new stream may install its decoder from inside the
  // calls below, so nothing here reads decoder_ again.
  decoder_ = nullptr;
  HeaderMapPtr headers = std::move(m.ready_headers);
  // Without enable_trailers the trailers are dropped here, as Envoy's codec does.
  HeaderMapPtr trailers = m.in_trailers && enable_trailers_ ? std::move(m.headers) : nullptr;
  m.in_trailers = false;
  BufferChain body = std::move(m.body);
  m.body.clear();
  if (decoder == nullptr) return;
  uint32_t epoch = stream_epoch_;
  delivering_end_ = true;
  if (headers) {
    bool end = body.empty() && !trailers;
    decoder->decodeHeaders(std::move(headers), end);
    if (end || epoch != stream_epoch_) {
      delivering_end_ = false;
      return;
    }
  }
  if (!body.empty() || !trailers) {
    decoder->decodeData(body, !trailers);
    if (!trailers || epoch != stream_epoch_) {
      delivering_end_ = false;
      return;
    }
  }
  delivering_end_ = false;
  decoder->decodeTrailers(std::move(trailers));
}

bool Http1Codec::parsePending() {
  const int64_t limit = int64_t{max_request_headers_kb_} * 1024;
  while (!stopped_ && (!pending_.empty() || tunnel_)) {
    if (tunnel_) {
      relayTunnel();
      break;
    }
    if (paused_) {
      if (!mayResume()) break;
      paused_ = false;
    }
    if (stream_read_disables_ > 0) break;
    Message& m = message();
    const Slice& s = pending_.slices().front();
    m.slice = &s;
    m.base = s.data();
    m.end = m.base + s.size();
    const char* base = m.base;
    m.header_room = limit - m.header_bytes;
    // A field name that ended with the last slice has its colon here.
    m.field_end = base;
    if (m.awaiting_value) m.value_gap = base;
    llhttp_errno_t rc = llhttp_execute(&m.parser, base, s.size());
    size_t consumed = s.size();
    if (rc == HPE_PAUSED) {
      consumed = static_cast<size_t>(llhttp_get_error_pos(&m.parser) - base);
      paused_ = true;
    } else if (rc == HPE_PAUSED_UPGRADE) {
      // Not reached: onMessageComplete pauses first, upgrade or not, and the
      // codec decides itself whether a tunnel follows.
      consumed = static_cast<size_t>(llhttp_get_error_pos(&m.parser) - base);
      stopped_ = true;
    } else if (rc != HPE_OK) {
      if (error_detail_ == nullptr) {
        // RFC 9112 6.1: "A server that receives a request message with a
        // transfer coding it does not understand SHOULD respond with 501 (Not
        // Implemented)", as Envoy's codec does; llhttp finds some of those
        // (a coding after chunked) while it reads the field.
        error_status_ = rc == HPE_INVALID_TRANSFER_ENCODING && type_ == HTTP_REQUEST ? 501 : 400;
        error_detail_ = llhttp_get_error_reason(&m.parser);
        if (error_detail_ == nullptr) error_detail_ = llhttp_errno_name(rc);
      }
      // Headers parsed in this read wait to go with its body: the stream
      // they opened is reset now, and may still log them.
      if (type_ == HTTP_REQUEST && m_ && m_->ready_headers) {
        refusedHeaders() = std::move(m_->ready_headers);
      }
      stopped_ = true;
      releaseMessage();
      return false;
    }
    if (m_ && m_->awaiting_value) {
      // The colon came, its value has not: what came between is kept as a state.
      m_->value_gap_state =
          Http1Callbacks::scanValueGap(m_->value_gap_state, m_->value_gap, base + consumed);
    }
    // A callback may have ended the codec's use of the message (a reset
    // from inside decodeHeaders): m_ is then gone.
    if (m_ && m_->in_header_block) {
      m_->header_bytes += static_cast<int64_t>(consumed);
      if (m_->header_bytes > limit) {
        // A field whose colon came: its name's error comes first.
        bool past_colon = m_->awaiting_value || m_->value_open;
        if (!past_colon || nameError() == 0) fail(431, "header block too large");
        stopped_ = true;
        releaseMessage();
        return false;
      }
    }
    if (m_) {
      m_->slice = nullptr;
      m_->base = m_->end = nullptr;
    }
    pending_.drain(consumed);
    // One delivery per read: headers and whatever body came with them.
    if (m_ && (m_->ready_headers || !m_->body.empty())) flushDecoded(false);
    // The message was parsed to its end (or parsing stopped): its state goes
    // back to the pool, and the next message starts on a fresh parser.
    if (paused_ || stopped_) releaseMessage();
  }
  return true;
}

void Http1Codec::relayTunnel() {
  // Zero copy: the slices as they were read move to the decoder.
  while (tunnel_ && !stopped_ && decoder_ != nullptr && stream_read_disables_ == 0 &&
         (!pending_.empty() || remote_eof_)) {
    StreamDecoder* decoder = decoder_;
    bool end = remote_eof_;
    BufferChain data = std::move(pending_);
    pending_.clear();
    if (!end) {
      decoder->decodeData(data, false);
      continue;
    }
    decoder_ = nullptr;  // Nothing more comes in.
    remote_eof_ = false;
    tunnelInputEnding();
    decoder->decodeData(data, true);
    tunnelInputEnded();
  }
}

bool Http1Codec::tunnelEof(bool stream_open) {
  if (!tunnel_ || stopped_ || !stream_open || decoder_ == nullptr) return false;
  remote_eof_ = true;
  bool was_in_dispatch = in_dispatch_;
  in_dispatch_ = true;
  relayTunnel();
  in_dispatch_ = was_in_dispatch;
  return true;
}

void Http1Codec::checkBufferedInput() {
  bool over = pending_.length() > max_buffered_input_;
  if (over != owner_read_disabled_) {
    owner_read_disabled_ = over;
    owner_.readDisable(over);
  }
}

void Http1Codec::streamReadDisable(bool disable) {
  if (disable) {
    ++stream_read_disables_;
    owner_.readDisable(true);
    return;
  }
  if (stream_read_disables_ == 0) return;
  --stream_read_disables_;
  owner_.readDisable(false);
  // Bytes that waited in the codec while reading was off.
  if (stream_read_disables_ == 0 && (!pending_.empty() || remote_eof_) && !in_dispatch_) {
    owner_.scheduleDispatch();
  }
}

void Http1Codec::clearStreamReadDisables() {
  while (stream_read_disables_ > 0) {
    --stream_read_disables_;
    owner_.readDisable(false);
  }
}

}  // namespace skiff::http
