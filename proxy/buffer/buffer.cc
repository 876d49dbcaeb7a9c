#include "proxy/buffer/buffer.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "proxy/buffer/object_pool.h"

namespace skiff {

namespace {
// Copies up to this size never split over two slabs.
constexpr size_t kSmallCopy = 2048;

// The first heap array of a chain (4 slices): a response's head and body
// waiting in a write queue make one per request, so they come from a
// per-worker free list. Larger arrays come from the allocator.
constexpr uint32_t kFirstHeapSlices = 4;
struct FirstSliceArray {
  alignas(Slice) unsigned char bytes[kFirstHeapSlices * sizeof(Slice)];
};
using FirstArrayPool = ObjectPool<FirstSliceArray, 256>;

Slice* allocateSlices(uint32_t n) {
  if (n == kFirstHeapSlices)
    return static_cast<Slice*>(FirstArrayPool::take(sizeof(FirstSliceArray)));
  return static_cast<Slice*>(::operator new(n * sizeof(Slice)));
}

void freeSlices(Slice* p, uint32_t n) {
  if (n == kFirstHeapSlices) {
    FirstArrayPool::give(p, sizeof(FirstSliceArray));
    return;
  }
  ::operator delete(p);
}
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

void BufferChain::grow() {
  uint32_t bigger = heap_cap_ ? heap_cap_ * 2 : kFirstHeapSlices;
  Slice* to = allocateSlices(bigger);
  Slice* from = data();
  for (uint32_t i = 0; i < size_; ++i) {
    new (&to[i]) Slice(std::move(from[i]));
    from[i].~Slice();
  }
  if (heap_cap_) freeSlices(heap_, heap_cap_);
  heap_ = to;
  heap_cap_ = bigger;
}

// Inlined into append(); the rare move to a bigger array is grow().
inline void BufferChain::pushBack(Slice&& slice) {
  if (size_ == (heap_cap_ ? heap_cap_ : 1)) grow();
  new (&data()[size_++]) Slice(std::move(slice));
}

void BufferChain::eraseFront(size_t n) {
  if (n == 0) return;
  Slice* d = data();
  for (size_t i = 0; i < n; ++i) d[i].~Slice();
  // Slot i - n was destroyed above or moved from (and destroyed) earlier.
  for (size_t i = n; i < size_; ++i) {
    new (&d[i - n]) Slice(std::move(d[i]));
    d[i].~Slice();
  }
  size_ -= static_cast<uint32_t>(n);
  if (size_ == 0) freeHeap();
}

void BufferChain::freeHeapArray() {
  freeSlices(heap_, heap_cap_);
  heap_cap_ = 0;
}

void BufferChain::append(Slice slice) {
  if (slice.size() == 0) return;
  length_ += slice.size();
  // Contiguous bytes of the same slab (successive reads) merge into one slice,
  // so a request that arrives in many small reads still writes as few iovecs.
  if (size_ > 0) {
    Slice& last = data()[size_ - 1];
    if (last.slab() == slice.slab() && last.end() == slice.begin()) {
      last.extendBack(slice.size());
      return;
    }
  }
  pushBack(std::move(slice));
}

void BufferChain::moveToEnd(BufferChain& other) {
  if (&other == this) return;
  if (size_ == 0) {
    freeHeap();
    take(other);
    return;
  }
  Slice* from = other.data();
  for (uint32_t i = 0; i < other.size_; ++i) append(std::move(from[i]));
  other.clear();
}

void BufferChain::move(BufferChain& other, size_t n) {
  n = std::min(n, other.length_);
  if (n == other.length_) {
    move(other);
    return;
  }
  size_t taken = 0;
  size_t whole = 0;
  Slice* from = other.data();
  while (taken < n) {
    Slice& s = from[whole];
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
  other.eraseFront(whole);
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

void BufferChain::drainFront(size_t n) {
  length_ -= n;
  size_t whole = 0;
  Slice* d = data();
  while (n > 0) {
    Slice& s = d[whole];
    if (s.size() <= n) {
      n -= s.size();
      ++whole;
    } else {
      s.dropFront(n);
      n = 0;
    }
  }
  if (whole > 0) eraseFront(whole);
}

void BufferChain::clearSlices() {
  Slice* d = data();
  for (uint32_t i = 0; i < size_; ++i) d[i].~Slice();
  size_ = 0;
  length_ = 0;
  freeHeap();
}

size_t BufferChain::iovecs(struct iovec* out, size_t max) const {
  size_t n = std::min<size_t>(max, size_);
  const Slice* d = data();
  for (size_t i = 0; i < n; ++i) {
    out[i].iov_base = const_cast<char*>(d[i].data());
    out[i].iov_len = d[i].size();
  }
  return n;
}

std::string BufferChain::toString() const { return toString(length_); }

std::string BufferChain::toString(size_t n) const {
  std::string out;
  out.reserve(std::min(n, length_));
  for (const Slice& s : slices()) {
    if (out.size() >= n) break;
    out.append(s.data(), std::min(s.size(), n - out.size()));
  }
  return out;
}

bool BufferChain::startsWith(std::string_view prefix) const {
  if (prefix.size() > length_) return false;
  for (const Slice& s : slices()) {
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
