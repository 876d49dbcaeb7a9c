#include "proxy/buffer/buffer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace skiff {
namespace {

TEST(BufferChain, AppendCopyAndToString) {
  BufferChain b;
  b.appendCopy("hello ");
  b.appendCopy("world");
  EXPECT_EQ(b.length(), 11u);
  EXPECT_EQ(b.toString(), "hello world");
  // Both copies fit the same slab contiguously, so they merge into one slice.
  EXPECT_EQ(b.slices().size(), 1u);
}

TEST(BufferChain, CopyLargerThanASlabSpansSlabs) {
  std::string big(Slab::kSize * 2 + 100, 'x');
  big[Slab::kSize] = 'y';
  BufferChain b;
  b.appendCopy(big);
  EXPECT_EQ(b.length(), big.size());
  EXPECT_EQ(b.slices().size(), 3u);
  EXPECT_EQ(b.toString(), big);
}

TEST(BufferChain, MoveAllTransfersSlicesWithoutCopying) {
  BufferChain a, b;
  a.appendCopy("abc");
  const char* where = a.slices()[0].data();
  b.move(a);
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(b.toString(), "abc");
  EXPECT_EQ(b.slices()[0].data(), where);
}

TEST(BufferChain, MovePartSplitsASliceThatSharesItsSlab) {
  BufferChain a, b;
  a.appendCopy("0123456789");
  Slab* slab = a.slices()[0].slab();
  b.move(a, 4);
  EXPECT_EQ(b.toString(), "0123");
  EXPECT_EQ(a.toString(), "456789");
  EXPECT_EQ(a.slices()[0].slab(), slab);
  EXPECT_EQ(b.slices()[0].slab(), slab);
  // One reference per slice, and the pool's own while the slab is its current one.
  EXPECT_EQ(slab->refs, SlabPool::local().current() == slab ? 3u : 2u);
}

TEST(BufferChain, MovePartAcrossSlices) {
  BufferChain a, b, c;
  a.appendCopy("aaaa");
  SlabPool::local().retireCurrent();
  c.appendCopy("bbbb");  // In another slab, so a gets two slices.
  a.append(c.slices()[0]);
  ASSERT_EQ(a.length(), 8u);
  b.move(a, 6);
  EXPECT_EQ(b.toString(), "aaaabb");
  EXPECT_EQ(a.toString(), "bb");
}

TEST(BufferChain, DrainDropsFromTheFront) {
  BufferChain a;
  a.appendCopy("0123456789");
  a.drain(3);
  EXPECT_EQ(a.toString(), "3456789");
  a.drain(100);
  EXPECT_TRUE(a.empty());
  EXPECT_TRUE(a.slices().empty());
}

TEST(BufferChain, StartsWithAcrossSlices) {
  BufferChain a, c;
  a.appendCopy("PRI * ");
  SlabPool::local().retireCurrent();
  c.appendCopy("HTTP/2.0");
  a.append(c.slices()[0]);
  EXPECT_TRUE(a.startsWith("PRI * HTTP/2"));
  EXPECT_FALSE(a.startsWith("PRI * HTTP/1"));
  EXPECT_FALSE(a.startsWith(std::string(100, 'P')));
}

TEST(BufferChain, IovecsPointAtTheSlices) {
  BufferChain a, c;
  a.appendCopy("one");
  SlabPool::local().retireCurrent();
  c.appendCopy("two");
  a.append(c.slices()[0]);
  struct iovec iov[4];
  ASSERT_EQ(a.iovecs(iov, 4), 2u);
  EXPECT_EQ(std::string(static_cast<char*>(iov[0].iov_base), iov[0].iov_len), "one");
  EXPECT_EQ(std::string(static_cast<char*>(iov[1].iov_base), iov[1].iov_len), "two");
  EXPECT_EQ(a.iovecs(iov, 1), 1u);
}

// Slices from distinct slabs never merge, so each is its own entry.
BufferChain chainOfSeparateSlices(const std::vector<std::string>& parts) {
  BufferChain out;
  for (const auto& p : parts) {
    SlabPool::local().retireCurrent();
    BufferChain one;
    one.appendCopy(p);
    out.move(one);
  }
  SlabPool::local().retireCurrent();
  return out;
}

TEST(BufferChain, ManySlicesGrowPastTheInlineOneAndKeepOrder) {
  std::vector<std::string> parts;
  std::string all;
  for (int i = 0; i < 20; ++i) {
    parts.push_back(std::string(static_cast<size_t>(i + 1), static_cast<char>('a' + i)));
    all += parts.back();
  }
  BufferChain c = chainOfSeparateSlices(parts);
  EXPECT_EQ(c.slices().size(), 20u);
  EXPECT_EQ(c.length(), all.size());
  EXPECT_EQ(c.toString(), all);
  // Part of it moves, splitting the slice it ends in.
  BufferChain front;
  front.move(c, 4);  // "a" + "bb" + "c" of "ccc".
  EXPECT_EQ(front.toString(), "abbc");
  EXPECT_EQ(c.toString(), all.substr(4));
  EXPECT_EQ(c.slices().size(), 18u);
  c.drain(2 + 4);  // The rest of "ccc", and "dddd".
  EXPECT_EQ(c.toString(), all.substr(10));
  EXPECT_EQ(c.slices().size(), 16u);
  c.drain(c.length());
  EXPECT_TRUE(c.empty());
  EXPECT_TRUE(c.slices().empty());
  // Emptied, it works from its inline slot again.
  c.appendCopy("again");
  EXPECT_EQ(c.toString(), "again");
}

TEST(BufferChain, MovesAndMoveAssignmentCarryEverySlice) {
  BufferChain one = chainOfSeparateSlices({"x"});
  BufferChain many = chainOfSeparateSlices({"1", "22", "333"});
  BufferChain a(std::move(one));
  EXPECT_TRUE(one.empty());
  EXPECT_EQ(a.toString(), "x");
  BufferChain b(std::move(many));
  EXPECT_TRUE(many.empty());
  EXPECT_EQ(b.toString(), "122333");
  a = std::move(b);
  EXPECT_EQ(a.toString(), "122333");
  EXPECT_TRUE(b.empty());
  b.move(a);
  EXPECT_EQ(b.toString(), "122333");
  EXPECT_TRUE(a.empty());
  BufferChain c = chainOfSeparateSlices({"head"});
  c.move(b);  // Appends to a chain that holds one slice.
  EXPECT_EQ(c.toString(), "head122333");
  EXPECT_EQ(c.slices().size(), 4u);
}

TEST(BufferChain, MoveIntoAnEmptyChainHandsOverEachReference) {
  // The slices change hands by their bytes (BufferChain::take): one
  // reference per slice before and after, and the slabs go back to the pool
  // with the chain that holds them last.
  SlabPool& pool = SlabPool::local();
  pool.retireCurrent();
  size_t live = pool.liveCount();
  {
    BufferChain one = chainOfSeparateSlices({"x"});
    BufferChain many = chainOfSeparateSlices({"1", "22", "333"});
    Slab* slab = one.slices()[0].slab();
    EXPECT_EQ(slab->refs, 1u);
    BufferChain a, b;
    a.move(one);
    b.move(many);
    EXPECT_EQ(slab->refs, 1u);
    EXPECT_EQ(a.toString(), "x");
    EXPECT_EQ(b.toString(), "122333");
    a.move(a);  // Into itself: nothing changes.
    EXPECT_EQ(a.toString(), "x");
    BufferChain empty;
    empty.move(empty);
    EXPECT_TRUE(empty.empty());
    EXPECT_EQ(pool.liveCount(), live + 4);
  }
  EXPECT_EQ(pool.liveCount(), live);
}

TEST(BufferChain, DrainingEverythingReleasesEverySlabAndTheArray) {
  SlabPool& pool = SlabPool::local();
  pool.retireCurrent();
  size_t live = pool.liveCount();
  BufferChain c = chainOfSeparateSlices({"a", "bb", "ccc", "dddd", "eeeee"});
  EXPECT_EQ(pool.liveCount(), live + 5);
  c.drain(c.length());
  EXPECT_TRUE(c.empty());
  EXPECT_TRUE(c.slices().empty());
  EXPECT_EQ(pool.liveCount(), live);
  // The chain is usable again, from its inline slot.
  c.appendCopy("again");
  EXPECT_EQ(c.toString(), "again");
  c.drain(c.length() + 1);
  EXPECT_TRUE(c.empty());
}

TEST(BufferChain, ReleasesEverySlabItHeld) {
  SlabPool& pool = SlabPool::local();
  pool.retireCurrent();
  size_t live = pool.liveCount();
  {
    BufferChain c = chainOfSeparateSlices({"a", "b", "c", "d", "e", "f"});
    EXPECT_EQ(pool.liveCount(), live + 6);
    c.drain(3);
    EXPECT_EQ(pool.liveCount(), live + 3);
  }
  EXPECT_EQ(pool.liveCount(), live);
}

TEST(SlabPool, ReusesReleasedSlabsAndBoundsTheFreeList) {
  SlabPool pool(2);
  Slab* a = pool.acquire();
  Slab* b = pool.acquire();
  Slab* c = pool.acquire();
  EXPECT_EQ(pool.liveCount(), 3u);
  pool.unref(a);
  pool.unref(b);
  pool.unref(c);  // Over max_free: goes back to the allocator.
  EXPECT_EQ(pool.freeCount(), 2u);
  EXPECT_EQ(pool.liveCount(), 0u);
  Slab* d = pool.acquire();
  EXPECT_TRUE(d == a || d == b);
  EXPECT_EQ(d->refs, 1u);
  EXPECT_EQ(d->fill, 0u);
  pool.unref(d);
}

TEST(SlabPool, SliceKeepsItsSlabAlive) {
  SlabPool& pool = SlabPool::local();
  BufferChain a;
  a.appendCopy("x");
  Slice kept = a.slices()[0];
  a.clear();
  pool.retireCurrent();  // The pool lets go; the slice still holds the slab.
  EXPECT_EQ(kept.slab()->refs, 1u);
  EXPECT_EQ(kept.view(), "x");
}

TEST(SlabPool, CopiesOfManyChainsShareOneSlab) {
  // Response heads for many connections in one loop iteration: one slab,
  // not one each.
  SlabPool& pool = SlabPool::local();
  pool.retireCurrent();
  size_t live = pool.liveCount();
  std::vector<BufferChain> heads(32);
  for (auto& h : heads) h.appendCopy("HTTP/1.1 200 OK\r\ncontent-length: 64\r\n\r\n");
  EXPECT_EQ(pool.liveCount(), live + 1);
  EXPECT_EQ(heads[0].slices()[0].slab(), heads[31].slices()[0].slab());
}

TEST(SlabPool, SmallCopyDoesNotSplitOverTwoSlabs) {
  SlabPool& pool = SlabPool::local();
  BufferChain keep;
  keep.appendCopy(std::string(Slab::kSize - 10, 'a'));  // Leaves a 10-byte tail.
  BufferChain b;
  b.appendCopy(std::string(100, 'b'));
  EXPECT_EQ(b.slices().size(), 1u);
  EXPECT_NE(b.slices()[0].slab(), keep.slices().back().slab());
  (void)pool;
}

TEST(ReadBuffer, ConnectionsHoldNoSlabBetweenReads) {
  SlabPool& pool = SlabPool::local();
  pool.retireCurrent();
  size_t live = pool.liveCount();
  ReadBuffer one, two;
  BufferChain in_one, in_two;
  auto span = one.prepare();
  std::memcpy(span.data(), "GET / HTTP/1.1\r\n", 16);
  one.commit(16, in_one);
  span = one.prepare();
  std::memcpy(span.data(), "\r\n", 2);
  one.commit(2, in_one);
  // Consecutive reads into one slab make one slice.
  EXPECT_EQ(in_one.slices().size(), 1u);
  EXPECT_EQ(in_one.toString(), "GET / HTTP/1.1\r\n\r\n");
  // Another connection's read goes to the same slab, after the first.
  span = two.prepare();
  std::memcpy(span.data(), "PUT", 3);
  two.commit(3, in_two);
  EXPECT_EQ(in_two.slices()[0].slab(), in_one.slices()[0].slab());
  EXPECT_EQ(pool.liveCount(), live + 1);
  // Once both have consumed their bytes, only the pool refers to the slab:
  // an idle connection holds no buffer, and the tail starts over.
  in_one.clear();
  in_two.clear();
  EXPECT_EQ(pool.current()->refs, 1u);
  EXPECT_EQ(pool.liveCount(), live + 1);
  span = one.prepare();
  EXPECT_EQ(span.data(), pool.current()->data);
  EXPECT_EQ(span.size(), Slab::kSize);
}

TEST(ReadBuffer, TakesAFreshSlabWhenTheTailIsSmall) {
  ReadBuffer rb;
  BufferChain in;
  auto span = rb.prepare();
  size_t n = span.size() - 100;
  std::memset(span.data(), 'a', n);
  rb.commit(n, in);
  auto next = rb.prepare(2048);
  EXPECT_GE(next.size(), 2048u);
  EXPECT_NE(next.data(), span.data() + n);
  EXPECT_NE(SlabPool::local().current(), in.slices()[0].slab());
}

}  // namespace
}  // namespace skiff
