#include "proxy/upstream/hash_lb.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "proxy/common/hash.h"

namespace skiff::upstream {
namespace {

constexpr int kKeys = 20000;

uint64_t keyHash(int i) { return xxHash64("key-" + std::to_string(i)); }

// For each key, the address of the host the table picks.
template <typename Table>
std::vector<std::string> assign(const Table& t, const std::vector<std::string>& hosts) {
  std::vector<std::string> out;
  out.reserve(kKeys);
  for (int i = 0; i < kKeys; ++i) out.push_back(hosts[t.pick(keyHash(i))]);
  return out;
}

std::map<std::string, int> counts(const std::vector<std::string>& picks) {
  std::map<std::string, int> out;
  for (const auto& p : picks) ++out[p];
  return out;
}

const std::vector<std::string> kHosts = {"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"};
const std::vector<uint32_t> kEqual = {1, 1, 1};
const std::vector<uint32_t> kTwo = {1, 1};
const std::vector<uint32_t> kHeavyMiddle = {1, 2, 1};

TEST(RingHashTable, SizeAndPointsPerHostAsEnvoy) {
  RingHashTable ring;
  ring.build(kHosts, kEqual, 1024, 8 * 1024 * 1024);
  // Each host's share, 1/3, times 1024, rounded up to a whole 342 points.
  EXPECT_EQ(ring.size(), 1026u);
  EXPECT_EQ(ring.minPointsPerHost(), 342u);
  EXPECT_EQ(ring.maxPointsPerHost(), 342u);
  ring.build(kHosts, kEqual, 1024, 600);  // The maximum wins.
  EXPECT_EQ(ring.size(), 600u);
  ring.build({}, {}, 1024, 2048);
  EXPECT_TRUE(ring.empty());
}

TEST(RingHashTable, SameKeySameHostAndKeysSpread) {
  RingHashTable ring;
  ring.build(kHosts, kEqual, 1024, 8 * 1024 * 1024);
  std::vector<std::string> first = assign(ring, kHosts);
  EXPECT_EQ(first, assign(ring, kHosts));
  // The host list's order does not matter: a point's hash is its host's key.
  std::vector<std::string> reversed = {kHosts[2], kHosts[1], kHosts[0]};
  RingHashTable other;
  other.build(reversed, kEqual, 1024, 8 * 1024 * 1024);
  EXPECT_EQ(first, assign(other, reversed));
  for (const auto& [host, n] : counts(first)) {
    EXPECT_GT(n, kKeys / 5) << host;  // About a third each.
    EXPECT_LT(n, kKeys / 2) << host;
  }
}

TEST(RingHashTable, RemovingAHostMovesOnlyItsKeys) {
  // 100 points per host before and after (minimum 300 for three hosts, 200
  // for two): the two hosts that stay keep their points, so a key moves only
  // if it was on the host that left.
  RingHashTable before;
  before.build(kHosts, kEqual, 300, 300);
  const std::vector<std::string> two = {kHosts[0], kHosts[2]};
  RingHashTable after;
  after.build(two, kTwo, 200, 200);
  std::vector<std::string> a = assign(before, kHosts);
  std::vector<std::string> b = assign(after, two);
  int moved = 0;
  for (int i = 0; i < kKeys; ++i) {
    if (a[i] != kHosts[1]) {
      EXPECT_EQ(a[i], b[i]) << "key " << i;
    } else {
      ++moved;
    }
  }
  EXPECT_GT(moved, kKeys / 5);
  // With Envoy's default sizes the survivors get more points each (a whole
  // ring of 1024 between two hosts), so a few of their keys move too; most
  // stay, unlike hashing modulo the host count.
  before.build(kHosts, kEqual, 1024, 8 * 1024 * 1024);
  after.build(two, kTwo, 1024, 8 * 1024 * 1024);
  a = assign(before, kHosts);
  b = assign(after, two);
  int stayed = 0;
  int survivors = 0;
  for (int i = 0; i < kKeys; ++i) {
    if (a[i] == kHosts[1]) continue;
    ++survivors;
    stayed += a[i] == b[i];
  }
  EXPECT_GT(stayed, survivors * 3 / 4);
}

TEST(RingHashTable, WeightsSkewTheSpread) {
  RingHashTable ring;
  ring.build(kHosts, kHeavyMiddle, 1024, 8 * 1024 * 1024);
  // The lightest host's share is 1/4: 256 points of 1024, the heavy one 512.
  EXPECT_EQ(ring.size(), 1024u);
  EXPECT_EQ(ring.minPointsPerHost(), 256u);
  EXPECT_EQ(ring.maxPointsPerHost(), 512u);
  auto n = counts(assign(ring, kHosts));
  // Half the keys to the host of weight 2, a quarter to each other one.
  EXPECT_GT(n[kHosts[1]], kKeys * 4 / 10);
  EXPECT_LT(n[kHosts[1]], kKeys * 6 / 10);
  EXPECT_GT(n[kHosts[0]], kKeys * 15 / 100);
  EXPECT_LT(n[kHosts[0]], kKeys * 35 / 100);
}

TEST(RingHashTable, AnotherAttemptStepsAlongTheRing) {
  RingHashTable ring;
  ring.build(kHosts, kEqual, 1024, 8 * 1024 * 1024);
  int differ = 0;
  for (int i = 0; i < 1000; ++i) {
    const uint64_t h = keyHash(i);
    EXPECT_EQ(ring.pick(h, 0), ring.pick(h));
    differ += ring.pick(h, 1) != ring.pick(h, 0);
  }
  // The next point belongs to another host about two times in three.
  EXPECT_GT(differ, 500);
}

TEST(MaglevTable, FillsThePrimeTableEvenly) {
  MaglevTable t;
  t.build(kHosts, kEqual, 65537);
  EXPECT_EQ(t.size(), 65537u);
  // Equal weights: entries differ by at most one between hosts.
  EXPECT_LE(t.maxEntriesPerHost() - t.minEntriesPerHost(), 1u);
  EXPECT_EQ(t.minEntriesPerHost(), 65537u / 3);
  EXPECT_EQ(t.maxEntriesPerHost(), 65537u / 3 + 1);
  t.build({}, {}, 65537);
  EXPECT_TRUE(t.empty());
}

TEST(MaglevTable, NarrowEntriesForFewHosts) {
  // 300 hosts need two bytes per entry; every one of them is picked, and
  // each index read back is a host's.
  std::vector<std::string> many;
  for (int i = 0; i < 300; ++i) many.push_back("10.0.1." + std::to_string(i) + ":80");
  std::vector<uint32_t> ones(many.size(), 1);
  MaglevTable t;
  t.build(many, ones, 65537);
  EXPECT_EQ(t.entryBytes(), 2u);
  EXPECT_EQ(t.minEntriesPerHost(), 65537u / 300);
  std::vector<int> hits(many.size());
  for (int i = 0; i < 200000; ++i) {
    const uint32_t host = t.pick(keyHash(i));
    ASSERT_LT(host, many.size());
    ++hits[host];
  }
  for (int n : hits) EXPECT_GT(n, 0);
  t.build(kHosts, kEqual, 65537);
  EXPECT_EQ(t.entryBytes(), 1u);
}

TEST(MaglevTable, SameKeySameHostWhateverTheHostOrder) {
  MaglevTable t;
  t.build(kHosts, kEqual, 65537);
  std::vector<std::string> first = assign(t, kHosts);
  EXPECT_EQ(first, assign(t, kHosts));
  std::vector<std::string> reversed = {kHosts[2], kHosts[1], kHosts[0]};
  MaglevTable other;
  other.build(reversed, kEqual, 65537);
  EXPECT_EQ(first, assign(other, reversed));
  for (const auto& [host, n] : counts(first)) {
    EXPECT_GT(n, kKeys * 28 / 100) << host;
    EXPECT_LT(n, kKeys * 38 / 100) << host;
  }
}

TEST(MaglevTable, RemovingAHostMovesFewOtherKeys) {
  MaglevTable before;
  before.build(kHosts, kEqual, 65537);
  const std::vector<std::string> two = {kHosts[0], kHosts[2]};
  MaglevTable after;
  after.build(two, kTwo, 65537);
  std::vector<std::string> a = assign(before, kHosts);
  std::vector<std::string> b = assign(after, two);
  int stayed = 0;
  int survivors = 0;
  for (int i = 0; i < kKeys; ++i) {
    if (a[i] == kHosts[1]) continue;
    ++survivors;
    stayed += a[i] == b[i];
  }
  EXPECT_GT(survivors, kKeys / 2);
  EXPECT_GT(stayed, survivors * 9 / 10);
}

TEST(MaglevTable, WeightsSkewTheSpread) {
  MaglevTable t;
  t.build(kHosts, kHeavyMiddle, 65537);
  // Half the table to the host of weight 2.
  EXPECT_GT(t.maxEntriesPerHost(), 65537u * 48 / 100);
  EXPECT_LT(t.maxEntriesPerHost(), 65537u * 52 / 100);
  auto n = counts(assign(t, kHosts));
  EXPECT_GT(n[kHosts[1]], kKeys * 45 / 100);
  EXPECT_LT(n[kHosts[1]], kKeys * 55 / 100);
}

TEST(MaglevTable, AnotherAttemptUsuallyPicksAnotherHost) {
  MaglevTable t;
  t.build(kHosts, kEqual, 65537);
  int differ = 0;
  for (int i = 0; i < 1000; ++i) differ += t.pick(keyHash(i), 1) != t.pick(keyHash(i), 0);
  EXPECT_GT(differ, 500);
}

}  // namespace
}  // namespace skiff::upstream
