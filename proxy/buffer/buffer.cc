#include "proxy/buffer/buffer.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

namespace skiff {

namespace {
// Copies up to this size never split over two slabs.
constexpr size_t kSmallCopy = 2048;
}  // namespace

SlabPool::~SlabPool() {
  if (current_ && --current_->refs == 0) {
    std::free(current_);
    --live_count_;
  }
  while (free_) {
    Slab* s = free_;
    free_ = s->next;
    std::free(s);
  }
}

Slab* SlabPool::acquire() {
  Slab* s = free_;
  if (s) {
    free_ = s->next;
    --free_count_;
  } else {
    s = static_cast<Slab*>(std::aligned_alloc(alignof(Slab), sizeof(Slab)));
    if (!s) throw std::bad_alloc();
    s->pool = this;
  }
  s->next = nullptr;
  s->refs = 1;
  s->fill = 0;
  ++live_count_;
  return s;
}

void SlabPool::release(Slab* slab) {
  --live_count_;
  if (free_count_ >= max_free_) {
    std::free(slab);
    return;
  }
  slab->next = free_;
  free_ = slab;
  ++free_count_;
}

std::span<char> SlabPool::tail(size_t min_free) {
  if (current_ && current_->refs == 1) {
    // Every slice over it is gone: start again at the front, where the cache
    // is warm.
    current_->fill = 0;
  } else if (current_ && Slab::kSize - current_->fill < min_free) {
    unref(current_);  // Slices still over it keep it alive; the pool lets go.
    current_ = nullptr;
  }
  if (!current_) current_ = acquire();
  return {current_->data + current_->fill, Slab::kSize - current_->fill};
}

void SlabPool::retireCurrent() {
  if (!current_) return;
  unref(current_);
  current_ = nullptr;
}

SlabPool& SlabPool::local() {
  thread_local SlabPool pool;
  return pool;
}

void BufferChain::append(Slice slice) {
  if (slice.size() == 0) return;
  length_ += slice.size();
  // Contiguous bytes of the same slab (successive reads) merge into one slice,
  // so a request that arrives in many small reads still writes as few iovecs.
  if (!slices_.empty()) {
    Slice& last = slices_.back();
    if (last.slab() == slice.slab() && last.end() == slice.begin()) {
      last.extendBack(slice.size());
      return;
    }
  }
  slices_.push_back(std::move(slice));
}

void BufferChain::move(BufferChain& other) {
  if (&other == this) return;
  if (slices_.empty()) {
    slices_.swap(other.slices_);
    length_ = other.length_;
  } else {
    for (Slice& s : other.slices_) append(std::move(s));
    other.slices_.clear();
  }
  other.length_ = 0;
}

void BufferChain::move(BufferChain& other, size_t n) {
  n = std::min(n, other.length_);
  if (n == other.length_) {
    move(other);
    return;
  }
  size_t taken = 0;
  size_t whole = 0;
  while (taken < n) {
    Slice& s = other.slices_[whole];
    size_t want = n - taken;
    if (s.size() <= want) {
      taken += s.size();
      append(std::move(s));
      ++whole;
    } else {
      // Split: the front goes here, the back stays; both share the slab.
      append(Slice(s.slab(), s.begin(), s.begin() + static_cast<uint32_t>(want)));
      s.dropFront(want);
      taken += want;
    }
  }
  other.slices_.erase(other.slices_.begin(), other.slices_.begin() + whole);
  other.length_ -= n;
}

void BufferChain::appendCopy(std::string_view bytes) {
  SlabPool& pool = SlabPool::local();
  while (!bytes.empty()) {
    // A small copy goes in one piece (a fresh slab if the tail is shorter),
    // so that it stays one iovec; a large one fills tails as they come.
    std::span<char> tail = pool.tail(std::min<size_t>(bytes.size(), kSmallCopy));
    size_t n = std::min(bytes.size(), tail.size());
    std::memcpy(tail.data(), bytes.data(), n);
    append(pool.commitTail(n));
    bytes.remove_prefix(n);
  }
}

void BufferChain::drain(size_t n) {
  n = std::min(n, length_);
  length_ -= n;
  size_t whole = 0;
  while (n > 0) {
    Slice& s = slices_[whole];
    if (s.size() <= n) {
      n -= s.size();
      ++whole;
    } else {
      s.dropFront(n);
      n = 0;
    }
  }
  slices_.erase(slices_.begin(), slices_.begin() + whole);
}

void BufferChain::clear() {
  slices_.clear();
  length_ = 0;
}

size_t BufferChain::iovecs(struct iovec* out, size_t max) const {
  size_t n = std::min(max, slices_.size());
  for (size_t i = 0; i < n; ++i) {
    out[i].iov_base = const_cast<char*>(slices_[i].data());
    out[i].iov_len = slices_[i].size();
  }
  return n;
}

std::string BufferChain::toString() const { return toString(length_); }

std::string BufferChain::toString(size_t n) const {
  std::string out;
  out.reserve(std::min(n, length_));
  for (const Slice& s : slices_) {
    if (out.size() >= n) break;
    out.append(s.data(), std::min(s.size(), n - out.size()));
  }
  return out;
}

bool BufferChain::startsWith(std::string_view prefix) const {
  if (prefix.size() > length_) return false;
  for (const Slice& s : slices_) {
    size_t k = std::min(s.size(), prefix.size());
    if (std::memcmp(s.data(), prefix.data(), k) != 0) return false;
    prefix.remove_prefix(k);
    if (prefix.empty()) return true;
  }
  return prefix.empty();
}

Slice SlabPool::commitTail(size_t n) {
  uint32_t begin = current_->fill;
  current_->fill += static_cast<uint32_t>(n);
  return Slice(current_, begin, current_->fill);
}

void ReadBuffer::commit(size_t n, BufferChain& out) {
  if (n == 0) return;
  out.append(SlabPool::local().commitTail(n));
}

}  // namespace skiff
