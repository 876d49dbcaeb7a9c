#include "proxy/common/json.h"

#include <gtest/gtest.h>

namespace skiff {
namespace {

TEST(JsonString, QuotesAndEscapes) {
  EXPECT_EQ(jsonString("plain"), "\"plain\"");
  EXPECT_EQ(jsonString("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(jsonString("\n\r\t"), "\"\\n\\r\\t\"");
  EXPECT_EQ(jsonString(std::string_view("\x01\x1f", 2)), "\"\\u0001\\u001f\"");
  std::string out = "x:";
  appendJsonString(out, "y");
  EXPECT_EQ(out, "x:\"y\"");
}

}  // namespace
}  // namespace skiff
