#include "proxy/http/header_map.h"

#include <charconv>

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

bool isGrpcRequest(const HeaderMap& request) {
  auto ct = request.get("content-type");
  if (!ct) return false;
  constexpr std::string_view kGrpc = "application/grpc";
  if (ct->size() < kGrpc.size() || !equalsIgnoreCase(ct->substr(0, kGrpc.size()), kGrpc)) {
    return false;
  }
  return ct->size() == kGrpc.size() || (*ct)[kGrpc.size()] == '+' || (*ct)[kGrpc.size()] == ';';
}

std::string_view HeaderMap::intern(std::string_view bytes) { return arena_.emplace_front(bytes); }

void HeaderMap::addCopy(std::string_view name, std::string_view value) {
  entries_.push_back({intern(name), intern(value)});
}

void HeaderMap::set(std::string_view name, std::string_view value) {
  std::string_view v = intern(value);
  bool found = false;
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (equalsIgnoreCase(it->name, name)) {
      if (!found) {
        it->value = v;
        found = true;
        ++it;
      } else {
        it = entries_.erase(it);
      }
    } else {
      ++it;
    }
  }
  if (!found) entries_.push_back({intern(name), v});
}

size_t HeaderMap::remove(std::string_view name) {
  size_t before = entries_.size();
  std::erase_if(entries_, [&](const Entry& e) { return equalsIgnoreCase(e.name, name); });
  return before - entries_.size();
}

std::optional<std::string_view> HeaderMap::get(std::string_view name) const {
  for (const Entry& e : entries_) {
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
