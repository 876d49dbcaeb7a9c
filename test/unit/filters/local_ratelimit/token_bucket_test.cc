#include "filters/local_ratelimit/token_bucket.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace skiff::filters {
namespace {

using std::chrono::milliseconds;

TEST(AtomicTokenBucketTest, StartsFullThenRefusesUntilRefilled) {
  AtomicTokenBucket b(3, 1, milliseconds(1000), 100.0);
  EXPECT_EQ(b.remaining(100.0), 3u);
  EXPECT_TRUE(b.consume(100.0));
  EXPECT_TRUE(b.consume(100.0));
  EXPECT_TRUE(b.consume(100.0));
  EXPECT_FALSE(b.consume(100.0));
  EXPECT_EQ(b.remaining(100.0), 0u);
  EXPECT_EQ(b.secondsToNextToken(100.0), 1u);
  EXPECT_FALSE(b.consume(100.5));  // Half a token.
  EXPECT_TRUE(b.consume(101.0));   // One fill interval: tokens_per_fill more.
  EXPECT_FALSE(b.consume(101.0));
}

TEST(AtomicTokenBucketTest, RefillsAtTokensPerFillPerIntervalUpToMax) {
  AtomicTokenBucket b(10, 5, milliseconds(2000), 0.0);
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(b.consume(0.0)) << i;
  EXPECT_FALSE(b.consume(0.0));
  EXPECT_EQ(b.remaining(2.0), 5u);
  EXPECT_EQ(b.remaining(3.0), 7u);    // Continuous: 2.5 tokens a second.
  EXPECT_EQ(b.remaining(60.0), 10u);  // Never above max_tokens.
  EXPECT_EQ(b.secondsToNextToken(60.0), 0u);
}

TEST(AtomicTokenBucketTest, WorkersShareOneBucket) {
  // The clock stands still: only the initial tokens are there to take.
  AtomicTokenBucket b(1000, 1, milliseconds(1000), 5.0);
  std::atomic<int> taken{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        if (b.consume(5.0)) taken.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(taken.load(), 1000);
}

}  // namespace
}  // namespace skiff::filters
