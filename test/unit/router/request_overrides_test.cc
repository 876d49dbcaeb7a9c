#include "proxy/router/request_overrides.h"

#include <gtest/gtest.h>

#include "proxy/router/retry_policy.h"

namespace skiff::router {
namespace {

using std::chrono::milliseconds;

std::vector<std::string> names(const HeaderMap& h) {
  std::vector<std::string> out;
  for (const auto& e : h.entries()) out.emplace_back(e.name);
  return out;
}

TEST(RequestOverridesTest, ParsesNumbersAsEnvoyDoes) {
  EXPECT_EQ(parseHeaderUint("250"), 250u);
  EXPECT_EQ(parseHeaderUint(" 250\t"), 250u);
  EXPECT_EQ(parseHeaderUint("+7"), 7u);
  EXPECT_EQ(parseHeaderUint("0"), 0u);
  EXPECT_EQ(parseHeaderUint("18446744073709551615"), UINT64_MAX);
  EXPECT_EQ(parseHeaderUint("18446744073709551616"), std::nullopt);
  EXPECT_EQ(parseHeaderUint(""), std::nullopt);
  EXPECT_EQ(parseHeaderUint("+"), std::nullopt);
  EXPECT_EQ(parseHeaderUint("-1"), std::nullopt);
  EXPECT_EQ(parseHeaderUint("1.5"), std::nullopt);
  EXPECT_EQ(parseHeaderUint("10ms"), std::nullopt);
  EXPECT_EQ(parseHeaderUint("1 0"), std::nullopt);
}

TEST(RequestOverridesTest, TakesEveryHeaderAndRemovesThem) {
  HeaderMap h;
  h.addView(":path", "/a");
  h.addView("x-envoy-upstream-rq-timeout-ms", "1500");
  h.addView("X-Envoy-Upstream-Rq-Per-Try-Timeout-Ms", "300");
  h.addView("x-envoy-upstream-rq-timeout-alt-response", "");
  h.addView("x-envoy-retry-on", "5xx, retriable-status-codes");
  h.addView("x-envoy-retry-grpc-on", "unavailable");
  h.addView("x-envoy-max-retries", "4");
  h.addView("x-envoy-retriable-status-codes", "418,425");
  h.addView("x-envoy-retriable-header-names", " X-Retry-Me,,x-other-retry ");
  h.addView("x-envoy-hedge-on-per-try-timeout", "true");
  h.addView("x-envoy-upstream-stream-duration-ms", "2500");
  h.addView("x-envoy-expected-rq-timeout-ms", "9");
  h.addView("x-other", "kept");
  RequestOverrides o = takeRequestOverrides(h);
  EXPECT_EQ(o.timeout, milliseconds(1500));
  EXPECT_EQ(o.per_try_timeout, milliseconds(300));
  EXPECT_TRUE(o.timeout_alt_response);
  EXPECT_EQ(o.retry_on,
            retry_on::k5xx | retry_on::kRetriableStatusCodes | retry_on::kGrpcUnavailable);
  EXPECT_TRUE(o.retry_headers);
  EXPECT_EQ(o.max_retries, 4u);
  EXPECT_EQ(o.retriable_status_codes, (std::vector<uint32_t>{418, 425}));
  EXPECT_EQ(o.stream_duration, milliseconds(2500));
  EXPECT_EQ(o.retriable_header_names, (std::vector<std::string>{"x-retry-me", "x-other-retry"}));
  EXPECT_TRUE(o.needsRetryState());
  // The expected timeout is the router's to set, not consumed.
  EXPECT_EQ(names(h),
            (std::vector<std::string>{":path", "x-envoy-expected-rq-timeout-ms", "x-other"}));
}

TEST(RequestOverridesTest, InvalidValuesAreIgnoredButStillRemoved) {
  HeaderMap h;
  h.addView("x-envoy-upstream-rq-timeout-ms", "soon");
  h.addView("x-envoy-upstream-rq-per-try-timeout-ms", "-5");
  h.addView("x-envoy-max-retries", "many");
  h.addView("x-envoy-retriable-status-codes", "teapot, 503,,x");
  RequestOverrides o = takeRequestOverrides(h);
  EXPECT_EQ(o.timeout, std::nullopt);
  EXPECT_EQ(o.per_try_timeout, std::nullopt);
  EXPECT_EQ(o.max_retries, std::nullopt);
  EXPECT_EQ(o.retriable_status_codes, (std::vector<uint32_t>{503}));
  EXPECT_FALSE(o.retry_headers);
  EXPECT_FALSE(o.needsRetryState());
  EXPECT_EQ(h.size(), 0u);
}

TEST(RequestOverridesTest, EachRetryOnHeaderReadsItsOwnConditions) {
  // Envoy reads HTTP conditions from x-envoy-retry-on and gRPC ones from
  // x-envoy-retry-grpc-on; a name in the other header adds nothing.
  HeaderMap h;
  h.addView("x-envoy-retry-on", "unavailable,gateway-error,nonsense");
  h.addView("x-envoy-retry-grpc-on", "5xx,cancelled");
  RequestOverrides o = takeRequestOverrides(h);
  EXPECT_EQ(o.retry_on, retry_on::kGatewayError | retry_on::kGrpcCancelled);

  // A retry-on header with nothing skiff knows still asks for retry state.
  HeaderMap u;
  u.addView("x-envoy-retry-on", "reset-before-request");
  RequestOverrides p = takeRequestOverrides(u);
  EXPECT_EQ(p.retry_on, 0u);
  EXPECT_TRUE(p.retry_headers);
}

TEST(RequestOverridesTest, TheFirstFieldOfANameCounts) {
  HeaderMap h;
  h.addView("x-envoy-upstream-rq-timeout-ms", "100");
  h.addView("x-envoy-upstream-rq-timeout-ms", "200");
  h.addView("x-envoy-max-retries", "9999999999");
  RequestOverrides o = takeRequestOverrides(h);
  EXPECT_EQ(o.timeout, milliseconds(100));
  EXPECT_EQ(o.max_retries, UINT32_MAX);  // Clamped to what a count of retries holds.
  EXPECT_EQ(h.size(), 0u);
}

TEST(RequestOverridesTest, ZeroTimeoutMeansNone) {
  HeaderMap h;
  h.addView("x-envoy-upstream-rq-timeout-ms", "0");
  RequestOverrides o = takeRequestOverrides(h);
  EXPECT_EQ(o.timeout, milliseconds(0));
  EXPECT_FALSE(o.needsRetryState());
}

TEST(RequestOverridesTest, StreamDurationAloneNeedsTheAttemptTimers) {
  HeaderMap h;
  h.addView("x-envoy-upstream-stream-duration-ms", "700");
  RequestOverrides o = takeRequestOverrides(h);
  EXPECT_EQ(o.stream_duration, milliseconds(700));
  EXPECT_TRUE(o.needsRetryState());
  EXPECT_EQ(h.size(), 0u);
  // Zero: no bound, nothing to keep; a value that is not a number: none.
  HeaderMap z;
  z.addView("x-envoy-upstream-stream-duration-ms", "0");
  RequestOverrides p = takeRequestOverrides(z);
  EXPECT_EQ(p.stream_duration, milliseconds(0));
  EXPECT_FALSE(p.needsRetryState());
  HeaderMap b;
  b.addView("x-envoy-upstream-stream-duration-ms", "1s");
  EXPECT_EQ(takeRequestOverrides(b).stream_duration, std::nullopt);
  EXPECT_EQ(b.size(), 0u);
}

}  // namespace
}  // namespace skiff::router
