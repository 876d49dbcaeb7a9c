#include "filters/per_worker.h"

#include <gtest/gtest.h>

#include <memory>
#include <thread>
#include <vector>

namespace skiff::filters {
namespace {

struct Block {
  explicit Block(int v) : value(v) {}
  int value;
};

TEST(PerWorkerTest, NothingBeforeInstall) {
  PerWorker<Block> slots;
  EXPECT_EQ(slots.find(0), nullptr);
  EXPECT_EQ(slots.find(7), nullptr);
}

TEST(PerWorkerTest, InstallMakesOncePerWorker) {
  PerWorker<Block> slots;
  int made = 0;
  auto make = [&] { return std::make_unique<Block>(++made); };
  Block& first = slots.install(2, make);
  EXPECT_EQ(first.value, 1);
  EXPECT_EQ(&slots.install(2, make), &first);  // Installed again: the same block.
  EXPECT_EQ(made, 1);
  EXPECT_EQ(slots.find(2), &first);
  EXPECT_EQ(slots.find(0), nullptr);  // Another worker has none yet.
  Block& zero = slots.install(0, make);
  EXPECT_EQ(zero.value, 2);
  EXPECT_EQ(slots.find(2), &first);  // Kept when the array grows.
}

// A copied config (a listener given its bound port) is another config: the
// workers install it afresh, and the original keeps its blocks.
TEST(PerWorkerTest, CopyStartsEmpty) {
  PerWorker<Block> slots;
  Block& original = slots.install(1, [] { return std::make_unique<Block>(1); });
  PerWorker<Block> copy(slots);
  EXPECT_EQ(copy.find(1), nullptr);
  EXPECT_EQ(copy.install(1, [] { return std::make_unique<Block>(2); }).value, 2);
  EXPECT_EQ(slots.find(1), &original);
}

// Workers install at once, each on its own thread, and each then finds its
// own block while the others are still installing.
TEST(PerWorkerTest, WorkersInstallConcurrently) {
  PerWorker<Block> slots;
  constexpr int kWorkers = 8;
  std::vector<std::thread> threads;
  std::vector<int> seen(kWorkers, -1);
  for (int w = 0; w < kWorkers; ++w) {
    threads.emplace_back([&, w] {
      for (int round = 0; round < 100; ++round) {
        slots.install(static_cast<uint32_t>(w), [w] { return std::make_unique<Block>(w); });
        seen[w] = slots.find(static_cast<uint32_t>(w))->value;
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int w = 0; w < kWorkers; ++w) {
    EXPECT_EQ(seen[w], w);
    ASSERT_NE(slots.find(static_cast<uint32_t>(w)), nullptr);
    EXPECT_EQ(slots.find(static_cast<uint32_t>(w))->value, w);
  }
}

}  // namespace
}  // namespace skiff::filters
