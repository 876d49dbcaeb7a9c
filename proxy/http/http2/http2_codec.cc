// What the HTTP/2 server and client codecs share: the nghttp2 session and its
// callbacks, stream bookkeeping, input delivery tied to flow control, the
// zero-copy DATA path, the flush, and the flood protections nghttp2 leaves to
// its user.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <optional>
#include <string>

#include "proxy/http/http2/http2_codec.h"

namespace skiff::http {

namespace {

// What a received field's name is to the codec: a well-known name (the
// header map indexes it), another name, or cookie (joined, RFC 9113 8.2.3).
constexpr uint8_t kOtherName = static_cast<uint8_t>(WellKnownHeader::kCount);
constexpr uint8_t kCookieName = kOtherName + 1;
uint8_t nameClass(std::string_view name) {
  if (name == "cookie") return kCookieName;
  return static_cast<uint8_t>(classifyHeaderName(name));
}

// The classes of names from HPACK's static table, learned per worker thread
// the first time each is seen. nghttp2 hands such a name out as a static
// rcbuf that lives as long as the process, so the rcbuf's address names it;
// its entries are 128 bytes apart, so shifting the address by 7 gives the 61
// names 61 different slots (another spacing only costs misses). Most fields
// of a request have such a name: classifying each again, and comparing it
// with "cookie", cost about 250 instructions per proxied request.
struct StaticNameClasses {
  static constexpr size_t kSlots = 64;
  const nghttp2_rcbuf* key[kSlots];
  uint8_t cls[kSlots];
};
thread_local constinit StaticNameClasses tls_static_names = {};

uint8_t staticNameClass(const nghttp2_rcbuf* rcbuf, std::string_view name) {
  size_t slot = (reinterpret_cast<uintptr_t>(rcbuf) >> 7) % StaticNameClasses::kSlots;
  StaticNameClasses& t = tls_static_names;
  if (t.key[slot] != rcbuf) {
    t.key[slot] = rcbuf;
    t.cls[slot] = nameClass(name);
  }
  return t.cls[slot];
}

// Whether a regular field stays out of an HTTP/2 header block (RFC 9113
// 8.2.2): connection-specific ones ("An endpoint MUST NOT generate an HTTP/2
// message containing connection-specific header fields"), Host of a request
// (carried as :authority), and TE with any value but "trailers" ("the TE
// header field ... MUST NOT contain any value other than 'trailers'"). Every
// field of every message passes here, so the length picks the one or two
// names worth comparing (it made seven compares per field before).
bool leftOut(std::string_view name, std::string_view value, bool request) {
  switch (name.size()) {
    case 2:
      return equalsIgnoreCase(name, "te") && !equalsIgnoreCase(value, "trailers");
    case 4:
      return request && equalsIgnoreCase(name, "host");
    default:
      return isConnectionSpecific(name);
  }
}

// Whether any byte of w is an ASCII uppercase letter. Bytes of 0x80 and up
// are masked off first, so no carry crosses into the next byte.
bool hasUpperByte(uint64_t w) {
  // Uppercase letters (0x41-0x5a) have bit 0x20 clear; lowercase letters,
  // digits and '-' have it set. So a word of those, which is every word of
  // almost every name, is answered by this one test (the range test below
  // cost about 100 more instructions per proxied request).
  constexpr uint64_t kBit5 = 0x2020202020202020ULL;
  if ((~w & kBit5) == 0) return false;
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHigh = 0x8080808080808080ULL;
  uint64_t low = w & ~kHigh;
  uint64_t at_least_a = low + kOnes * (0x80 - 'A');   // High bit: byte >= 'A'.
  uint64_t above_z = low + kOnes * (0x80 - 'Z' - 1);  // High bit: byte > 'Z'.
  return (at_least_a & ~above_z & ~w & kHigh) != 0;
}

// Names are checked 8 bytes at a time, not byte by byte; one of 4 to 7
// bytes (date, etag, server, ...) as its first and last 4 bytes in one word
// (the byte loop cost about 110 instructions per proxied request).
bool hasUpper(std::string_view s) {
  const char* p = s.data();
  size_t n = s.size();
  if (n < 8) {
    if (n >= 4) {
      uint32_t head;
      uint32_t tail;
      std::memcpy(&head, p, 4);
      std::memcpy(&tail, p + n - 4, 4);
      return hasUpperByte(uint64_t{head} | uint64_t{tail} << 32);
    }
    for (size_t i = 0; i < n; ++i) {
      if (p[i] >= 'A' && p[i] <= 'Z') return true;
    }
    return false;
  }
  uint64_t w;
  for (; n > 8; p += 8, n -= 8) {
    std::memcpy(&w, p, 8);
    if (hasUpperByte(w)) return true;
  }
  std::memcpy(&w, p + n - 8, 8);  // The last 8 bytes, overlapping what was checked.
  return hasUpperByte(w);
}

// flags NGHTTP2_NV_FLAG_NONE: nghttp2 copies the field into its own storage
// (and lowercases the name) when it is submitted. With
// NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE it reads
// name and value where they are when it serializes the frame (see
// submitHeaders for when that is safe).
nghttp2_nv makeNv(std::string_view name, std::string_view value, uint8_t flags) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                    value.size(), flags};
}

// One x-request-id in this many is indexed (see appendFields): often enough
// that an entry with the name stays in the table, rarely enough that the
// ids' entries do not churn it.
constexpr uint32_t kRequestIdIndexInterval = 64;

// Every regular field of headers, lowercased, minus what HTTP/2 forbids,
// written from out on (room for headers.size() entries); returns the end.
// Lowercased names (HTTP/1 peers may send any case; RFC 9113 8.2.1 wants
// lowercase) are a copy, kept in lowered until nghttp2 has serialized the
// frame or copied the fields (a deque, so that views into it stay put while
// it grows).
// request_ids counts the x-request-id fields the session has encoded (see
// below).
nghttp2_nv* appendFields(const HeaderMap& headers, bool request, nghttp2_nv* out,
                         std::deque<std::string>& lowered, uint8_t flags, uint32_t& request_ids) {
  // A map decoded by an HTTP/2 codec, with fields added since only under
  // well-known names, has no uppercase name to look for.
  const bool lowercase = headers.namesLowercase();
  for (const HeaderMap::Entry& e : headers.entries()) {
    if (e.name.empty() || e.name[0] == ':') continue;  // Pseudo-headers go first, by the caller.
    if (leftOut(e.name, e.value, request)) continue;
    std::string_view name = e.name;
    if (!lowercase && hasUpper(name)) {
      std::string& l = lowered.emplace_back(name);
      for (char& c : l) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
      name = l;
    }
    nghttp2_nv& nv = *out++ = makeNv(name, e.value, flags);
    if (name == "x-request-id" && request_ids++ % kRequestIdIndexInterval != 0) {
      // A fresh value on every request: indexing it only churns the HPACK
      // table, and nghttp2's deflater, which buckets its table by name,
      // compared each new id with every id still in the table (about 50
      // memcmp per request at the default 4 KiB). Sent as a literal, never
      // indexed. But a literal whose name is in no table entry spells the
      // name out too, Huffman-coded each time; so one id in
      // kRequestIdIndexInterval, the session's first among them, is indexed
      // (as Envoy indexes every one), and its entry lends the others the
      // name's index.
      nv.flags |= NGHTTP2_NV_FLAG_NO_INDEX;
    }
  }
  return out;
}

// The most pseudo-headers a message carries (a request: :method, :scheme,
// :authority, :path and :protocol), beside its regular fields.
constexpr size_t kMaxPseudoHeaders = 5;

// nghttp2's allocations, from per-thread free lists. It makes and frees
// about 19 blocks per proxied request (a buffer per literal header field it
// decodes, the stream, the outbound frame, the copied header list, HPACK
// table entries), all within a loop iteration or two and in bursts as large
// as a connection's concurrency, which overflow malloc's small per-thread
// caches. Taking them from free lists saved 1,200 to 1,900 instructions per
// request (bench/probe.sh instr-h2). Blocks of up to kMaxPooled bytes carry a
// 16-byte header naming their size class (16 keeps malloc's alignment). The
// lists of a thread hold at most kFreeBytes (16 MiB) of freed blocks: a loop
// iteration may open the streams of every connection before it closes any
// (64 connections of 100 streams: some 13,000 nghttp2 streams), and lists
// of 64 KiB per class missed on most allocations there (2 MiB, with the
// stream pool's 8,192, saved 1,300 more instructions per request; at 2 MiB,
// one block in 30 still went to malloc and back, about 130 more). Those
// streams alone take 3.1 MiB (an nghttp2 stream is a 256-byte block): at
// 4 MiB, 8,600 to 69,000 blocks per 64,000 requests still went to malloc
// and back, now about 4,000. The lists fill only as far as a load used them.
// Like a worker's other pools nothing here is shared: a block freed on
// another thread joins that thread's list.
class Http2Allocator {
 public:
  static nghttp2_mem* mem() {
    static nghttp2_mem m{nullptr, &malloc, &free, &calloc, &realloc};
    return &m;
  }

 private:
  static constexpr size_t kHeader = 16;
  static constexpr size_t kStep = 64;  // Class c holds blocks of (c + 1) * kStep bytes.
  static constexpr size_t kClasses = 16;
  static constexpr size_t kMaxPooled = kClasses * kStep - kHeader;
  static constexpr size_t kFreeBytes = 16 * 1024 * 1024;
  static constexpr uint32_t kUnpooled = 0xffffffff;

  struct Block {
    Block* next;
  };
  // Trivially destructible and zero at thread start, so reaching it costs
  // no call: a thread_local with a destructor is reached through a TLS init
  // wrapper on every access (about 150 instructions per proxied request for
  // these lists). Guard frees the blocks at thread exit instead; a thread
  // registers it when it first puts a block on a list.
  struct Lists {
    Block* head[kClasses];
    // Bytes the lists may still take: 0 until the thread's first free arms
    // them, and again once the thread is exiting. So one compare in free()
    // covers a full list, an unpooled block (its size never fits), a thread
    // that is not armed yet and one that is exiting (it saved three tests per
    // free and one per malloc, about 150 instructions per proxied request).
    size_t room;
    bool guarded;  // This thread's Guard is registered.
  };
  struct Guard {
    bool armed = false;
    ~Guard() {
      Lists& l = lists;
      for (Block*& b : l.head) {
        while (b != nullptr) {
          Block* next = b->next;
          std::free(b);
          b = next;
        }
      }
      l.room = 0;  // Exiting: blocks go straight to malloc and back.
    }
  };
  static thread_local constinit Lists lists;
  static thread_local Guard guard;

  [[gnu::noinline]] static void arm() {
    guard.armed = true;  // The first access registers its destructor.
    lists.guarded = true;
    lists.room = kFreeBytes;
  }

  static uint32_t& classOf(void* base) { return *static_cast<uint32_t*>(base); }
  static void* user(void* base) { return static_cast<char*>(base) + kHeader; }
  static void* base(void* p) { return static_cast<char*>(p) - kHeader; }
  static size_t capacity(uint32_t c) { return (c + 1) * kStep - kHeader; }

  // The common paths of malloc() and free() pop or push a block and call
  // nothing, so they save no registers; everything else is out of line
  // (that saved about 8 instructions per block, 150 per proxied request).
  static void* malloc(size_t size, void*) {
    if (size <= kMaxPooled) [[likely]] {
      auto c = static_cast<uint32_t>((size + kHeader - 1) / kStep);
      Lists& l = lists;
      if (Block* b = l.head[c]) [[likely]] {
        l.head[c] = b->next;
        l.room += (c + 1) * kStep;
        classOf(b) = c;
        return user(b);
      }
    }
    return mallocSlow(size);
  }

  static void free(void* p, void*) {
    if (p == nullptr) return;
    void* b = base(p);
    uint32_t c = classOf(b);
    size_t size = (size_t{c} + 1) * kStep;  // 256 GiB for kUnpooled.
    Lists& l = lists;
    if (size > l.room) [[unlikely]]
      return freeSlow(b, c);
    auto* block = static_cast<Block*>(b);
    block->next = l.head[c];
    l.head[c] = block;
    l.room -= size;
  }

  // A block too large to pool, or none on its list (an exiting thread's
  // lists are empty: its blocks come from malloc).
  [[gnu::noinline]] static void* mallocSlow(size_t size) {
    if (size > kMaxPooled) {
      void* b = std::malloc(size + kHeader);
      if (b == nullptr) return nullptr;
      classOf(b) = kUnpooled;
      return user(b);
    }
    auto c = static_cast<uint32_t>((size + kHeader - 1) / kStep);
    void* b = std::malloc((c + 1) * kStep);
    if (b == nullptr) return nullptr;
    classOf(b) = c;
    return user(b);
  }

  // An unpooled block, full lists, an exiting thread, or the thread's first
  // free (which arms its lists).
  [[gnu::noinline]] static void freeSlow(void* b, uint32_t c) {
    Lists& l = lists;
    if (c == kUnpooled || l.guarded) {
      std::free(b);
      return;
    }
    arm();
    auto* block = static_cast<Block*>(b);
    block->next = l.head[c];
    l.head[c] = block;
    l.room -= (c + 1) * kStep;
  }

  static void* calloc(size_t n, size_t size, void* ud) {
    if (size != 0 && n > SIZE_MAX / size) return nullptr;
    void* p = malloc(n * size, ud);
    if (p != nullptr) std::memset(p, 0, n * size);
    return p;
  }

  static void* realloc(void* p, size_t size, void* ud) {
    if (p == nullptr) return malloc(size, ud);
    uint32_t c = classOf(base(p));
    if (c == kUnpooled) {
      void* b = std::realloc(base(p), size + kHeader);
      return b == nullptr ? nullptr : user(b);
    }
    if (size <= capacity(c)) return p;
    void* q = malloc(size, ud);
    if (q == nullptr) return nullptr;
    std::memcpy(q, p, capacity(c));
    free(p, ud);
    return q;
  }
};

thread_local constinit Http2Allocator::Lists Http2Allocator::lists = {};
thread_local Http2Allocator::Guard Http2Allocator::guard;

// The codecs of this thread with frames waiting for a flush (see
// flushWaiting), linked through Http2Codec::next_waiting_. A plain pointer,
// so reaching it costs no TLS init call and it outlives every codec.
thread_local constinit Http2Codec* tls_flush_waiting = nullptr;

uint32_t resetCode(ResetReason reason) {
  switch (reason) {
    case ResetReason::kLocalReset:
      return NGHTTP2_CANCEL;
    case ResetReason::kProtocolError:
      return NGHTTP2_PROTOCOL_ERROR;
    default:
      return NGHTTP2_INTERNAL_ERROR;
  }
}

// Some clients send `content-length: 0` with an HTTP/1.1 Upgrade, and some
// servers with its 101. As extended CONNECT and its 200 (RFC 8441) they may
// carry none (RFC 9110 8.6, 9.3.6), and nghttp2 peers refuse one: it is
// left out, as Envoy's transformUpgrade{Request,Response}FromH1toH2 do.
nghttp2_nv* dropZeroContentLength(nghttp2_nv* begin, nghttp2_nv* end) {
  return std::remove_if(begin, end, [](const nghttp2_nv& nv) {
    return std::string_view(reinterpret_cast<const char*>(nv.name), nv.namelen) ==
               "content-length" &&
           std::string_view(reinterpret_cast<const char*>(nv.value), nv.valuelen) == "0";
  });
}

}  // namespace

// nghttp2's C callbacks, as friends of the codec.
struct Http2Callbacks {
  using Stream = Http2Codec::Http2Stream;

  static Http2Codec& codec(void* user_data) { return *static_cast<Http2Codec*>(user_data); }

  // The stream of stream_id, without nghttp2's stream map when it is one the
  // codec met last: the header block being received, the last DATA received
  // or the last DATA sent. A stream closes right after its last DATA, sent
  // (downstream) or received (upstream), and a response's DATA follows its
  // HEADERS: of four lookups per proxied request, one is left (about 100
  // instructions in nghttp2's map, for about 40 of compares here). Each
  // cached pointer is cleared when its stream retires. nghttp2 has forgotten
  // a stream by then, except after a connection error or a transport close,
  // where the lookup would find a done stream that every caller skips as it
  // skips nullptr.
  static Stream* stream(Http2Codec& c, int32_t stream_id) {
    if (stream_id == c.header_stream_id_) return c.header_stream_;
    if (stream_id == c.data_stream_id_) return c.data_stream_;
    if (stream_id == c.sent_stream_id_) return c.sent_stream_;
    return c.findStream(stream_id);
  }

  static ssize_t onSend(nghttp2_session*, const uint8_t* data, size_t length, int, void* user) {
    // Control frames and HEADERS are serialized by nghttp2 into its own
    // buffer; copying them into slabs is unavoidable. DATA takes onSendData.
    codec(user).output_.appendCopy({reinterpret_cast<const char*>(data), length});
    return static_cast<ssize_t>(length);
  }

  static int onSendData(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd,
                        size_t length, nghttp2_data_source* source, void* user) {
    Http2Codec& c = codec(user);
    Stream& s = *static_cast<Stream*>(source->ptr);
    // The 9-byte frame header is the only copy on the DATA path.
    c.output_.appendCopy({reinterpret_cast<const char*>(framehd), 9});
    size_t padlen = frame->data.padlen;
    if (padlen > 0) {
      char pad_length = static_cast<char>(padlen - 1);
      c.output_.appendCopy({&pad_length, 1});  // Padding is never asked for; kept correct anyway.
    }
    c.output_.move(s.out, length);  // The body: slices move, bytes stay put.
    c.sent_stream_ = &s;
    c.sent_stream_id_ = s.id;
    if (padlen > 1) c.output_.appendCopy(std::string(padlen - 1, '\0'));
    ++c.outbound_data_frames_;
    if (s.above_watermark) c.drained_.push_back(&s);
    return 0;
  }

  static ssize_t onReadData(nghttp2_session* session, int32_t stream_id, uint8_t*, size_t length,
                            uint32_t* data_flags, nghttp2_data_source* source, void*) {
    Stream& s = *static_cast<Stream*>(source->ptr);
    size_t n = std::min(length, s.out.length());
    if (n == 0 && !s.local_ended) {
      s.deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    if (n > 0) *data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (s.local_ended && n == s.out.length()) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
      s.provider = false;
      if (s.has_trailers) {
        *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        std::vector<nghttp2_nv> nva;
        nva.reserve(s.out_trailers.size());
        for (const auto& [name, value] : s.out_trailers) {
          nva.push_back(makeNv(name, value, NGHTTP2_NV_FLAG_NONE));  // Copied: cleared below.
        }
        nghttp2_submit_trailer(session, stream_id, nva.data(), nva.size());
        s.out_trailers.clear();
      }
    }
    return static_cast<ssize_t>(n);
  }

  // Envoy's inbound flood checks, on every frame header before its payload.
  static int onBeginFrame(nghttp2_session*, const nghttp2_frame_hd* hd, void* user) {
    Http2Codec& c = codec(user);
    if (c.failed_) return NGHTTP2_ERR_CALLBACK_FAILURE;
    const Http2Settings& cfg = c.settings_;
    switch (hd->type) {
      case NGHTTP2_DATA:
      case NGHTTP2_HEADERS:
      case NGHTTP2_CONTINUATION:
        if (hd->length == 0 && (hd->flags & NGHTTP2_FLAG_END_STREAM) == 0) {
          if (++c.consecutive_empty_frames_ >
              cfg.max_consecutive_inbound_frames_with_empty_payload) {
            ++c.stats_.inbound_empty_frames_flood;
            c.fail("http2.inbound_empty_frames_flood", NGHTTP2_PROTOCOL_ERROR);
            return NGHTTP2_ERR_CALLBACK_FAILURE;
          }
        } else {
          c.consecutive_empty_frames_ = 0;
        }
        break;
      case NGHTTP2_PRIORITY:
        if (++c.inbound_priority_frames_ >
            uint64_t{cfg.max_inbound_priority_frames_per_stream} * (1 + c.inbound_streams_)) {
          ++c.stats_.inbound_priority_frames_flood;
          c.fail("http2.inbound_priority_frames_flood", NGHTTP2_PROTOCOL_ERROR);
          return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        break;
      case NGHTTP2_WINDOW_UPDATE:
        // Envoy's bound: 5 + 2 * (streams + per_data_frame * DATA frames sent).
        if (++c.inbound_window_update_frames_ >
            5 + 2 * (c.inbound_streams_ +
                     uint64_t{cfg.max_inbound_window_update_frames_per_data_frame_sent} *
                         c.outbound_data_frames_)) {
          ++c.stats_.inbound_window_update_frames_flood;
          c.fail("http2.inbound_window_update_frames_flood", NGHTTP2_PROTOCOL_ERROR);
          return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        break;
      default:
        break;
    }
    return 0;
  }

  static int onBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    Http2Codec& c = codec(user);
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    Stream* s;
    if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      ++c.inbound_streams_;
      s = c.onRequestHeadersBegin(frame->hd.stream_id);
    } else {
      s = c.findStream(frame->hd.stream_id);
    }
    c.header_stream_ = s;
    c.header_stream_id_ = frame->hd.stream_id;
    if (s == nullptr || s->done) return 0;
    s->headers = std::make_unique<HeaderMap>();
    s->header_bytes = 0;
    s->cookies.clear();
    return 0;
  }

  // A malformed message (RFC 9113 8.1.1; see http2_message_checks.h): as
  // Envoy does by default (override_stream_error_on_invalid_http_message
  // unset), the whole connection ends, with GOAWAY PROTOCOL_ERROR. The
  // detail names the problem as nghttp2 did when it checked; the details
  // are Envoy's for it, which the connection manager logs with DPE when the
  // message never became a stream (a stream that did is reset).
  static int malformed(Http2Codec& c, const Stream& s, int lib_error_code) {
    // (A server stream has no decoder until its request is delivered.)
    ++c.stats_.rx_messaging_error;
    if (!s.done && s.decoder_ == nullptr) {
      c.error_details_ = lib_error_code == NGHTTP2_ERR_HTTP_HEADER
                             ? "http2.invalid.header.field"
                             : "http2.violation.of.messaging.rule";
    }
    c.fail(std::string("http2.invalid_http_messaging: ") + nghttp2_strerror(lib_error_code),
           NGHTTP2_PROTOCOL_ERROR);
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }

  // The stream's DATA broke RFC 9113 8.1.1 (more than content-length, less
  // at END_STREAM, or before a final response): it alone is reset, as
  // nghttp2 did; its bytes give the connection's window back.
  static void resetForData(Http2Codec& c, Stream& s) {
    s.msg_reset = true;
    nghttp2_submit_rst_stream(c.session_, NGHTTP2_FLAG_NONE, s.id, NGHTTP2_PROTOCOL_ERROR);
  }

  static int onHeader(nghttp2_session*, const nghttp2_frame* frame, nghttp2_rcbuf* name_buf,
                      nghttp2_rcbuf* value_buf, uint8_t, void* user) {
    Http2Codec& c = codec(user);
    nghttp2_vec name_vec = http2_rcbuf::bytes(name_buf);
    nghttp2_vec value_vec = http2_rcbuf::bytes(value_buf);
    size_t namelen = name_vec.len;
    size_t valuelen = value_vec.len;
    // The fields of a block follow its begin callback: no lookup per field.
    Stream* s = stream(c, frame->hd.stream_id);
    if (s == nullptr || frame->hd.type != NGHTTP2_HEADERS) return 0;
    std::string_view n(reinterpret_cast<const char*>(name_vec.base), namelen);
    std::string_view v(reinterpret_cast<const char*>(value_vec.base), valuelen);
    // A name from HPACK's static table is a lowercase token, and a value
    // from it is valid for its name: neither needs a scan.
    bool static_name = http2_rcbuf::isStatic(name_buf);
    bool static_value = http2_rcbuf::isStatic(value_buf);
    uint8_t cls = static_name ? staticNameClass(name_buf, n) : nameClass(n);
    // Every field is checked, even of a stream the user is done with, as
    // long as nghttp2 delivers them (it did the same when it checked).
    bool trailer =
        frame->headers.cat == NGHTTP2_HCAT_HEADERS && (c.server_ || !h2msg::expectsFinal(s->msg));
    h2msg::FieldVerdict verdict =
        h2msg::checkField(s->msg, cls, n, v, static_name, static_value, trailer, c.server_);
    if (verdict != h2msg::FieldVerdict::kAccept) [[unlikely]] {
      if (verdict == h2msg::FieldVerdict::kDrop) return 0;
      return malformed(c, *s, NGHTTP2_ERR_HTTP_HEADER);
    }
    if (!s->headers) return 0;
    // RFC 9113 6.5.2: the size of a field is its name and value lengths plus 32.
    s->header_bytes += namelen + valuelen + 32;
    if (s->header_bytes > size_t{c.settings_.max_header_list_size_kb} * 1024) {
      if (!s->header_overflow) {
        s->header_overflow = true;
        ++c.stats_.header_overflow;
      }
      s->headers.reset();
      // nghttp2 answers with RST_STREAM INTERNAL_ERROR and skips the block.
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (cls == kCookieName) {
      // RFC 9113 8.2.3: split cookie fields are joined with "; " before they
      // reach a non-HTTP/2 context (an HTTP/1 upstream wants one field).
      if (!s->cookies.empty()) s->cookies += "; ";
      s->cookies.append(v);
      return 0;
    }
    // The copy HPACK forces: nghttp2 decoded the field into its own buffers,
    // not the read slab, so it goes into the map's arena. Except a name or
    // value from HPACK's static table (RFC 7541 Appendix A: most names, and
    // values such as GET, http and 200), which nghttp2 hands out from its own
    // static storage, alive as long as the process: the map keeps a view.
    // That saved about 800 instructions per proxied request.
    HeaderMap& h = *s->headers;
    h.addView(static_cast<WellKnownHeader>(cls), static_name ? n : h.intern(n),
              static_value ? v : h.intern(v));
    return 0;
  }

  static int onDataChunk(nghttp2_session* session, uint8_t, int32_t stream_id, const uint8_t* data,
                         size_t len, void* user) {
    Http2Codec& c = codec(user);
    Stream* s = stream(c, stream_id);
    if (s != nullptr && (s->msg_reset || !h2msg::checkData(s->msg, len))) [[unlikely]] {
      if (!s->msg_reset) resetForData(c, *s);
      nghttp2_session_consume_connection(session, len);
      return 0;
    }
    if (s == nullptr || s->done) {
      // Nobody will take these bytes: give the window back now.
      nghttp2_session_consume(session, stream_id, len);
      return 0;
    }
    c.data_stream_ = s;
    c.data_stream_id_ = stream_id;
    const char* p = reinterpret_cast<const char*>(data);
    const Slice* slice = c.current_slice_;
    if (slice != nullptr && p >= slice->data() && p + len <= slice->data() + slice->size()) {
      // Zero copy: the chunk is a range of the slab we fed to nghttp2.
      uint32_t begin = slice->begin() + static_cast<uint32_t>(p - slice->data());
      s->in.append(Slice(slice->slab(), begin, begin + static_cast<uint32_t>(len)));
    } else {
      s->in.appendCopy({p, len});  // Not expected: nghttp2 hands out input pointers.
    }
    s->unconsumed += len;
    return 0;
  }

  static int onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    Http2Codec& c = codec(user);
    if (c.failed_) return NGHTTP2_ERR_CALLBACK_FAILURE;
    switch (frame->hd.type) {
      case NGHTTP2_DATA: {
        Stream* s = stream(c, frame->hd.stream_id);
        if (s == nullptr || s->msg_reset) break;
        if (s->reset_after_end && !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
          c.requestGoesOnAfterEnd(*s);
          break;
        }
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
          if (!h2msg::checkEndStream(s->msg)) [[unlikely]] {
            resetForData(c, *s);
            break;
          }
          s->in_end = true;
        }
        c.deliverInput(*s);
        break;
      }
      case NGHTTP2_HEADERS: {
        Stream* s = stream(c, frame->hd.stream_id);
        if (s == nullptr) break;
        // The header section as a whole (RFC 9113 8.1, 8.3).
        bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
        bool ok;
        if (c.server_) {
          ok = frame->headers.cat == NGHTTP2_HCAT_REQUEST ? h2msg::checkRequestHeaders(s->msg)
                                                          : h2msg::checkTrailers(end_stream);
        } else {
          ok = frame->headers.cat == NGHTTP2_HCAT_RESPONSE || h2msg::expectsFinal(s->msg)
                   ? h2msg::checkResponseHeaders(s->msg)
                   : h2msg::checkTrailers(end_stream);
        }
        if (ok && end_stream) ok = h2msg::checkEndStream(s->msg);
        if (!ok) [[unlikely]]
          return malformed(c, *s, NGHTTP2_ERR_HTTP_MESSAGING);
        if (s->done || !s->headers) break;
        if (!s->cookies.empty()) {
          s->headers->addCopy("cookie", s->cookies);  // Joined above; copied once more here.
          s->cookies.clear();
        }
        // The checks refused every name that is not a lowercase token (and
        // any uppercase one): every name here is lowercase.
        s->headers->markNamesLowercase();
        c.onHeaderBlock(*s, *frame);
        break;
      }
      case NGHTTP2_RST_STREAM:
        ++c.stats_.rx_reset;
        break;
      case NGHTTP2_GOAWAY:
        c.goaway_received_ = true;
        break;
      default:
        break;
    }
    return 0;
  }

  static int onFrameSend(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    Http2Codec& c = codec(user);
    uint8_t type = frame->hd.type;
    if (c.above_high_watermark_) {
      // The owner's queue is over its mark, so these frames pile up unsent:
      // Envoy's outbound flood checks.
      ++c.frames_while_blocked_;
      bool control =
          type == NGHTTP2_RST_STREAM || ((type == NGHTTP2_PING || type == NGHTTP2_SETTINGS) &&
                                         (frame->hd.flags & NGHTTP2_FLAG_ACK));
      if (control) ++c.control_frames_while_blocked_;
      if (c.control_frames_while_blocked_ > c.settings_.max_outbound_control_frames) {
        c.outbound_control_flood_ = true;
      } else if (c.frames_while_blocked_ > c.settings_.max_outbound_frames) {
        c.outbound_flood_ = true;
      }
    }
    if (type == NGHTTP2_RST_STREAM) {
      ++c.stats_.tx_reset;
      if (Stream* s = c.findStream(frame->hd.stream_id)) s->local_reset_sent = true;
    } else if (c.resets_after_end_ > 0 && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
               (type == NGHTTP2_HEADERS || type == NGHTTP2_DATA)) {
      Stream* s = c.findStream(frame->hd.stream_id);
      if (s != nullptr && s->reset_after_end && s->request_went_on) c.resetAfterEnd(*s);
    } else if (type == NGHTTP2_GOAWAY && !c.goaway_submitted_ &&
               frame->goaway.error_code != NGHTTP2_NO_ERROR) {
      // nghttp2 tore the connection down on its own: a connection error, or
      // the stream reset rate limit (it answers rapid reset with GOAWAY
      // INTERNAL_ERROR right after a RST_STREAM).
      c.library_goaway_code_ = frame->goaway.error_code;
    }
    return 0;
  }

  static int onStreamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user) {
    Http2Codec& c = codec(user);
    if (c.destroying_) return 0;
    Stream* s = stream(c, stream_id);
    if (s == nullptr || s->closed) return 0;
    s->closed = true;
    if (s->reset_after_end) {
      s->reset_after_end = false;  // The peer ended or reset it first.
      --c.resets_after_end_;
    }
    s->provider = false;
    s->body_due = false;
    if (!s->done) {
      if (error_code == NGHTTP2_NO_ERROR && (s->in_end || s->remote_ended)) {
        // Ended both ways (or the peer said it needs no more of our body,
        // RFC 9113 8.1): input may still wait for a read-disabled stream.
        s->local_ended = true;
        s->out.clear();
        c.maybeDone(*s);
      } else if (s->local_reset_sent) {
        // We reset it because the peer broke the rules on it (a header list
        // over our limit): a protocol error (Envoy's client codec names a
        // stream it resets for the peer's messaging error so; the router
        // answers 502, UPE).
        c.notifyReset(*s, ResetReason::kProtocolError, nghttp2_http2_strerror(error_code));
      } else {
        c.notifyReset(*s, ResetReason::kRemoteReset, nghttp2_http2_strerror(error_code));
      }
    }
    if (s->done) c.retire(*s);
    return 0;
  }
};

Http2Codec::Http2Stream::~Http2Stream() = default;

Http2Codec::Http2Codec(CodecOwner& owner, const Http2Settings& settings, bool server)
    : owner_(owner), settings_(settings), server_(server) {
  nghttp2_session_callbacks* cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_send_callback(cbs, &Http2Callbacks::onSend);
  nghttp2_session_callbacks_set_send_data_callback(cbs, &Http2Callbacks::onSendData);
  nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, &Http2Callbacks::onBeginFrame);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, &Http2Callbacks::onBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback2(cbs, &Http2Callbacks::onHeader);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &Http2Callbacks::onDataChunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &Http2Callbacks::onFrameRecv);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, &Http2Callbacks::onFrameSend);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &Http2Callbacks::onStreamClose);

  nghttp2_option* opt;
  nghttp2_option_new(&opt);
  // Window updates follow consumption by the decoder (backpressure).
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_max_deflate_dynamic_table_size(opt, settings_.hpack_table_size);
  nghttp2_option_set_max_send_header_block_length(
      opt, std::max<size_t>(64 * 1024, size_t{settings_.max_header_list_size_kb} * 1024 * 2));
  // SETTINGS and PING ACKs nghttp2 may hold before it calls it a flood.
  nghttp2_option_set_max_outbound_ack(opt, settings_.max_outbound_control_frames);
  nghttp2_option_set_stream_reset_rate_limit(opt, settings_.stream_reset_rate_burst,
                                             settings_.stream_reset_rate_per_sec);
  nghttp2_option_set_max_continuations(opt, settings_.max_continuations);
  // Closed streams are forgotten at once (no RFC 7540 priority tree), so a
  // stream id never maps to a stream object after its close callback.
  nghttp2_option_set_no_closed_streams(opt, 1);
  // skiff checks the HTTP message rules itself (http2_message_checks.h),
  // with the same outcomes and at a fraction of the cost: nghttp2's checks
  // took about 3,650 instructions per proxied h2c request.
  nghttp2_option_set_no_http_messaging(opt, 1);
  if (server_) {
    nghttp2_session_server_new3(&session_, cbs, this, opt, Http2Allocator::mem());
  } else {
    nghttp2_session_client_new3(&session_, cbs, this, opt, Http2Allocator::mem());
  }
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);

  std::vector<nghttp2_settings_entry> iv = {
      {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, settings_.hpack_table_size},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE,
       std::min<uint32_t>(settings_.initial_stream_window_size, NGHTTP2_MAX_WINDOW_SIZE)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, settings_.max_header_list_size_kb * 1024},
  };
  if (server_) {
    iv.push_back({NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, settings_.max_concurrent_streams});
    // RFC 8441 3: lets the client send extended CONNECT (:protocol).
    if (settings_.allow_connect) iv.push_back({NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1});
  } else {
    iv.push_back({NGHTTP2_SETTINGS_ENABLE_PUSH, 0});
  }
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv.data(), iv.size());
  uint32_t conn_window =
      std::min<uint32_t>(settings_.initial_connection_window_size, NGHTTP2_MAX_WINDOW_SIZE);
  if (conn_window > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE) {
    nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                          static_cast<int32_t>(conn_window));
  }
}

Http2Codec::~Http2Codec() {
  if (flush_waiting_) {
    for (Http2Codec** p = &tls_flush_waiting; *p != nullptr; p = &(*p)->next_waiting_) {
      if (*p == this) {
        *p = next_waiting_;
        break;
      }
    }
  }
  destroying_ = true;
  nghttp2_session_del(session_);
  while (first_stream_ != nullptr) {
    Http2Stream* s = first_stream_;
    first_stream_ = s->next;
    delete s;
  }
}

Http2Codec::Http2Stream& Http2Codec::addStream(StreamDecoder* decoder) {
  auto* s = new Http2Stream(*this, decoder);
  s->prev = last_stream_;
  if (last_stream_ != nullptr) {
    last_stream_->next = s;
  } else {
    first_stream_ = s;
  }
  last_stream_ = s;
  ++stream_count_;
  return *s;
}

std::vector<Http2Codec::Http2Stream*> Http2Codec::streamsSnapshot() const {
  std::vector<Http2Stream*> out;
  out.reserve(stream_count_);
  for (Http2Stream* s = first_stream_; s != nullptr; s = s->next) out.push_back(s);
  return out;
}

Http2Codec::Http2Stream* Http2Codec::findStream(int32_t stream_id) const {
  return static_cast<Http2Stream*>(nghttp2_session_get_stream_user_data(session_, stream_id));
}

void Http2Codec::retire(Http2Stream& s) {
  // nghttp2 forgets the stream when its close callback returns; the object
  // itself lives until the outermost call returns, since callers up the
  // stack may still hold it.
  if (s.retired) return;
  s.retired = true;
  if (&s == header_stream_) header_stream_ = nullptr;
  if (&s == data_stream_) data_stream_ = nullptr;
  if (&s == sent_stream_) sent_stream_ = nullptr;
  (s.prev != nullptr ? s.prev->next : first_stream_) = s.next;
  (s.next != nullptr ? s.next->prev : last_stream_) = s.prev;
  s.prev = s.next = nullptr;
  --stream_count_;
  dead_.emplace_back(&s);
}

bool Http2Codec::dispatchBytes(BufferChain& data, CodecError& error) {
  if (!failed_ && !transport_closed_) {
    CallScope scope(*this);
    scheduled_ = false;
    // The chain is ours while nghttp2 reads it: every DATA chunk it reports
    // points into one of these slices.
    BufferChain input;
    input.move(data);
    // Requests waiting for the scheduled flush go before anything is read
    // that could hold them back or refuse them (see submitHeaders).
    if (requests_unsent_ && !input.empty()) flush();
    for (const Slice& slice : input.slices()) {
      current_slice_ = &slice;
      ssize_t rv = nghttp2_session_mem_recv(
          session_, reinterpret_cast<const uint8_t*>(slice.data()), slice.size());
      current_slice_ = nullptr;
      if (rv < 0) {
        if (!failed_) {
          std::string detail;
          if (rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) {
            detail = "http2.too_many_continuations";
          } else if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
            detail = "http2.invalid_preface";
          } else if (rv == NGHTTP2_ERR_FLOODED) {
            // nghttp2 holds too many SETTINGS and PING ACKs: control frames.
            ++stats_.outbound_control_flood;
            detail = "http2.outbound_control_flood";
          } else {
            detail = std::string("http2.codec_error: ") + nghttp2_strerror(static_cast<int>(rv));
          }
          if (rv != NGHTTP2_ERR_FLOODED) ++stats_.protocol_error;
          fail(detail, NGHTTP2_PROTOCOL_ERROR);
        }
        break;
      }
      if (failed_) break;
    }
    if (pending_delivery_ && !failed_) {
      pending_delivery_ = false;
      std::vector<Http2Stream*> ready;
      for (Http2Stream* s = first_stream_; s != nullptr; s = s->next) {
        if (s->read_disables == 0 && !s->done && !s->remote_ended &&
            (!s->in.empty() || s->in_end || s->in_trailers)) {
          ready.push_back(s);
        }
      }
      for (Http2Stream* s : ready) deliverInput(*s);
    }
  } else {
    data.clear();
  }
  // What this input made other codecs send (a request's HEADERS upstream, a
  // response downstream) leaves now, one flush per codec for the whole read,
  // rather than once every connection's read has queued its frames: the
  // nghttp2 blocks those hold (some 6,400 HEADERS at 64 connections of 100
  // streams) overflowed the allocator's free lists into malloc, which cost
  // about 900 instructions per proxied request, more than the batching saved.
  if (tls_flush_waiting != nullptr) flushWaiting();
  if (failed_) {
    error.http_status = 0;
    error.detail = error_detail_;
    error.details = error_details_;
    error_details_ = {};  // Logged once.
    return false;
  }
  return true;
}

void Http2Codec::deliverHeaders(Http2Stream& s, bool end_stream) {
  HeaderMapPtr headers = std::move(s.headers);
  if (end_stream) {
    s.in_end = true;
    s.remote_ended = true;
  }
  s.decoder_->decodeHeaders(std::move(headers), end_stream);
  if (end_stream) maybeDone(s);
}

void Http2Codec::deliverInput(Http2Stream& s) {
  if (s.done || s.decoder_ == nullptr) {
    if (s.unconsumed > 0 && s.id > 0) nghttp2_session_consume(session_, s.id, s.unconsumed);
    s.unconsumed = 0;
    s.in.clear();
    s.in_trailers.reset();
    return;
  }
  if (s.read_disables > 0 || s.remote_ended) return;
  // What piled up while the stream was read-disabled (up to a whole window)
  // goes on in pieces, so that a consumer that fills up stops it after one
  // piece instead of taking the whole backlog past its high-water mark.
  constexpr size_t kPiece = 64 * 1024;
  while (!s.in.empty() || (s.in_end && !s.in_trailers)) {
    BufferChain piece;
    piece.move(s.in, std::min(kPiece, s.in.length()));
    bool end = s.in.empty() && s.in_end && !s.in_trailers;
    // Bytes received and handed on: the peer may send as many again. Once
    // the peer ended the stream, it sends nothing more on it: only the
    // connection's window needs the bytes back, and nghttp2 then skips
    // looking the stream up (about 100 instructions per proxied response).
    size_t n = piece.length();
    if (n > 0) {
      s.unconsumed -= n;
      if (s.in_end) {
        nghttp2_session_consume_connection(session_, n);
      } else {
        nghttp2_session_consume(session_, s.id, n);
      }
    }
    if (end) s.remote_ended = true;
    s.decoder_->decodeData(piece, end);
    if (end) {
      maybeDone(s);
      return;
    }
    // The decoder may have read-disabled or reset the stream.
    if (s.done || s.read_disables > 0) return;
  }
  if (s.in_trailers && s.in.empty()) {
    s.remote_ended = true;
    s.decoder_->decodeTrailers(std::move(s.in_trailers));
    maybeDone(s);
  }
}

void Http2Codec::maybeDone(Http2Stream& s) {
  if (s.done || !s.remote_ended || !s.local_ended) return;
  s.done = true;
  s.callbacks_ = nullptr;
  s.decoder_ = nullptr;
  if (s.closed) retire(s);
}

void Http2Codec::notifyReset(Http2Stream& s, ResetReason reason, std::string_view detail) {
  if (s.done) return;
  s.done = true;
  if (s.unconsumed > 0 && s.id > 0) nghttp2_session_consume(session_, s.id, s.unconsumed);
  s.unconsumed = 0;
  s.in.clear();
  s.in_trailers.reset();
  s.out.clear();
  StreamCallbacks* cb = s.callbacks_;
  s.callbacks_ = nullptr;
  s.decoder_ = nullptr;
  if (cb != nullptr) cb->onResetStream(reason, detail);
}

void Http2Codec::fail(std::string_view detail, uint32_t goaway_code) {
  if (failed_) return;
  failed_ = true;
  error_detail_ = std::string(detail);
  if (goaway_code != kNoGoaway && !transport_closed_) {
    nghttp2_session_terminate_session(session_, goaway_code);
  }
  // The streams hear of it, and the owner is asked to close, only in the
  // flush at the end of this call, once the GOAWAY is in the owner's queue:
  // the owner may close at once when its queue is empty (an upstream pool
  // does when a reset leaves a connection unusable).
  streams_reset_due_ = true;
  if (!close_requested_ && !transport_closed_) {
    close_requested_ = true;
    close_after_flush_due_ = true;
  }
}

void Http2Codec::resetStreamsAfterFailure() {
  streams_reset_due_ = false;
  for (Http2Stream* s : streamsSnapshot()) {
    // A client codec failed on the peer's error: Envoy's CodecClient resets
    // its streams as a protocol error then (the router answers 502, UPE).
    notifyReset(*s, server_ ? ResetReason::kConnectionTermination : ResetReason::kProtocolError,
                error_detail_);
    // nghttp2 will not report these closed any more.
    s->closed = true;
    retire(*s);
  }
}

void Http2Codec::checkStreamWatermark(Http2Stream& s) {
  size_t high = settings_.stream_write_buffer_high_watermark;
  size_t len = s.out.length();
  if (!s.above_watermark && len > high) {
    s.above_watermark = true;
    if (s.callbacks_) s.callbacks_->onAboveWriteBufferHighWatermark();
  } else if (s.above_watermark && len <= high / 2) {
    s.above_watermark = false;
    if (s.callbacks_) s.callbacks_->onBelowWriteBufferLowWatermark();
  }
}

void Http2Codec::onConnectionAboveHighWatermark() {
  CallScope scope(*this);
  above_high_watermark_ = true;
  frames_while_blocked_ = 0;
  control_frames_while_blocked_ = 0;
  for (Http2Stream* s : streamsSnapshot()) {
    if (s->callbacks_) s->callbacks_->onAboveWriteBufferHighWatermark();
  }
}

void Http2Codec::onConnectionBelowLowWatermark() {
  CallScope scope(*this);
  above_high_watermark_ = false;
  frames_while_blocked_ = 0;
  control_frames_while_blocked_ = 0;
  for (Http2Stream* s : streamsSnapshot()) {
    if (s->callbacks_) s->callbacks_->onBelowWriteBufferLowWatermark();
  }
}

void Http2Codec::closeTransport(ResetReason reason) {
  if (transport_closed_) return;
  CallScope scope(*this);
  transport_closed_ = true;
  for (Http2Stream* s : streamsSnapshot()) {
    notifyReset(*s, reason, "connection closed");
    s->closed = true;
    retire(*s);
  }
}

void Http2Codec::flush() {
  if (transport_closed_ || session_ == nullptr) return;
  requests_unsent_ = false;
  for (int round = 0; round < 8; ++round) {
    int rv = nghttp2_session_send(session_);
    if (!output_.empty()) owner_.write(output_);
    if (rv < 0 && !failed_) {
      ++stats_.protocol_error;
      fail(std::string("http2.codec_error: ") + nghttp2_strerror(rv), kNoGoaway);
    }
    if (outbound_control_flood_ && !failed_) {
      ++stats_.outbound_control_flood;
      fail("http2.outbound_control_flood", NGHTTP2_ENHANCE_YOUR_CALM);
      continue;  // Send the GOAWAY.
    }
    if (outbound_flood_ && !failed_) {
      ++stats_.outbound_flood;
      fail("http2.outbound_flood", NGHTTP2_ENHANCE_YOUR_CALM);
      continue;  // Send the GOAWAY.
    }
    if (library_goaway_code_ != 0 && !failed_) {
      // nghttp2 answers a peer over the stream reset rate limit with GOAWAY
      // INTERNAL_ERROR; it uses that code for no other inbound problem.
      if (library_goaway_code_ == NGHTTP2_INTERNAL_ERROR && server_ && stats_.rx_reset > 0) {
        ++stats_.rapid_reset;
        fail("http2.too_many_stream_resets", kNoGoaway);
      } else {
        ++stats_.protocol_error;
        fail(std::string("http2.connection_error: ") + nghttp2_http2_strerror(library_goaway_code_),
             kNoGoaway);
      }
    }
    if (streams_reset_due_ && !output_.empty()) continue;  // Send the GOAWAY first.
    if (streams_reset_due_) resetStreamsAfterFailure();
    if (drained_.empty() || transport_closed_) break;
    // Producers told to slow down may resume now; what they send goes out in
    // the next round.
    std::vector<Http2Stream*> drained = std::move(drained_);
    drained_.clear();
    for (Http2Stream* s : drained) checkStreamWatermark(*s);
  }
  if (streams_reset_due_) resetStreamsAfterFailure();
  if (close_after_flush_due_ && !transport_closed_) {
    close_after_flush_due_ = false;
    owner_.closeAfterFlush();
  }
  if (!close_requested_ && nghttp2_session_want_read(session_) == 0 &&
      nghttp2_session_want_write(session_) == 0) {
    // GOAWAY went both ways (or one way with no stream left): nothing more
    // will happen on this connection.
    close_requested_ = true;
    owner_.closeAfterFlush();
  }
}

void Http2Codec::scheduleFlush() {
  if (transport_closed_) return;
  if (!flush_waiting_) {
    flush_waiting_ = true;
    next_waiting_ = tls_flush_waiting;
    tls_flush_waiting = this;
  }
  if (scheduled_) return;
  scheduled_ = true;
  owner_.scheduleDispatch();
}

void Http2Codec::flushWaiting() {
  // A flush may list codecs again (a producer told it may go on encodes
  // into another): take from the list until it stays empty.
  while (Http2Codec* c = tls_flush_waiting) {
    tls_flush_waiting = c->next_waiting_;
    c->next_waiting_ = nullptr;
    c->flush_waiting_ = false;
    // A codec inside a call of its own flushes when that call returns.
    if (c->depth_ == 0) CallScope scope(*c);
  }
}

void Http2Codec::onOutermostExit() {
  flush();
  // Usually empty (names from HTTP/2 peers are lowercase already), and
  // clearing an empty deque still walks its node map: about 100
  // instructions per proxied request.
  if (!lowered_.empty()) lowered_.clear();
  // After a connection error or a transport close, nghttp2 may still name
  // the dead streams (as data sources or user data): they live as long as
  // the codec then.
  if (!failed_ && !transport_closed_) dead_.clear();
}

void Http2Codec::submitHeaders(Http2Stream& s, const HeaderMap& headers, bool end_stream,
                               bool request) {
  // nghttp2 serializes HEADERS only in flush(). When this call is the
  // outermost one into the codec, that flush runs at the end of encodeHeaders
  // or, usually, later in this loop iteration (see encodeHeaders): when the
  // dispatch of another codec that made the call returns, or else before
  // the worker next writes to sockets or deletes anything (flushWaiting).
  // The caller keeps headers alive and unchanged until then (codec.h), and
  // lowered_ is cleared only after a flush. That flush
  // serializes every frame queued: a response's HEADERS always (or drops
  // it unread if the stream closed meanwhile), a request's unless nghttp2
  // holds it back for the peer's SETTINGS_MAX_CONCURRENT_STREAMS, which
  // cannot happen while our streams (a superset of the ones nghttp2 has
  // open, this one included) are within it: a dispatch sends waiting
  // requests before it reads a SETTINGS that could lower it (or a GOAWAY),
  // and a reset sends them before its RST_STREAM (see requests_unsent_).
  // Then nghttp2 may read the fields where they are instead of copying and
  // lowercasing them, which saved about 1,500 instructions per proxied
  // request. A frame that is never serialized (the transport closed, the
  // session failed) is freed unread. Nested calls (a local reply from
  // inside dispatch) copy.
  uint8_t flags = NGHTTP2_NV_FLAG_NONE;
  if (depth_ == 1 &&
      (!request || stream_count_ <= nghttp2_session_get_remote_settings(
                                        session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS))) {
    flags = NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE;
  }
  // The field list is written through a pointer into a vector that only
  // ever grows: emplace_back per field, and a resize per message that
  // zero-filled the list, were out-of-line calls (about 500 instructions
  // per proxied request with the name lookups below).
  std::vector<nghttp2_nv>& nva = nva_;
  if (nva.size() < headers.size() + kMaxPseudoHeaders) {
    nva.resize(headers.size() + kMaxPseudoHeaders);
  }
  nghttp2_nv* out = nva.data();
  bool upgrade = false;  // An Upgrade or its 101, as extended CONNECT or its 200.
  if (request) {
    std::string_view method = headers.method();
    if (headers.has(WellKnownHeader::kUpgrade) && method != "CONNECT") [[unlikely]] {
      // An HTTP/1.1 Upgrade (WebSocket) goes out as the extended CONNECT of
      // RFC 8441 4, as Envoy's codec sends it (transformUpgradeRequestFromH1toH2):
      // CONNECT with :protocol, :scheme and :path; its upgrade and connection
      // fields stay out with the other connection-specific ones. Like
      // Envoy, skiff does not wait for the upstream's
      // SETTINGS_ENABLE_CONNECT_PROTOCOL (a new connection's first request
      // leaves before its SETTINGS arrive); an upstream without RFC 8441
      // refuses the request, and the client gets a 503.
      s.upgrade = upgradeType(headers);
      if (!s.upgrade.empty()) method = "CONNECT";
    }
    // A response to HEAD or CONNECT has rules of its own (RFC 9110 6.4.1, 8.6).
    h2msg::recordRequestMethod(s.msg, method);
    std::optional<std::string_view> authority = headers.get(WellKnownHeader::kAuthority);
    if (!authority || authority->empty()) authority = headers.get(WellKnownHeader::kHost);
    *out++ = makeNv(":method", method, flags);
    if (method == "CONNECT" && s.upgrade.empty()) {
      if (authority) *out++ = makeNv(":authority", *authority, flags);
    } else {
      std::string_view scheme = headers.scheme();
      *out++ = makeNv(":scheme", scheme.empty() ? "http" : scheme, flags);
      if (authority) *out++ = makeNv(":authority", *authority, flags);
      std::string_view path = headers.path();
      *out++ = makeNv(":path", path.empty() ? "/" : path, flags);
    }
    if (!s.upgrade.empty()) [[unlikely]] {
      upgrade = true;
      *out++ = makeNv(":protocol", s.upgrade, flags);
    } else if (auto protocol = headers.get(WellKnownHeader::kProtocol)) {
      *out++ = makeNv(":protocol", *protocol, flags);
    }
  } else {
    int code = headers.status();
    // 1xx go through encode1xxHeaders; a missing or broken status is ours.
    // But 101: an HTTP/1.1 upstream accepted the Upgrade that an extended
    // CONNECT became (Http2ServerCodec::onHeaderBlock), and RFC 8441 5 has a
    // 2xx accept it (RFC 9113 8.6: no 101 in HTTP/2), as Envoy's
    // transformUpgradeResponseFromH1toH2 does; its connection and upgrade
    // fields stay out with the other connection-specific ones.
    std::string_view status = code >= 200 && code <= 999 ? *headers.get(WellKnownHeader::kStatus)
                              : code == 101              ? std::string_view("200")
                                                         : std::string_view("500");
    *out++ = makeNv(":status", status, flags);
    upgrade = code == 101;
  }
  nghttp2_nv* fields = out;
  out = appendFields(headers, request, out, lowered_, flags, request_ids_encoded_);
  if (upgrade) [[unlikely]]
    out = dropZeroContentLength(fields, out);
  size_t nvlen = static_cast<size_t>(out - nva.data());

  // A message's body usually reaches the codec only after its HEADERS were
  // flushed, so a data provider attached with them would first be called
  // with nothing to send (NGHTTP2_ERR_DEFERRED) and then resumed. HEADERS
  // without END_STREAM go alone instead, and the first body or trailers
  // attach the provider (submitBody): the same frames, without that round
  // trip through nghttp2 (about 360 instructions per proxied response, 630
  // per request with a body). A response's stream is open already; a
  // request's is opened by nghttp2 only when its HEADERS are serialized, so
  // it goes alone only when this call's flush surely does that (the no-copy
  // case above). Otherwise (a nested call, or the peer's stream limit
  // reached) the frame may wait in nghttp2's queue, where DATA cannot be
  // submitted for it yet, and the provider goes with it.
  s.body_due = !end_stream && (!request || flags != NGHTTP2_NV_FLAG_NONE);
  s.provider = !end_stream && !s.body_due;
  nghttp2_data_provider provider = dataProvider(s);
  const nghttp2_data_provider* prd = s.provider ? &provider : nullptr;
  if (request) {
    int32_t id = s.body_due ? nghttp2_submit_headers(session_, NGHTTP2_FLAG_NONE, -1, nullptr,
                                                     nva.data(), nvlen, &s)
                            : nghttp2_submit_request(session_, nullptr, nva.data(), nvlen, prd, &s);
    if (id < 0) {
      // Refused before anything was sent (GOAWAY received, ids exhausted):
      // safe to retry on another connection.
      s.closed = true;
      s.provider = false;
      s.body_due = false;
      notifyReset(s, ResetReason::kConnectionTermination, nghttp2_strerror(id));
      retire(s);
      return;
    }
    s.id = id;
    if (flags != NGHTTP2_NV_FLAG_NONE) requests_unsent_ = true;
    ++inbound_streams_;  // Streams scale the PRIORITY and WINDOW_UPDATE allowances.
  } else {
    int rv = s.body_due ? nghttp2_submit_headers(session_, NGHTTP2_FLAG_NONE, s.id, nullptr,
                                                 nva.data(), nvlen, nullptr)
                        : nghttp2_submit_response(session_, s.id, nva.data(), nvlen, nullptr);
    if (rv != 0) {
      s.body_due = false;
      s.provider = false;
      notifyReset(s, ResetReason::kLocalReset, nghttp2_strerror(rv));
      if (s.closed) retire(s);
    }
  }
}

nghttp2_data_provider Http2Codec::dataProvider(Http2Stream& s) {
  nghttp2_data_provider provider;
  provider.source.ptr = &s;
  provider.read_callback = &Http2Callbacks::onReadData;
  return provider;
}

void Http2Codec::submitBody(Http2Stream& s) {
  s.body_due = false;
  nghttp2_data_provider provider = dataProvider(s);
  // END_STREAM goes on the last DATA frame unless onReadData says trailers follow.
  int rv = nghttp2_submit_data(session_, NGHTTP2_FLAG_END_STREAM, s.id, &provider);
  if (rv != 0) {
    notifyReset(s, ResetReason::kLocalReset, nghttp2_strerror(rv));
    if (s.closed) retire(s);
    return;
  }
  s.provider = true;
}

void Http2Codec::Http2Stream::encodeHeaders(const HeaderMap& headers, bool end_stream) {
  // HEADERS wait for a flush later in this loop iteration (see
  // DeferredFlushScope and flushWaiting), so that one nghttp2_session_send
  // and one owner write carry the HEADERS of every stream that sent one in
  // a read (each was a flush of its own). Except a request with a body:
  // nghttp2 opens a request's stream when it serializes its HEADERS, and
  // only then can the body's data provider be attached (submitBody).
  DeferredFlushScope scope(codec_, codec_.server_ || end_stream);
  if (done || headers_sent || closed) return;
  headers_sent = true;
  if (end_stream) local_ended = true;
  codec_.submitHeaders(*this, headers, end_stream, !codec_.server_);
  if (end_stream) codec_.maybeDone(*this);
}

void Http2Codec::Http2Stream::encodeData(BufferChain& data, bool end_stream) {
  DeferredFlushScope scope(codec_);
  if (done || !headers_sent || local_ended || closed) {
    data.clear();
    return;
  }
  out.move(data);
  if (end_stream) local_ended = true;
  if (body_due) {
    codec_.submitBody(*this);
  } else if (provider && deferred) {
    deferred = false;
    nghttp2_session_resume_data(codec_.session_, id);
  }
  codec_.checkStreamWatermark(*this);
  codec_.maybeDone(*this);
}

void Http2Codec::Http2Stream::encodeTrailers(const HeaderMap& trailers) {
  CallScope scope(codec_);
  if (done || !headers_sent || local_ended || closed) return;
  for (const HeaderMap::Entry& e : trailers.entries()) {
    if (e.name.empty() || e.name[0] == ':' || isConnectionSpecific(e.name)) continue;
    // Copied: the trailers go out only once the body queued before them has
    // been framed, long after this map is gone.
    std::string name(e.name);
    for (char& c : name) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    out_trailers.emplace_back(std::move(name), std::string(e.value));
  }
  has_trailers = !out_trailers.empty();
  local_ended = true;
  if (body_due) {
    codec_.submitBody(*this);
  } else if (provider && deferred) {
    deferred = false;
    nghttp2_session_resume_data(codec_.session_, id);
  }
  codec_.maybeDone(*this);
}

void Http2Codec::Http2Stream::encode1xxHeaders(const HeaderMap& headers) {
  CallScope scope(codec_);
  if (!codec_.server_ || done || headers_sent || closed) return;
  int status = headers.status();
  if (status < 100 || status > 199 || status == 101) return;  // 101 is not HTTP/2 (RFC 9113 8.6).
  std::vector<nghttp2_nv> nva(headers.size() + 1);
  std::deque<std::string> lowered;
  nva[0] = makeNv(":status", *headers.get(WellKnownHeader::kStatus), NGHTTP2_NV_FLAG_NONE);
  nghttp2_nv* end = appendFields(headers, /*request=*/false, nva.data() + 1, lowered,
                                 NGHTTP2_NV_FLAG_NONE, codec_.request_ids_encoded_);
  nghttp2_submit_headers(codec_.session_, NGHTTP2_FLAG_NONE, id, nullptr, nva.data(),
                         static_cast<size_t>(end - nva.data()), nullptr);
}

void Http2Codec::Http2Stream::resetStream(ResetReason reason) {
  CallScope scope(codec_);
  // A request whose HEADERS still wait in nghttp2's queue would be dropped
  // with its RST_STREAM, and nghttp2 would never report its stream closed:
  // send the waiting requests first.
  if (codec_.requests_unsent_ && codec_.depth_ == 1) codec_.flush();
  if (done) return;
  if (id > 0 && !closed) {
    nghttp2_submit_rst_stream(codec_.session_, NGHTTP2_FLAG_NONE, id, resetCode(reason));
  } else if (id < 0) {
    closed = true;  // Never reached nghttp2.
  }
  codec_.notifyReset(*this, reason, "");
  if (closed) codec_.retire(*this);
}

void Http2Codec::Http2Stream::resetAfterResponse() {
  CallScope scope(codec_);
  if (done) return;
  if (id > 0 && !closed) {
    reset_after_end = true;
    ++codec_.resets_after_end_;
    if (!in.empty() && !in_end) codec_.requestGoesOnAfterEnd(*this);
  }
  // The rest of the request is nobody's: its bytes give the window back as
  // they come (onDataChunk), and what is held goes now.
  done = true;
  if (unconsumed > 0 && id > 0) nghttp2_session_consume(codec_.session_, id, unconsumed);
  unconsumed = 0;
  in.clear();
  in_trailers.reset();
  callbacks_ = nullptr;
  decoder_ = nullptr;
  if (closed) codec_.retire(*this);
}

void Http2Codec::requestGoesOnAfterEnd(Http2Stream& s) {
  s.request_went_on = true;
  // A reset before the response's END_STREAM has left would go ahead of its
  // unsent frames in nghttp2's queue and destroy them: it waits for it.
  if (nghttp2_session_get_stream_local_close(session_, s.id) == 1) resetAfterEnd(s);
}

void Http2Codec::resetAfterEnd(Http2Stream& s) {
  s.reset_after_end = false;
  --resets_after_end_;
  // A request that ended meanwhile closes the stream with our END_STREAM:
  // nothing may be sent on it after.
  if (nghttp2_session_get_stream_remote_close(session_, s.id) == 1) return;
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s.id, NGHTTP2_NO_ERROR);
}

void Http2Codec::Http2Stream::readDisable(bool disable) {
  if (disable) {
    ++read_disables;
    return;
  }
  if (read_disables == 0) return;
  if (--read_disables > 0 || done || remote_ended) return;
  if (!in.empty() || in_end || in_trailers) {
    // Delivered from the event loop, not from inside the caller.
    codec_.pending_delivery_ = true;
    if (!codec_.scheduled_) {
      codec_.scheduled_ = true;
      codec_.owner_.scheduleDispatch();
    }
  }
}

}  // namespace skiff::http
