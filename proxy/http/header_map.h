// An ordered list of header fields whose bytes usually stay where the codec
// read them. Entries are string_views: into slabs that the map pins, into the
// map's own arena (for bytes that had to be copied or were made up), or into
// static storage. Request pseudo-headers follow HTTP/2 on every protocol:
// :method, :scheme, :authority (HTTP/1 Host), :path; responses carry :status.
//
// Names compare case-insensitively. The names skiff itself reads on every
// request (the pseudo-headers, host, framing and hop-by-hop fields,
// x-forwarded-*, x-request-id, grpc-timeout, ...) are classified once, when a
// field is added, and the map keeps the position of the first field of each
// (Envoy's "inline headers" do the same): looking one up costs no scan. Other
// names are found by a linear scan: a request has a few dozen fields at most.
//
// A typical message fits the map's inline storage: 16 entries, two pinned
// slabs and 256 arena bytes, so building one costs one allocation (the map
// itself) instead of one per entry array, pin list and interned string.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/buffer/buffer.h"
#include "proxy/buffer/object_pool.h"
#include "proxy/http/header_name.h"

namespace skiff {

// ASCII case-insensitive comparison of n bytes (header names are tokens).
bool equalsIgnoreCaseSameSize(const char* a, const char* b, size_t n);
// Inline so that the common case, names of different lengths, costs a
// compare and no call (lookups and serialization compare every field).
inline bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && equalsIgnoreCaseSameSize(a.data(), b.data(), a.size());
}

// The names a map indexes. The enum values index HeaderMap's table.
enum class WellKnownHeader : uint8_t {
  kMethod,
  kScheme,
  kAuthority,
  kPath,
  kStatus,
  kProtocol,
  kHost,
  kContentLength,
  kContentType,
  kConnection,
  kTransferEncoding,
  kTe,
  kUpgrade,
  kKeepAlive,
  kProxyConnection,
  kExpect,
  kServer,
  kXRequestId,
  kXForwardedFor,
  kXForwardedProto,
  kGrpcTimeout,
  kGrpcStatus,
  kGrpcMessage,
  // Envoy's router headers (filters/router): well known so that setting one
  // finds an earlier one without a scan.
  kXEnvoyOriginalPath,
  kXEnvoyUpstreamServiceTime,
  kXEnvoyExpectedRqTimeoutMs,
  // Checked on every request (the HCM's forward_client_cert_details).
  kXForwardedClientCert,
  kCount,  // Not a well-known name.
};
constexpr size_t kWellKnownHeaders = static_cast<size_t>(WellKnownHeader::kCount);
// The lowercase names, in the enum's order.
inline constexpr std::string_view kWellKnownHeaderNames[kWellKnownHeaders] = {
    ":method",
    ":scheme",
    ":authority",
    ":path",
    ":status",
    ":protocol",
    "host",
    "content-length",
    "content-type",
    "connection",
    "transfer-encoding",
    "te",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "expect",
    "server",
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-proto",
    "grpc-timeout",
    "grpc-status",
    "grpc-message",
    "x-envoy-original-path",
    "x-envoy-upstream-service-time",
    "x-envoy-expected-rq-timeout-ms",
    "x-forwarded-client-cert",
};
// The lowercase name of a well-known header.
constexpr std::string_view wellKnownHeaderName(WellKnownHeader h) {
  return kWellKnownHeaderNames[static_cast<size_t>(h)];
}
// A well-known name as a pattern, for code that matches names itself.
template <WellKnownHeader H>
inline constexpr HeaderName kHeaderName{wellKnownHeaderName(H)};
// Which well-known name name is, ignoring case; kCount for any other.
WellKnownHeader classifyHeaderName(std::string_view name);
// Whether name is a connection-specific field, ignoring case: connection,
// keep-alive, proxy-connection, transfer-encoding, upgrade. They are
// hop-by-hop in HTTP/1.1 (RFC 9110 7.6.1) and never sent in HTTP/2 (RFC 9113
// 8.2.2). Every field of every message passes here, so the length picks the
// one or two names worth comparing.
inline bool isConnectionSpecific(std::string_view name) {
  switch (name.size()) {
    case 7:
      return kHeaderName<WellKnownHeader::kUpgrade>.matchesSameSize(name.data());
    case 10:
      return kHeaderName<WellKnownHeader::kConnection>.matchesSameSize(name.data()) ||
             kHeaderName<WellKnownHeader::kKeepAlive>.matchesSameSize(name.data());
    case 16:
      return kHeaderName<WellKnownHeader::kProxyConnection>.matchesSameSize(name.data());
    case 17:
      return kHeaderName<WellKnownHeader::kTransferEncoding>.matchesSameSize(name.data());
    default:
      return false;
  }
}

class HeaderMap;
// Envoy's test for a gRPC request: content-type is application/grpc, or
// starts with application/grpc+ or application/grpc; (application/grpc+proto).
bool isGrpcRequest(const HeaderMap& request);
// The gRPC status a client reports for an HTTP status other than 200 (gRPC's
// http-grpc-status-mapping; Envoy's Grpc::Utility::httpToGrpcStatus uses the
// same table for its local replies to gRPC requests).
int grpcStatusFromHttp(int http_status);
// What a request asks to become a tunnel as (Envoy's upgrade type): "CONNECT"
// for a CONNECT request; the Upgrade field's value when Connection names
// "upgrade" (an HTTP/1.1 Upgrade such as "websocket"); otherwise empty.
std::string_view upgradeType(const HeaderMap& request);
// Whether a comma-separated field value (Connection) lists token, ignoring
// case and optional whitespace.
bool listHasToken(std::string_view list, std::string_view token);

class HeaderMap {
 public:
  struct Entry {
    std::string_view name;
    std::string_view value;
  };

  // User-provided, and so not "= default": std::make_unique<HeaderMap>()
  // value-initializes, which for a defaulted constructor zeroes all 952
  // bytes of the map before constructing it (a rep stos of 119 words).
  HeaderMap() {}
  ~HeaderMap();
  HeaderMap(const HeaderMap&) = delete;
  HeaderMap& operator=(const HeaderMap&) = delete;

  // Every message makes one or two: they come from a per-worker free list,
  // sized for 64 HTTP/2 connections of 100 streams. A proxied request holds
  // two maps until it ends (its request's and its response's), so 6,400
  // requests in flight hold 12,800: a list of 8,192 sent 7,000 to 19,000 maps
  // per 64,000 requests to malloc and back (bench/probe.sh instr-h2). The
  // list keeps at most 16,384 (15 MiB), and only after a load that used them.
  static constexpr size_t kPooled = 16384;
  static void* operator new(size_t size) { return ObjectPool<HeaderMap, kPooled>::take(size); }
  static void operator delete(void* p, size_t size) {
    ObjectPool<HeaderMap, kPooled>::give(p, size);
  }

  // Keeps a slab alive for as long as the map, so views into it stay valid.
  void pin(const Slice& slice);
  // Adds a field whose bytes outlive the map (a pinned slab, a literal).
  void addView(std::string_view name, std::string_view value) {
    addView(classifyHeaderName(name), name, value);
  }
  // Adds a field by copying its bytes into the map's arena.
  void addCopy(std::string_view name, std::string_view value);
  // The same for a well-known name the caller knows at compile time (h is not
  // kCount): the field is called wellKnownHeaderName(h), and the name is not
  // classified again (a codec adds the pseudo-headers to every message).
  void addView(WellKnownHeader h, std::string_view value) {
    push(h, wellKnownHeaderName(h), value);
  }
  void addCopy(WellKnownHeader h, std::string_view value) {
    push(h, wellKnownHeaderName(h), intern(value));
  }
  // Adds a field whose name the caller has classified already
  // (classifyHeaderName(name) == h), keeping the name's spelling.
  void addView(WellKnownHeader h, std::string_view name, std::string_view value) {
    names_lowercase_ = false;
    push(h, name, value);
  }
  // Replaces every field called name with one field (copied), or adds it.
  void set(std::string_view name, std::string_view value) {
    replace(classifyHeaderName(name), name, false, intern(value));
  }
  void set(WellKnownHeader h, std::string_view value) {
    replace(h, wellKnownHeaderName(h), true, intern(value));
  }
  // The same for a value that outlives the map (a literal): not copied.
  void setView(WellKnownHeader h, std::string_view value) {
    replace(h, wellKnownHeaderName(h), true, value);
  }
  // Removes every field called name; returns how many were removed.
  size_t remove(std::string_view name);
  // Removes the field at index i (order kept).
  void removeAt(size_t i);

  // The first field called name, if any.
  std::optional<std::string_view> get(std::string_view name) const {
    WellKnownHeader h = classifyHeaderName(name);
    if (h != WellKnownHeader::kCount) return get(h);
    return scan(name);
  }
  std::optional<std::string_view> get(WellKnownHeader h) const {
    uint32_t at = first_[static_cast<size_t>(h)];
    if (at == 0) return std::nullopt;
    return entries_[at - 1].value;
  }
  bool has(std::string_view name) const { return get(name).has_value(); }
  bool has(WellKnownHeader h) const { return first_[static_cast<size_t>(h)] != 0; }
  // Stores bytes in the arena and returns a view of them. Views stay valid
  // for the life of the map.
  // The common case, bytes that fit in the inline arena, is inline: an HTTP/2
  // request and its response intern about 15 values, and the call cost about
  // as much as the work (bench/probe.sh instr-h2).
  std::string_view intern(std::string_view bytes) {
    if (bytes.empty()) return {};
    if (bytes.size() > kInlineArena - arena_used_) return internInBlock(bytes);
    char* to = arena_ + arena_used_;
    arena_used_ += static_cast<uint32_t>(bytes.size());
    std::memcpy(to, bytes.data(), bytes.size());
    return {to, bytes.size()};
  }

  // Whether every field name is known to be lowercase. A codec that checked
  // the names it decoded says so (the HTTP/2 codec: nghttp2 refuses or drops
  // any other name); adding a field under any spelling but a well-known
  // name's own (the WellKnownHeader overloads) clears it again. An HTTP/2
  // encoder then skips looking for uppercase letters in every name (about
  // 270 instructions per proxied h2c request).
  bool namesLowercase() const { return names_lowercase_; }
  void markNamesLowercase() { names_lowercase_ = true; }

  // Whether the request carries x-envoy-* fields that steer the router's
  // retries and timeouts, let through because the request is internal. Set
  // by the connection manager's sanitizing (edge_headers.h), which looks at
  // every x-envoy-* name already, so that the router looks for these fields
  // only when one is there.
  bool hasRouterOverrides() const { return router_overrides_; }
  void markRouterOverrides() { router_overrides_ = true; }

  std::span<const Entry> entries() const { return {entries_, size_}; }
  // Values may be changed in place; names may not (the map indexes them).
  std::span<Entry> mutableEntries() { return {entries_, size_}; }
  size_t size() const { return size_; }

  // Shorthands for the pseudo-headers.
  std::string_view method() const { return get(WellKnownHeader::kMethod).value_or(""); }
  std::string_view path() const { return get(WellKnownHeader::kPath).value_or(""); }
  std::string_view authority() const { return get(WellKnownHeader::kAuthority).value_or(""); }
  std::string_view scheme() const { return get(WellKnownHeader::kScheme).value_or(""); }
  int status() const;  // 0 when :status is missing or not a number.

 private:
  static constexpr uint32_t kInlineEntries = 16;
  static constexpr uint32_t kInlinePins = 2;
  static constexpr size_t kInlineArena = 256;
  // Arena bytes beyond the inline ones: a list of blocks, never moved, so
  // views into them stay valid.
  struct Block {
    Block* next;
    size_t size;
    size_t used;
    char* data() { return reinterpret_cast<char*>(this + 1); }
  };

  // Appends a field; name is classified (h) and its spelling is the
  // caller's business.
  void push(WellKnownHeader h, std::string_view name, std::string_view value) {
    if (size_ == capacity_) grow();
    entries_[size_] = {name, value};
    if (h != WellKnownHeader::kCount) noteWellKnown(h, size_);
    ++size_;
  }
  void grow();
  // intern() of bytes the inline arena has no room for.
  std::string_view internInBlock(std::string_view bytes);
  void noteWellKnown(WellKnownHeader h, uint32_t at) {
    uint32_t& first = first_[static_cast<size_t>(h)];
    if (first == 0) {
      first = at + 1;
    } else {
      duplicated_ |= 1u << static_cast<unsigned>(h);
    }
  }
  // set() once value is stored: name is copied too unless it is static.
  void replace(WellKnownHeader h, std::string_view name, bool static_name, std::string_view value);
  std::optional<std::string_view> scan(std::string_view name) const;
  // Rebuilds first_ and duplicated_ from the entries (after a removal that
  // moved indexed fields).
  void reindex();

  Entry* entries_ = inline_.entries;
  uint32_t size_ = 0;
  uint32_t capacity_ = kInlineEntries;
  uint32_t pin_count_ = 0;  // Of inline_pins_; the rest are in more_pins_.
  uint32_t arena_used_ = 0;
  Block* blocks_ = nullptr;
  // Per well-known name: 1 + the position of its first field, 0 if none.
  uint32_t first_[kWellKnownHeaders] = {};
  // Bit h: more than one field is called the well-known name h (then set and
  // remove take the general path).
  uint32_t duplicated_ = 0;
  static_assert(kWellKnownHeaders <= 32);
  bool names_lowercase_ = false;   // See namesLowercase().
  bool router_overrides_ = false;  // See hasRouterOverrides().
  std::vector<Slice> more_pins_;
  Slice inline_pins_[kInlinePins];
  // Entries are written before they are read (size_ counts them), so the
  // inline ones are left unset when a map is made: zeroing 512 bytes cost
  // about 60 instructions per map, two maps per proxied request.
  union InlineEntries {
    InlineEntries() {}
    Entry entries[kInlineEntries];
  } inline_;
  char arena_[kInlineArena];
};

using HeaderMapPtr = std::unique_ptr<HeaderMap>;

}  // namespace skiff
