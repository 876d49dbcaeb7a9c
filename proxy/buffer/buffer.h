// Zero-copy byte buffers: slabs from a per-worker pool, slices over slabs, and
// chains of slices (DESIGN.md, "Zero-copy bytes").
//
//   Slab (16 KiB, refcounted, owned by one worker's SlabPool)
//   +---------------------------+-----------------------+------------------+
//   | bytes already handed out  | bytes being filled    | free tail        |
//   +---------------------------+-----------------------+------------------+
//   0                      Slice{begin,end}         fill_              kSize
//
// A Slice holds one reference on its slab and names a byte range in it. A
// BufferChain is an ordered list of slices. Moving bytes between chains moves
// slices (and may split one, which shares the slab): no byte is copied. The only
// copying entry point is BufferChain::appendCopy(), and each caller names why.
//
// Every socket read and every copy on a worker goes to the free tail of one
// shared slab, the pool's current slab, whichever connection it is for. So a
// connection holds no slab of its own: an idle one holds none at all, and the
// bytes that a loop iteration reads and writes for many connections (a
// request head here, a response head there) share a few slabs instead of
// taking one each. When nobody but the pool refers to the current slab any
// more, its tail starts again at 0.
//
// Nothing here is thread-safe: a slab lives and dies on the worker that made it.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace skiff {

class SlabPool;

struct Slab {
  static constexpr uint32_t kSize = 16384;

  SlabPool* pool;  // Where the slab returns when its last reference goes.
  Slab* next;      // Free-list link while the slab sits in the pool.
  uint32_t refs;   // Slices (and readers) that point into data.
  uint32_t fill;   // Bytes [0, fill) have been written; [fill, kSize) is free.
  alignas(64) char data[kSize];
};

class Slice;

// A per-worker free list of slabs, and the shared slab whose tail reads and
// copies fill. Keeps up to max_free slabs for reuse and returns the rest to
// the allocator, so an idle proxy gives its memory back.
class SlabPool {
 public:
  explicit SlabPool(size_t max_free = 64) : max_free_(max_free) {}
  ~SlabPool();
  SlabPool(const SlabPool&) = delete;
  SlabPool& operator=(const SlabPool&) = delete;

  // Returns a slab with refs == 1 and fill == 0.
  Slab* acquire();
  void unref(Slab* slab) {
    if (--slab->refs == 0) release(slab);
  }
  static void ref(Slab* slab) { ++slab->refs; }

  // The free tail of the current slab, at least min_free (<= Slab::kSize)
  // bytes: a fresh slab when the current one has less room left. Nothing may
  // take another tail between this call and commitTail().
  std::span<char> tail(size_t min_free);
  // Records that the first n bytes of the tail were written, and returns a
  // slice over them.
  Slice commitTail(size_t n);
  // The next tail() starts a fresh slab (tests use it to split bytes over
  // slabs, as reads far apart in time would be).
  void retireCurrent();

  size_t freeCount() const { return free_count_; }
  // Slabs handed out and not yet back (the current slab included).
  size_t liveCount() const { return live_count_; }
  // The slab tail() fills now (nullptr before the first tail()).
  const Slab* current() const { return current_; }

  // The pool of the calling thread's worker (one per thread, made on first use).
  static SlabPool& local();

 private:
  void release(Slab* slab);

  Slab* free_ = nullptr;
  size_t free_count_ = 0;
  size_t live_count_ = 0;
  size_t max_free_;
  Slab* current_ = nullptr;  // The pool holds one reference on it.
};

// A counted reference to bytes [begin, end) of a slab.
class Slice {
 public:
  Slice() = default;
  Slice(Slab* slab, uint32_t begin, uint32_t end) : slab_(slab), begin_(begin), end_(end) {
    SlabPool::ref(slab_);
  }
  Slice(const Slice& o) : slab_(o.slab_), begin_(o.begin_), end_(o.end_) {
    if (slab_) SlabPool::ref(slab_);
  }
  Slice(Slice&& o) noexcept : slab_(o.slab_), begin_(o.begin_), end_(o.end_) {
    o.slab_ = nullptr;
    o.begin_ = o.end_ = 0;
  }
  Slice& operator=(Slice o) noexcept {
    std::swap(slab_, o.slab_);
    std::swap(begin_, o.begin_);
    std::swap(end_, o.end_);
    return *this;
  }
  ~Slice() {
    if (slab_) slab_->pool->unref(slab_);
  }

  const char* data() const { return slab_->data + begin_; }
  char* mutableData() { return slab_->data + begin_; }
  size_t size() const { return end_ - begin_; }
  std::string_view view() const { return {data(), size()}; }
  Slab* slab() const { return slab_; }
  uint32_t begin() const { return begin_; }
  uint32_t end() const { return end_; }

  void dropFront(size_t n) { begin_ += static_cast<uint32_t>(n); }
  void dropBack(size_t n) { end_ -= static_cast<uint32_t>(n); }
  void extendBack(size_t n) { end_ += static_cast<uint32_t>(n); }

 private:
  Slab* slab_ = nullptr;
  uint32_t begin_ = 0;
  uint32_t end_ = 0;
};

// An ordered list of slices. The first slice lives inside the chain itself
// and more go to a heap array, which is given back when the chain empties:
// the chains a connection keeps (its input, its write queue) cost nothing
// beyond their 32 bytes while it is idle, and a one-slice message (most
// small requests and bodies) never allocates.
class BufferChain {
 public:
  BufferChain() {}
  ~BufferChain() { clear(); }
  BufferChain(BufferChain&& other) noexcept { take(other); }
  BufferChain& operator=(BufferChain&& other) noexcept {
    if (this != &other) {
      clear();
      take(other);
    }
    return *this;
  }
  BufferChain(const BufferChain&) = delete;
  BufferChain& operator=(const BufferChain&) = delete;

  size_t length() const { return length_; }
  bool empty() const { return length_ == 0; }
  std::span<const Slice> slices() const { return {data(), size_}; }

  // Appends a slice (shares its slab; no copy).
  void append(Slice slice);
  // Moves every byte of other to the end of this chain; other is left empty.
  // Inline when this chain is empty, which is most calls (a write queue that
  // was flushed, a body handed on whole): the slices change hands as they
  // are (bench/probe.sh instr: five of the six moves of a proxied request).
  void move(BufferChain& other) {
    if (size_ == 0 && heap_cap_ == 0) [[likely]] {
      take(other);  // Also right for &other == this: both are empty.
      return;
    }
    moveToEnd(other);
  }
  // Moves the first n bytes of other to the end of this chain. A slice that
  // straddles n is split; both halves share the slab.
  void move(BufferChain& other, size_t n);
  // Copies bytes into slabs from the calling worker's pool. This is the one
  // copying entry point: callers say in a comment why the copy is needed.
  void appendCopy(std::string_view bytes);

  // Removes the first n bytes. Draining everything (a write queue the
  // kernel took whole, input the parser consumed) is clear(): no slice is
  // moved to the front (bench/probe.sh instr: 4 drains per proxied request).
  void drain(size_t n) {
    if (n >= length_) {
      clear();
      return;
    }
    drainFront(n);
  }
  // Inline for the empty chain, which is most calls (a chain's destructor,
  // chains whose slices moved on): about 13 per proxied request, which each
  // cost a call (bench/probe.sh instr: 14,129 -> 13,971 per proxied request).
  // Inline too for one slice in the inline slot (a head that was sent, a
  // read the parser consumed: four per proxied request; 12,380 -> 12,330).
  void clear() {
    if (heap_cap_ == 0) {
      if (size_ != 0) {  // At most one slice fits inline.
        data()->~Slice();
        size_ = 0;
      }
    } else {
      clearSlices();
    }
    length_ = 0;
  }

  // Fills out with iovecs for up to max slices starting at the front; returns
  // how many were filled. For sendmsg (TcpConnection::trySend).
  size_t iovecs(struct iovec* out, size_t max) const;

  // The first n bytes as one string. Copies: for tests, logs and the few
  // control paths (admin, config) that want contiguous text.
  std::string toString() const;
  std::string toString(size_t n) const;
  // Whether the chain starts with prefix (may span slices; no copy).
  bool startsWith(std::string_view prefix) const;

 private:
  Slice* data() { return heap_cap_ ? heap_ : std::launder(reinterpret_cast<Slice*>(inline_)); }
  const Slice* data() const {
    return heap_cap_ ? heap_ : std::launder(reinterpret_cast<const Slice*>(inline_));
  }
  // Takes other's slices (and heap array); other is left empty. This chain
  // must hold none. A Slice is a slab pointer and two offsets, which mean
  // the same wherever they sit: its bytes are copied to the new place, and
  // the old place is forgotten (other holds nothing), not destroyed. With the
  // heap pointer that shares those bytes, this is one 16-byte copy, whichever
  // storage other uses.
  void take(BufferChain& other) {
    std::memcpy(inline_, other.inline_, sizeof(inline_));
    size_ = other.size_;
    heap_cap_ = other.heap_cap_;
    length_ = other.length_;
    other.size_ = 0;
    other.heap_cap_ = 0;
    other.length_ = 0;
  }
  // move() into a chain that holds slices or a heap array.
  void moveToEnd(BufferChain& other);
  void pushBack(Slice&& slice);
  // Moves the slices to a heap array twice as large (the first: 4 slices).
  [[gnu::noinline]] void grow();
  // drain() of fewer bytes than the chain holds.
  void drainFront(size_t n);
  // Destroys the first n slices and moves the rest to the front.
  void eraseFront(size_t n);
  // clear() for a chain that holds slices or a heap array.
  void clearSlices();
  // Back to inline storage; the chain must hold no slice. Inline: nearly
  // every chain that clear() empties has no heap array.
  void freeHeap() {
    if (heap_cap_) freeHeapArray();
  }
  void freeHeapArray();

  union {
    Slice* heap_;                                         // While heap_cap_ > 0.
    alignas(Slice) unsigned char inline_[sizeof(Slice)];  // Room for one slice.
  };
  uint32_t size_ = 0;      // Slices held.
  uint32_t heap_cap_ = 0;  // 0: the slices are in inline_.
  size_t length_ = 0;      // Bytes held.
};

// Reads from a socket into the tail of the worker's current slab, and hands
// out what was read as slices. It holds no slab between reads: an idle
// connection costs no buffer memory (the 1 KB-per-idle-connection goal).
class ReadBuffer {
 public:
  ReadBuffer() = default;
  ReadBuffer(const ReadBuffer&) = delete;
  ReadBuffer& operator=(const ReadBuffer&) = delete;

  // The writable tail for the next read (at least min_free bytes).
  std::span<char> prepare(size_t min_free = 2048) { return SlabPool::local().tail(min_free); }
  // Records that n bytes were written at the tail, and appends them to out.
  void commit(size_t n, BufferChain& out);
  // Holds nothing to give back; kept so that callers can say where a
  // connection goes idle. See SlabPool::retireCurrent() for a fresh slab.
  void release() {}
};

}  // namespace skiff
