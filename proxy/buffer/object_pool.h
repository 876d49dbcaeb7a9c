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
    if (size != sizeof(T) || dead_) return ::operator new(size);
    List& l = list_;
    if (!l.head) return ::operator new(size);
    Node* n = l.head;
    l.head = n->next;
    --l.count;
    return n;
  }

  static void give(void* p, size_t size) {
    if (size != sizeof(T) || dead_) {
      ::operator delete(p);
      return;
    }
    List& l = list_;
    if (l.count >= MaxFree) {
      ::operator delete(p);
      return;
    }
    auto* n = static_cast<Node*>(p);
    n->next = l.head;
    l.head = n;
    ++l.count;
  }

  // Blocks waiting in the calling thread's list (for tests).
  static size_t freeCount() { return dead_ ? 0 : list_.count; }

 private:
  static_assert(sizeof(T) >= sizeof(void*), "a free block holds the list link");

  struct Node {
    Node* next;
  };
  struct List {
    Node* head = nullptr;
    size_t count = 0;
    // At thread exit the blocks go back to the allocator; objects destroyed
    // after that (by other thread-exit or static destructors) free directly.
    ~List() {
      while (head) {
        Node* n = head;
        head = n->next;
        ::operator delete(n);
      }
      dead_ = true;
    }
  };

  static thread_local List list_;
  static thread_local bool dead_;  // Trivially destructible: readable after list_ is gone.
};

template <typename T, size_t MaxFree>
thread_local typename ObjectPool<T, MaxFree>::List ObjectPool<T, MaxFree>::list_;
template <typename T, size_t MaxFree>
thread_local bool ObjectPool<T, MaxFree>::dead_ = false;

}  // namespace skiff
