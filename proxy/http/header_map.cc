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
  auto ct = request.get("content-type");
  if (!ct) return false;
  constexpr std::string_view kGrpc = "application/grpc";
  if (ct->size() < kGrpc.size() || !equalsIgnoreCase(ct->substr(0, kGrpc.size()), kGrpc)) {
    return false;
  }
  return ct->size() == kGrpc.size() || (*ct)[kGrpc.size()] == '+' || (*ct)[kGrpc.size()] == ';';
}

std::string_view upgradeType(const HeaderMap& request) {
  if (request.method() == "CONNECT") return "CONNECT";
  // Almost no request has an Upgrade field: that one scan is all they pay.
  auto upgrade = request.get("upgrade");
  if (!upgrade || upgrade->empty()) return {};
  auto connection = request.get("connection");
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
  if (entries_ != inline_entries_) delete[] entries_;
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
  if (entries_ != inline_entries_) delete[] entries_;
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

std::string_view HeaderMap::intern(std::string_view bytes) {
  if (bytes.empty()) return {};
  char* to;
  if (bytes.size() <= kInlineArena - arena_used_) {
    to = arena_ + arena_used_;
    arena_used_ += static_cast<uint32_t>(bytes.size());
  } else if (blocks_ && bytes.size() <= blocks_->size - blocks_->used) {
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

void HeaderMap::set(std::string_view name, std::string_view value) {
  std::string_view v = intern(value);
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
  size_ = out;
  if (!found) addView(intern(name), v);
}

size_t HeaderMap::remove(std::string_view name) {
  uint32_t out = 0;
  for (uint32_t i = 0; i < size_; ++i) {
    if (!equalsIgnoreCase(entries_[i].name, name)) entries_[out++] = entries_[i];
  }
  size_t removed = size_ - out;
  size_ = out;
  return removed;
}

void HeaderMap::removeAt(size_t i) {
  std::copy(entries_ + i + 1, entries_ + size_, entries_ + i);
  --size_;
}

std::optional<std::string_view> HeaderMap::get(std::string_view name) const {
  for (const Entry& e : entries()) {
    if (equalsIgnoreCase(e.name, name)) return e.value;
  }
  return std::nullopt;
}

int HeaderMap::status() const {
  auto s = get(":status");
  if (!s) return 0;
  int code = 0;
  auto [p, ec] = std::from_chars(s->data(), s->data() + s->size(), code);
  if (ec != std::errc() || p != s->data() + s->size()) return 0;
  return code;
}

}  // namespace skiff
