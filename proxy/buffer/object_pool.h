// Per-worker free lists for the objects that every request makes and
// destroys (header maps, streams). A class opts in with
//
//   static void* operator new(size_t size) { return ObjectPool<Foo>::take(size); }
//   static void operator delete(void* p, size_t size) { ObjectPool<Foo>::give(p, size); }
//
// and `new Foo` / `std::make_unique<Foo>()` then take a block from the
// calling thread's list instead of the allocator. Blocks of objects freed in
// a burst (a loop iteration that finished many streams) wait for reuse in a
// list of their own instead of overflowing the allocator's small per-thread
// caches, which is where malloc and free spent their time. A list keeps at
// most MaxFree blocks; the rest go back to the allocator, so an idle worker
// holds at most MaxFree * sizeof(T) bytes for each T.
//
// Like the rest of a worker's memory, nothing here is thread-safe: a block
// freed on another thread than the one that took it simply joins that
// thread's list.
#pragma once

#include <cstddef>
#include <new>

namespace skiff {

template <typename T, size_t MaxFree = 256>
class ObjectPool {
 public:
  static void* take(size_t size) {
    // A subclass (larger than T) is not pooled.
    List& l = list_;
    if (size != sizeof(T) || !l.head) return ::operator new(size);
    Node* n = l.head;
    l.head = n->next;
    --l.count;
    return n;
  }

  static void give(void* p, size_t size) {
    List& l = list_;
    if (size != sizeof(T) || l.count >= MaxFree || (l.state != kArmed && !arm())) {
      ::operator delete(p);
      return;
    }
    auto* n = static_cast<Node*>(p);
    n->next = l.head;
    l.head = n;
    ++l.count;
  }

  // Blocks waiting in the calling thread's list (for tests).
  static size_t freeCount() { return list_.count; }

 private:
  static_assert(sizeof(T) >= sizeof(void*), "a free block holds the list link");

  struct Node {
    Node* next;
  };
  enum State : unsigned char { kUnarmed, kArmed, kDead };
  // Trivially destructible and zero at thread start, so that take() and
  // give() reach it without a call: a thread_local with a destructor is
  // reached through a TLS init wrapper call on every access (2 per pooled
  // object). Guard gives the blocks back at thread exit instead; a thread
  // registers it when it first puts a block on the list.
  struct List {
    Node* head;
    size_t count;
    State state;
  };
  struct Guard {
    bool armed = false;
    // At thread exit the blocks go back to the allocator; objects destroyed
    // after that (by other thread-exit or static destructors) free directly.
    ~Guard() {
      List& l = list_;
      while (l.head) {
        Node* n = l.head;
        l.head = n->next;
        ::operator delete(n);
      }
      l.count = 0;
      l.state = kDead;
    }
  };

  // Registers this thread's Guard (its first access does); false once the
  // thread's Guard has run.
  [[gnu::noinline]] static bool arm() {
    if (list_.state == kDead) return false;
    guard_.armed = true;
    list_.state = kArmed;
    return true;
  }

  static thread_local constinit List list_;
  static thread_local Guard guard_;
};

template <typename T, size_t MaxFree>
thread_local constinit typename ObjectPool<T, MaxFree>::List ObjectPool<T, MaxFree>::list_ = {};
template <typename T, size_t MaxFree>
thread_local typename ObjectPool<T, MaxFree>::Guard ObjectPool<T, MaxFree>::guard_;

}  // namespace skiff
