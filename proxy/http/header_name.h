// HeaderName: a lowercase header name (2 to 24 bytes) prepared at compile
// time, so that telling whether a name read off the wire is that name,
// ignoring case, costs two or three word compares instead of a call and a
// byte loop. HeaderMap classifies every field it is given with these
// (classifyHeaderName), and the HTTP/1 codec finds the few names it handles
// itself with them; both build their patterns from this one class.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace skiff {

class HeaderName {
 public:
  // How a name is cut into words: 2-byte words for 2 or 3 bytes, 4-byte words
  // for 4 to 7, 8-byte words from 8 on. The first word starts at 0 and the
  // last ends at the name's end (overlapping the one before when the size is
  // not a multiple of the width); from 17 bytes a middle word at 8 covers
  // the rest. Each word is compared with 0x20 or'ed into the bytes where the
  // name has a letter (only 'A'..'Z' and 'a'..'z' then equal a lowercase
  // letter), every other byte exactly: '\r' is not '-', nor '@' '`'.
  consteval explicit HeaderName(std::string_view lower) : size_(lower.size()) {
    if (size_ < 2 || size_ > 24) throw "HeaderName: 2 to 24 bytes";
    const size_t width = size_ < 4 ? 2 : (size_ < 8 ? 4 : 8);
    set(0, lower, 0, width);
    set(1, lower, size_ > 16 ? 8 : size_ - width, width);
    set(2, lower, size_ - width, width);
  }

  size_t size() const { return size_; }
  bool matches(std::string_view name) const {
    return name.size() == size_ && matchesSameSize(name.data());
  }
  // Whether the size() bytes at p are this name in any case. Every branch
  // on size_ folds away when the HeaderName is a constant.
  bool matchesSameSize(const char* p) const {
    if (size_ < 4) return word<uint16_t>(p, 0, 0) & word<uint16_t>(p, size_ - 2, 2);
    if (size_ < 8) return word<uint32_t>(p, 0, 0) & word<uint32_t>(p, size_ - 4, 2);
    if (size_ <= 16) return word<uint64_t>(p, 0, 0) & word<uint64_t>(p, size_ - 8, 2);
    return word<uint64_t>(p, 0, 0) & word<uint64_t>(p, 8, 1) & word<uint64_t>(p, size_ - 8, 2);
  }

 private:
  // Whether the word at p + offset equals word i.
  template <typename T>
  bool word(const char* p, size_t offset, int i) const {
    T v;
    std::memcpy(&v, p + offset, sizeof(v));
    return (v | static_cast<T>(mask_[i])) == static_cast<T>(word_[i]);
  }
  // word_[i] / mask_[i]: the n bytes of lower at offset off as a load reads them.
  consteval void set(int i, std::string_view lower, size_t off, size_t n) {
    uint64_t word = 0;
    uint64_t mask = 0;
    for (size_t k = 0; k < n; ++k) {
      char c = lower[off + k];
      if (c >= 'A' && c <= 'Z') throw "HeaderName: lowercase only";
      size_t shift = std::endian::native == std::endian::little ? 8 * k : 8 * (n - 1 - k);
      word |= uint64_t{static_cast<unsigned char>(c)} << shift;
      if (c >= 'a' && c <= 'z') mask |= uint64_t{0x20} << shift;
    }
    word_[i] = word;
    mask_[i] = mask;
  }

  size_t size_;
  uint64_t word_[3] = {};
  uint64_t mask_[3] = {};
};

}  // namespace skiff
