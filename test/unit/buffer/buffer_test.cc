#include "proxy/buffer/buffer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

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
  EXPECT_EQ(slab->refs, 2u);
}

TEST(BufferChain, MovePartAcrossSlices) {
  BufferChain a, b, c;
  a.appendCopy("aaaa");
  c.appendCopy("bbbb");  // A second chain's copy lands in a separate slice.
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
  c.appendCopy("HTTP/2.0");
  a.append(c.slices()[0]);
  EXPECT_TRUE(a.startsWith("PRI * HTTP/2"));
  EXPECT_FALSE(a.startsWith("PRI * HTTP/1"));
  EXPECT_FALSE(a.startsWith(std::string(100, 'P')));
}

TEST(BufferChain, IovecsPointAtTheSlices) {
  BufferChain a, c;
  a.appendCopy("one");
  c.appendCopy("two");
  a.append(c.slices()[0]);
  struct iovec iov[4];
  ASSERT_EQ(a.iovecs(iov, 4), 2u);
  EXPECT_EQ(std::string(static_cast<char*>(iov[0].iov_base), iov[0].iov_len), "one");
  EXPECT_EQ(std::string(static_cast<char*>(iov[1].iov_base), iov[1].iov_len), "two");
  EXPECT_EQ(a.iovecs(iov, 1), 1u);
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
  size_t live = pool.liveCount();
  {
    BufferChain a;
    a.appendCopy("x");
    EXPECT_EQ(pool.liveCount(), live + 1);
    Slice kept = a.slices()[0];
    a.clear();
    EXPECT_EQ(pool.liveCount(), live + 1);
    EXPECT_EQ(kept.view(), "x");
  }
  EXPECT_EQ(pool.liveCount(), live);
}

TEST(ReadBuffer, CommitsIntoOneSlabAndReleasesWhenIdle) {
  SlabPool& pool = SlabPool::local();
  size_t live = pool.liveCount();
  ReadBuffer rb;
  BufferChain in;
  auto span = rb.prepare();
  std::memcpy(span.data(), "GET / HTTP/1.1\r\n", 16);
  rb.commit(16, in);
  span = rb.prepare();
  std::memcpy(span.data(), "\r\n", 2);
  rb.commit(2, in);
  // Consecutive reads into one slab make one slice.
  EXPECT_EQ(in.slices().size(), 1u);
  EXPECT_EQ(in.toString(), "GET / HTTP/1.1\r\n\r\n");
  in.clear();
  rb.release();
  EXPECT_EQ(pool.liveCount(), live);
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
}

}  // namespace
}  // namespace skiff
