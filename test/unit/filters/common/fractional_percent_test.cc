#include "filters/common/fractional_percent.h"

#include <gtest/gtest.h>

#include "envoy/type/v3/percent.pb.h"

namespace skiff::filters {
namespace {

TEST(FractionalPercentTest, DenominatorsFromTheProto) {
  envoy::type::v3::FractionalPercent proto;
  proto.set_numerator(7);
  EXPECT_EQ(FractionalPercent::from(proto).denominator, 100u);  // Unset: HUNDRED.
  proto.set_denominator(envoy::type::v3::FractionalPercent::TEN_THOUSAND);
  EXPECT_EQ(FractionalPercent::from(proto).denominator, 10000u);
  proto.set_denominator(envoy::type::v3::FractionalPercent::MILLION);
  EXPECT_EQ(FractionalPercent::from(proto).denominator, 1000000u);
  EXPECT_EQ(FractionalPercent::from(proto).numerator, 7u);
}

TEST(FractionalPercentTest, SamplesRandomModuloDenominatorBelowNumerator) {
  const FractionalPercent p{30, 100};
  int in = 0;
  for (uint64_t r = 0; r < 1000; ++r) in += p.sample(r) ? 1 : 0;
  EXPECT_EQ(in, 300);  // Exactly 30 of each 100 consecutive values.
  EXPECT_TRUE(p.sample(129));
  EXPECT_FALSE(p.sample(130));
  EXPECT_FALSE((FractionalPercent{0, 100}).sample(0));       // Unset percentage: never.
  EXPECT_TRUE((FractionalPercent{100, 100}).sample(99));     // All.
  EXPECT_TRUE((FractionalPercent{500, 100}).sample(12345));  // Above the denominator: all.
  EXPECT_TRUE((FractionalPercent{1, 1000000}).sample(3000000));
  EXPECT_FALSE((FractionalPercent{1, 1000000}).sample(3000001));
}

TEST(FractionalPercentTest, HeaderPercentageIsCappedByTheConfiguredOne) {
  const FractionalPercent p{50, 10000};
  EXPECT_EQ(p.cappedBy(std::nullopt).numerator, 50u);
  EXPECT_EQ(p.cappedBy("20").numerator, 20u);
  EXPECT_EQ(p.cappedBy("20").denominator, 10000u);
  EXPECT_EQ(p.cappedBy("80").numerator, 50u);  // Never above the configuration.
  EXPECT_EQ(p.cappedBy("0").numerator, 0u);
  EXPECT_EQ(p.cappedBy("x").numerator, 50u);  // Unparsable: the configuration's.
  EXPECT_EQ(p.cappedBy("").numerator, 50u);
  EXPECT_EQ(p.cappedBy("99999999999").numerator, 50u);  // Above 32 bits.
}

TEST(FractionalPercentTest, ParseDecimal) {
  EXPECT_EQ(parseDecimal("0"), 0u);
  EXPECT_EQ(parseDecimal("503"), 503u);
  EXPECT_EQ(parseDecimal("18446744073709551615"), std::nullopt);  // 20 digits: refused.
  EXPECT_EQ(parseDecimal("9999999999999999999"), 9999999999999999999u);
  EXPECT_EQ(parseDecimal(""), std::nullopt);
  EXPECT_EQ(parseDecimal("-1"), std::nullopt);
  EXPECT_EQ(parseDecimal("1.5"), std::nullopt);
  EXPECT_EQ(parseDecimal(" 1"), std::nullopt);
}

}  // namespace
}  // namespace skiff::filters
