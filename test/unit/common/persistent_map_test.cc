#include "proxy/common/persistent_map.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace skiff {
namespace {

std::vector<std::pair<std::string, int>> items(const PersistentMap<int>& m) {
  std::vector<std::pair<std::string, int>> out;
  for (const auto& [k, v] : m) out.emplace_back(k, v);
  return out;
}

std::vector<std::pair<std::string, int>> items(const std::map<std::string, int>& m) {
  return {m.begin(), m.end()};
}

TEST(PersistentMapTest, SetGetEraseLikeAMap) {
  PersistentMap<int> m;
  EXPECT_TRUE(m.empty());
  EXPECT_EQ(m.get("a"), nullptr);
  m.set("b", 2);
  m.set("a", 1);
  m.set("c", 3);
  m.set("b", 20);  // Replaces.
  EXPECT_EQ(m.size(), 3u);
  EXPECT_EQ(*m.get("b"), 20);
  EXPECT_EQ(m.at("a"), 1);
  EXPECT_EQ(m.count("c"), 1u);
  EXPECT_THROW(m.at("zz"), std::out_of_range);
  EXPECT_TRUE(m.erase("a"));
  EXPECT_FALSE(m.erase("a"));
  EXPECT_EQ(m.size(), 2u);
  EXPECT_EQ(items(m), (std::vector<std::pair<std::string, int>>{{"b", 20}, {"c", 3}}));
}

TEST(PersistentMapTest, CopiesAreUnchangedByLaterEdits) {
  PersistentMap<int> before;
  for (int i = 0; i < 100; ++i) before.set("k" + std::to_string(i), i);
  PersistentMap<int> after = before;
  after.set("k5", 500);
  after.erase("k7");
  after.set("new", 1);
  EXPECT_EQ(before.size(), 100u);
  EXPECT_EQ(before.at("k5"), 5);
  EXPECT_EQ(before.at("k7"), 7);
  EXPECT_EQ(before.get("new"), nullptr);
  EXPECT_EQ(after.size(), 100u);
  EXPECT_EQ(after.at("k5"), 500);
  EXPECT_EQ(after.get("k7"), nullptr);
}

TEST(PersistentMapTest, MatchesStdMapUnderRandomEdits) {
  std::mt19937 rng(7);
  PersistentMap<int> m;
  std::map<std::string, int> model;
  std::vector<PersistentMap<int>> versions;
  std::vector<std::map<std::string, int>> models;
  for (int step = 0; step < 5000; ++step) {
    std::string key = "key" + std::to_string(rng() % 700);
    if (rng() % 3 == 0) {
      EXPECT_EQ(m.erase(key), model.erase(key) == 1);
    } else {
      int value = static_cast<int>(rng() % 1000);
      m.set(key, value);
      model[key] = value;
    }
    ASSERT_EQ(m.size(), model.size());
    if (step % 500 == 0) {
      versions.push_back(m);
      models.push_back(model);
    }
  }
  EXPECT_EQ(items(m), items(model));
  for (size_t i = 0; i < versions.size(); ++i) EXPECT_EQ(items(versions[i]), items(models[i]));
}

TEST(PersistentMapTest, SortedInsertionStaysShallow) {
  // Keys arriving in order would make a plain search tree a list; the
  // hashed priorities keep it about log n deep, which the recursion needs.
  PersistentMap<int> m;
  for (int i = 0; i < 20000; ++i) {
    char key[16];
    std::snprintf(key, sizeof key, "c%06d", i);
    m.set(key, i);
  }
  EXPECT_EQ(m.size(), 20000u);
  EXPECT_LT(m.depth(), 60u);  // log2(20000) is 14.3; a list would be 20000.
  int n = 0;
  std::string last;
  for (const auto& [k, v] : m) {
    EXPECT_LT(last, k);
    last = k;
    ++n;
  }
  EXPECT_EQ(n, 20000);
  for (int i = 0; i < 20000; i += 2) {
    char key[16];
    std::snprintf(key, sizeof key, "c%06d", i);
    ASSERT_TRUE(m.erase(key));
  }
  EXPECT_EQ(m.size(), 10000u);
  EXPECT_EQ(m.at("c000001"), 1);
}

}  // namespace
}  // namespace skiff
