#include "proxy/buffer/object_pool.h"

#include <gtest/gtest.h>

#include <memory>
#include <thread>
#include <vector>

namespace skiff {
namespace {

struct Pooled;
using Pool = ObjectPool<Pooled, 4>;

struct Pooled {
  static void* operator new(size_t size) { return Pool::take(size); }
  static void operator delete(void* p, size_t size) { Pool::give(p, size); }
  char bytes[48];
};

TEST(ObjectPool, ReusesFreedBlocksAndKeepsABoundedNumber) {
  // Run on a thread of its own: the list is per thread, and starts empty.
  std::thread([] {
    auto a = std::make_unique<Pooled>();
    void* where = a.get();
    a.reset();
    EXPECT_EQ(Pool::freeCount(), 1u);
    auto b = std::make_unique<Pooled>();
    EXPECT_EQ(b.get(), where);  // The block just freed.
    EXPECT_EQ(Pool::freeCount(), 0u);
    std::vector<std::unique_ptr<Pooled>> many;
    for (int i = 0; i < 10; ++i) many.push_back(std::make_unique<Pooled>());
    many.clear();
    EXPECT_EQ(Pool::freeCount(), 4u);  // The rest went back to the allocator.
  }).join();
}

// An object freed by a thread-exit destructor that runs after the pool has
// given its blocks back goes straight to the allocator.
size_t g_free_after_exit = 99;
struct ExitHolder {
  std::unique_ptr<Pooled> p;
  ~ExitHolder() {
    p.reset();
    g_free_after_exit = Pool::freeCount();
  }
};

TEST(ObjectPool, FreesDirectlyAfterThePoolIsGone) {
  std::thread([] {
    // Constructed before the pool's list is used, so destroyed after it.
    thread_local ExitHolder holder;
    holder.p = std::make_unique<Pooled>();
    std::make_unique<Pooled>().reset();
    EXPECT_EQ(Pool::freeCount(), 1u);
  }).join();
  EXPECT_EQ(g_free_after_exit, 0u);
}

}  // namespace
}  // namespace skiff
