#include "proxy/common/hash.h"

#include <gtest/gtest.h>

#include <string_view>
#include <vector>

namespace skiff {
namespace {

TEST(XxHash64, IsXxh64) {
  // The reference value of XXH64 for the empty input and seed 0: the hash is
  // the real xxHash64 (Envoy's), so keys land where Envoy puts them.
  EXPECT_EQ(xxHash64(""), 0xEF46DB3751D8E999ull);
  EXPECT_NE(xxHash64("a"), xxHash64("a", 1));
}

TEST(XxHash64, PartsHashAsTheirConcatenation) {
  std::vector<std::string_view> parts = {"foo", "bar", "baz"};
  EXPECT_EQ(xxHash64(parts), xxHash64("foobarbaz"));
  EXPECT_EQ(xxHash64(parts, 7), xxHash64("foobarbaz", 7));
  std::vector<std::string_view> one = {"foo"};
  EXPECT_EQ(xxHash64(one), xxHash64("foo"));
}

}  // namespace
}  // namespace skiff
