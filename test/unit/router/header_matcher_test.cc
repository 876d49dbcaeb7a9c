#include "proxy/router/header_matcher.h"

#include <gtest/gtest.h>

#include "envoy/config/route/v3/route_components.pb.h"

namespace skiff::router {
namespace {

namespace rv3 = envoy::config::route::v3;

HeaderMatch compiled(const rv3::HeaderMatcher& m) {
  auto out = compileHeaderMatch(m, "m");
  EXPECT_TRUE(out.isOk());
  return std::move(*out);
}

TEST(HeaderMatcherTest, MatchesByNameWhateverItsCase) {
  rv3::HeaderMatcher m;
  m.set_name("X-Retry");
  m.mutable_string_match()->set_exact("yes");
  const HeaderMatch h = compiled(m);
  EXPECT_EQ(h.name, "x-retry");
  HeaderMap yes;
  yes.addView("x-RETRY", "yes");
  EXPECT_TRUE(h.matches(yes));
  HeaderMap no;
  no.addView("x-retry", "no");
  EXPECT_FALSE(h.matches(no));
  EXPECT_FALSE(h.matches(HeaderMap()));
}

TEST(HeaderMatcherTest, NoSpecifierMeansPresent) {
  rv3::HeaderMatcher m;
  m.set_name("x-retry");
  const HeaderMatch h = compiled(m);
  HeaderMap with;
  with.addView("x-retry", "");
  EXPECT_TRUE(h.matches(with));
  EXPECT_FALSE(h.matches(HeaderMap()));
}

TEST(HeaderMatcherTest, RepeatedFieldsAreJoinedAndRegexesSurviveACopy) {
  rv3::HeaderMatcher m;
  m.set_name("x-list");
  m.mutable_string_match()->mutable_safe_regex()->set_regex("a,b+");
  const HeaderMatch original = compiled(m);
  const HeaderMatch copy = original;  // A retry policy copies its matchers.
  HeaderMap h;
  h.addView("x-list", "a");
  h.addView("x-list", "bb");
  EXPECT_TRUE(copy.matches(h));
  EXPECT_TRUE(original.matches(h));
}

TEST(HeaderMatcherTest, ErrorsNameTheField) {
  rv3::HeaderMatcher m;
  EXPECT_EQ(compileHeaderMatch(m, "rp.retriable_headers[0]").status().message(),
            "rp.retriable_headers[0].name: must not be empty");
  m.set_name("x");
  m.mutable_string_match()->mutable_safe_regex()->set_regex("(");
  EXPECT_NE(compileHeaderMatch(m, "w").status().message().find("w.string_match.safe_regex.regex"),
            std::string::npos);
}

}  // namespace
}  // namespace skiff::router
