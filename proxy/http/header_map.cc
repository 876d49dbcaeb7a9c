#include "proxy/http/header_map.h"

#include <algorithm>
#include <charconv>
#include <cstring>

namespace skiff {

bool equalsIgnoreCaseSameSize(const char* a, const char* b, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    unsigned char x = static_cast<unsigned char>(a[i]);
    unsigned char y = static_cast<unsigned char>(b[i]);
    if (x == y) continue;
    if ((x | 0x20) != (y | 0x20) || (x | 0x20) < 'a' || (x | 0x20) > 'z') return false;
  }
  return true;
}

namespace {

// Classifying a name costs a switch on its size and a few word compares
// (HeaderName), so that lookups of these names need no scan.
template <WellKnownHeader H>
inline bool is(const char* name) {
  return kHeaderName<H>.matchesSameSize(name);
}

}  // namespace

WellKnownHeader classifyHeaderName(std::string_view name) {
  using H = WellKnownHeader;
  const char* n = name.data();
  switch (name.size()) {
    case 2:
      if (is<H::kTe>(n)) return H::kTe;
      break;
    case 4:
      if (is<H::kHost>(n)) return H::kHost;
      break;
    case 5:
      if (is<H::kPath>(n)) return H::kPath;
      break;
    case 6:
      if (is<H::kServer>(n)) return H::kServer;
      if (is<H::kExpect>(n)) return H::kExpect;
      break;
    case 7:
      if (n[0] == ':') {
        if (is<H::kMethod>(n)) return H::kMethod;
        if (is<H::kStatus>(n)) return H::kStatus;
        if (is<H::kScheme>(n)) return H::kScheme;
      } else if (is<H::kUpgrade>(n)) {
        return H::kUpgrade;
      }
      break;
    case 9:
      if (is<H::kProtocol>(n)) return H::kProtocol;
      break;
    case 10:
      if (is<H::kAuthority>(n)) return H::kAuthority;
      if (is<H::kConnection>(n)) return H::kConnection;
      if (is<H::kKeepAlive>(n)) return H::kKeepAlive;
      break;
    case 11:
      if (is<H::kGrpcStatus>(n)) return H::kGrpcStatus;
      break;
    case 12:
      if (is<H::kContentType>(n)) return H::kContentType;
      if (is<H::kXRequestId>(n)) return H::kXRequestId;
      if (is<H::kGrpcTimeout>(n)) return H::kGrpcTimeout;
      if (is<H::kGrpcMessage>(n)) return H::kGrpcMessage;
      break;
    case 14:
      if (is<H::kContentLength>(n)) return H::kContentLength;
      break;
    case 15:
      if (is<H::kXForwardedFor>(n)) return H::kXForwardedFor;
      break;
    case 16:
      if (is<H::kProxyConnection>(n)) return H::kProxyConnection;
      break;
    case 17:
      if (is<H::kTransferEncoding>(n)) return H::kTransferEncoding;
      if (is<H::kXForwardedProto>(n)) return H::kXForwardedProto;
      break;
    case 21:
      if (is<H::kXEnvoyOriginalPath>(n)) return H::kXEnvoyOriginalPath;
      break;
    case 23:
      if (is<H::kXForwardedClientCert>(n)) return H::kXForwardedClientCert;
      break;
    // Past HeaderName's 24 bytes: a byte loop, for the rare names this long.
    case 29:
      if (equalsIgnoreCaseSameSize(n, wellKnownHeaderName(H::kXEnvoyUpstreamServiceTime).data(),
                                   29)) {
        return H::kXEnvoyUpstreamServiceTime;
      }
      break;
    case 30:
      if (equalsIgnoreCaseSameSize(n, wellKnownHeaderName(H::kXEnvoyExpectedRqTimeoutMs).data(),
                                   30)) {
        return H::kXEnvoyExpectedRqTimeoutMs;
      }
      break;
    default:
      break;
  }
  return H::kCount;
}

int grpcStatusFromHttp(int http_status) {
  switch (http_status) {
    case 400:
      return 13;  // INTERNAL
    case 401:
      return 16;  // UNAUTHENTICATED
    case 403:
      return 7;  // PERMISSION_DENIED
    case 404:
      return 12;  // UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504:
      return 14;  // UNAVAILABLE
    default:
      return 2;  // UNKNOWN
  }
}

bool isGrpcRequest(const HeaderMap& request) {
  auto ct = request.get(WellKnownHeader::kContentType);
  if (!ct) return false;
  constexpr std::string_view kGrpc = "application/grpc";
  if (ct->size() < kGrpc.size() || !equalsIgnoreCase(ct->substr(0, kGrpc.size()), kGrpc)) {
    return false;
  }
  return ct->size() == kGrpc.size() || (*ct)[kGrpc.size()] == '+' || (*ct)[kGrpc.size()] == ';';
}

std::string_view upgradeType(const HeaderMap& request) {
  if (request.method() == "CONNECT") return "CONNECT";
  auto upgrade = request.get(WellKnownHeader::kUpgrade);
  if (!upgrade || upgrade->empty()) return {};
  auto connection = request.get(WellKnownHeader::kConnection);
  if (!connection || !listHasToken(*connection, "upgrade")) return {};
  return *upgrade;
}

bool listHasToken(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (equalsIgnoreCase(item, token)) return true;
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
  }
  return false;
}

HeaderMap::~HeaderMap() {
  if (entries_ != inline_.entries) delete[] entries_;
  while (blocks_) {
    Block* b = blocks_;
    blocks_ = b->next;
    ::operator delete(b);
  }
}

void HeaderMap::grow() {
  uint32_t capacity = capacity_ * 2;
  auto* bigger = new Entry[capacity];
  std::copy(entries_, entries_ + size_, bigger);
  if (entries_ != inline_.entries) delete[] entries_;
  entries_ = bigger;
  capacity_ = capacity;
}

void HeaderMap::pin(const Slice& slice) {
  if (pin_count_ < kInlinePins) {
    inline_pins_[pin_count_++] = slice;
  } else {
    more_pins_.push_back(slice);
  }
}

std::string_view HeaderMap::internInBlock(std::string_view bytes) {
  char* to;
  if (blocks_ && bytes.size() <= blocks_->size - blocks_->used) {
    to = blocks_->data() + blocks_->used;
    blocks_->used += bytes.size();
  } else {
    size_t size = std::max<size_t>(bytes.size(), 1024);
    auto* b = static_cast<Block*>(::operator new(sizeof(Block) + size));
    *b = Block{blocks_, size, bytes.size()};
    blocks_ = b;
    to = b->data();
  }
  std::memcpy(to, bytes.data(), bytes.size());
  return {to, bytes.size()};
}

void HeaderMap::addCopy(std::string_view name, std::string_view value) {
  addView(intern(name), intern(value));
}

void HeaderMap::replace(WellKnownHeader h, std::string_view name, bool static_name,
                        std::string_view v) {
  if (h != WellKnownHeader::kCount && (duplicated_ & (1u << static_cast<unsigned>(h))) == 0) {
    // At most one field has this name, and the index says where.
    uint32_t at = first_[static_cast<size_t>(h)];
    if (at != 0) {
      entries_[at - 1].value = v;
    } else if (static_name) {
      push(h, name, v);
    } else {
      addView(h, intern(name), v);
    }
    return;
  }
  bool found = false;
  uint32_t out = 0;
  for (uint32_t i = 0; i < size_; ++i) {
    if (equalsIgnoreCase(entries_[i].name, name)) {
      if (found) continue;  // A later duplicate goes.
      found = true;
      entries_[i].value = v;
    }
    entries_[out++] = entries_[i];
  }
  bool removed = out != size_;
  size_ = out;
  if (removed) reindex();
  if (!found) {
    if (static_name) {
      push(h, name, v);
    } else {
      addView(h, intern(name), v);
    }
  }
}

size_t HeaderMap::remove(std::string_view name) {
  WellKnownHeader h = classifyHeaderName(name);
  if (h != WellKnownHeader::kCount && (duplicated_ & (1u << static_cast<unsigned>(h))) == 0) {
    uint32_t at = first_[static_cast<size_t>(h)];
    if (at == 0) return 0;
    removeAt(at - 1);
    return 1;
  }
  uint32_t out = 0;
  for (uint32_t i = 0; i < size_; ++i) {
    if (!equalsIgnoreCase(entries_[i].name, name)) entries_[out++] = entries_[i];
  }
  size_t removed = size_ - out;
  size_ = out;
  if (removed != 0) reindex();
  return removed;
}

void HeaderMap::removeAt(size_t i) {
  WellKnownHeader h = classifyHeaderName(entries_[i].name);
  std::copy(entries_ + i + 1, entries_ + size_, entries_ + i);
  --size_;
  if (h != WellKnownHeader::kCount && (duplicated_ & (1u << static_cast<unsigned>(h))) != 0) {
    reindex();  // Another field of that name may now be the first.
    return;
  }
  // The fields after i moved up one place.
  const auto removed = static_cast<uint32_t>(i + 1);
  for (uint32_t& first : first_) {
    if (first > removed) {
      --first;
    } else if (first == removed) {
      first = 0;
    }
  }
}

void HeaderMap::reindex() {
  std::fill(std::begin(first_), std::end(first_), 0);
  duplicated_ = 0;
  for (uint32_t i = 0; i < size_; ++i) {
    WellKnownHeader h = classifyHeaderName(entries_[i].name);
    if (h != WellKnownHeader::kCount) noteWellKnown(h, i);
  }
}

std::optional<std::string_view> HeaderMap::scan(std::string_view name) const {
  for (const Entry& e : entries()) {
    if (equalsIgnoreCase(e.name, name)) return e.value;
  }
  return std::nullopt;
}

int HeaderMap::status() const {
  auto s = get(WellKnownHeader::kStatus);
  if (!s) return 0;
  // Nearly every status is three digits: read them without from_chars.
  if (s->size() == 3) {
    unsigned a = static_cast<unsigned char>((*s)[0]) - '0';
    unsigned b = static_cast<unsigned char>((*s)[1]) - '0';
    unsigned c = static_cast<unsigned char>((*s)[2]) - '0';
    if (a <= 9 && b <= 9 && c <= 9) return static_cast<int>(a * 100 + b * 10 + c);
  }
  int code = 0;
  auto [p, ec] = std::from_chars(s->data(), s->data() + s->size(), code);
  if (ec != std::errc() || p != s->data() + s->size()) return 0;
  return code;
}

}  // namespace skiff
