#include "filters/router/grpc_timeout.h"

#include <gtest/gtest.h>

#include <limits>

namespace skiff::filters {
namespace {

using std::chrono::milliseconds;

TEST(GrpcTimeoutTest, ParsesEveryUnit) {
  EXPECT_EQ(parseGrpcTimeout("2H"), milliseconds(2 * 3600 * 1000));
  EXPECT_EQ(parseGrpcTimeout("3M"), milliseconds(3 * 60 * 1000));
  EXPECT_EQ(parseGrpcTimeout("4S"), milliseconds(4000));
  EXPECT_EQ(parseGrpcTimeout("250m"), milliseconds(250));
  EXPECT_EQ(parseGrpcTimeout("0m"), milliseconds(0));
  EXPECT_EQ(parseGrpcTimeout("00000007m"), milliseconds(7));
  EXPECT_EQ(parseGrpcTimeout("99999999H"), milliseconds(99999999LL * 3600 * 1000));
}

TEST(GrpcTimeoutTest, SubMillisecondUnitsRoundUp) {
  EXPECT_EQ(parseGrpcTimeout("1000u"), milliseconds(1));
  EXPECT_EQ(parseGrpcTimeout("1001u"), milliseconds(2));
  EXPECT_EQ(parseGrpcTimeout("1u"), milliseconds(1));
  EXPECT_EQ(parseGrpcTimeout("0u"), milliseconds(0));
  EXPECT_EQ(parseGrpcTimeout("1000000n"), milliseconds(1));
  EXPECT_EQ(parseGrpcTimeout("1000001n"), milliseconds(2));
  EXPECT_EQ(parseGrpcTimeout("99999999n"), milliseconds(100));
}

TEST(GrpcTimeoutTest, RefusesMalformedValues) {
  for (const char* bad : {"", "m", "5", "5s", "5h", "5x", "123456789m", "-5m", "+5m", " 5m", "5 m",
                          "5mm", "1.5S", "0x5m"}) {
    EXPECT_EQ(parseGrpcTimeout(bad), std::nullopt) << bad;
  }
}

TEST(GrpcTimeoutTest, ExpectedTimeoutIsWhatIsLeftForTheAttempt) {
  // No timeout at all: nothing to tell.
  EXPECT_EQ(expectedTimeoutMs(0, 0, 0), 0u);
  EXPECT_EQ(expectedTimeoutMs(0, 0, 500), 0u);
  // The route timeout, shrinking as the attempts use it up.
  EXPECT_EQ(expectedTimeoutMs(5000, 0, 0), 5000u);
  EXPECT_EQ(expectedTimeoutMs(5000, 0, 1200), 3800u);
  // The per-try timeout while the route timeout has more left than it.
  EXPECT_EQ(expectedTimeoutMs(5000, 800, 0), 800u);
  EXPECT_EQ(expectedTimeoutMs(5000, 800, 4000), 800u);
  EXPECT_EQ(expectedTimeoutMs(5000, 800, 4500), 500u);
  // A per-try timeout with no route timeout is told whole.
  EXPECT_EQ(expectedTimeoutMs(0, 800, 90000), 800u);
  // Out of time: 1, since 0 would mean none.
  EXPECT_EQ(expectedTimeoutMs(5000, 0, 5000), 1u);
  EXPECT_EQ(expectedTimeoutMs(5000, 800, 7000), 1u);
}

TEST(GrpcTimeoutTest, FormatsInTheSmallestUnitThatFits) {
  EXPECT_EQ(formatGrpcTimeout(milliseconds(0)), "0m");
  EXPECT_EQ(formatGrpcTimeout(milliseconds(1500)), "1500m");
  EXPECT_EQ(formatGrpcTimeout(milliseconds(99999999)), "99999999m");
  EXPECT_EQ(formatGrpcTimeout(milliseconds(100000000)), "100000S");
  EXPECT_EQ(formatGrpcTimeout(milliseconds(100000001999)), "1666666M");
  EXPECT_EQ(formatGrpcTimeout(milliseconds(6000000000000)), "1666666H");
  EXPECT_EQ(formatGrpcTimeout(milliseconds(std::numeric_limits<int64_t>::max())), "99999999H");
  // What is written reads back as at most the value (units round down).
  for (int64_t ms : {1LL, 99999999LL, 123456789012LL}) {
    EXPECT_LE(parseGrpcTimeout(formatGrpcTimeout(milliseconds(ms))), milliseconds(ms)) << ms;
  }
}

// A request with the given content-type and grpc-timeout (empty: none).
struct Request {
  explicit Request(std::string_view grpc_timeout, bool grpc = true) {
    headers.addCopy(":method", "POST");
    headers.addCopy(":path", "/skiff.test.Echo/Unary");
    headers.addCopy("content-type", grpc ? "application/grpc" : "application/json");
    if (!grpc_timeout.empty()) headers.addCopy("grpc-timeout", grpc_timeout);
  }
  bool grpc() const { return isGrpcRequest(headers); }
  HeaderMap headers;
};

RequestTimeouts choose(const router::RouteTimeouts& route, const Request& r) {
  return chooseTimeouts(route, r.headers, r.grpc());
}

TEST(ChooseTimeoutsTest, WithoutGrpcFieldsTheRouteTimeoutApplies) {
  router::RouteTimeouts route;
  route.timeout = milliseconds(2500);
  auto t = choose(route, Request("100m"));
  EXPECT_EQ(t.route, milliseconds(2500));
  EXPECT_EQ(t.stream, std::nullopt);
  EXPECT_EQ(t.upstream_grpc_timeout, "");
}

TEST(ChooseTimeoutsTest, MaxGrpcTimeoutUsesTheHeaderUpToTheMax) {
  router::RouteTimeouts route;
  route.timeout = milliseconds(2500);
  route.max_grpc_timeout = milliseconds(10000);
  auto t = choose(route, Request("3S"));
  EXPECT_EQ(t.route, milliseconds(3000));
  EXPECT_EQ(t.upstream_grpc_timeout, "3000m");
  EXPECT_EQ(t.stream, std::nullopt);
  t = choose(route, Request("1M"));  // capped
  EXPECT_EQ(t.route, milliseconds(10000));
  EXPECT_EQ(t.upstream_grpc_timeout, "10000m");
  t = choose(route, Request(""));  // no header: infinity, capped
  EXPECT_EQ(t.route, milliseconds(10000));
  EXPECT_EQ(t.upstream_grpc_timeout, "10000m");
  t = choose(route, Request("soon"));  // malformed: as if absent
  EXPECT_EQ(t.route, milliseconds(10000));
}

TEST(ChooseTimeoutsTest, MaxGrpcTimeoutZeroMeansNoCap) {
  router::RouteTimeouts route;
  route.max_grpc_timeout = milliseconds(0);
  auto t = choose(route, Request("2H"));
  EXPECT_EQ(t.route, milliseconds(2 * 3600 * 1000));
  EXPECT_EQ(t.upstream_grpc_timeout, "7200000m");
  t = choose(route, Request(""));  // no header and no cap: no timeout at all
  EXPECT_EQ(t.route, milliseconds(0));
  EXPECT_EQ(t.upstream_grpc_timeout, "");  // the header stays absent
}

TEST(ChooseTimeoutsTest, MaxGrpcTimeoutOnlyForGrpcRequests) {
  router::RouteTimeouts route;
  route.timeout = milliseconds(2500);
  route.max_grpc_timeout = milliseconds(0);
  auto t = choose(route, Request("100m", /*grpc=*/false));
  EXPECT_EQ(t.route, milliseconds(2500));
  EXPECT_EQ(t.upstream_grpc_timeout, "");
}

TEST(ChooseTimeoutsTest, GrpcTimeoutOffsetOnlyWhenTheHeaderIsLarger) {
  router::RouteTimeouts route;
  route.max_grpc_timeout = milliseconds(0);
  route.grpc_timeout_offset = milliseconds(100);
  EXPECT_EQ(choose(route, Request("1S")).route, milliseconds(900));
  EXPECT_EQ(choose(route, Request("1S")).upstream_grpc_timeout, "900m");
  // Never down to 0, which would mean infinity.
  EXPECT_EQ(choose(route, Request("100m")).route, milliseconds(100));
  EXPECT_EQ(choose(route, Request("50m")).route, milliseconds(50));
  // The offset comes before the cap.
  route.max_grpc_timeout = milliseconds(500);
  EXPECT_EQ(choose(route, Request("550m")).route, milliseconds(450));
  EXPECT_EQ(choose(route, Request("2S")).route, milliseconds(500));
}

TEST(ChooseTimeoutsTest, MaxStreamDurationReplacesTheRouteTimeout) {
  router::RouteTimeouts route;
  route.timeout = milliseconds(2500);
  route.max_grpc_timeout = milliseconds(1000);  // ignored under max_stream_duration
  route.has_max_stream_duration = true;
  auto t = choose(route, Request("100m"));
  EXPECT_EQ(t.route, milliseconds(0));
  EXPECT_EQ(t.stream, std::nullopt);
  EXPECT_EQ(t.upstream_grpc_timeout, "");
  route.max_stream_duration = milliseconds(4000);
  t = choose(route, Request("100m"));  // no grpc_timeout_header_max: the header is not used
  EXPECT_EQ(t.stream, milliseconds(4000));
  route.max_stream_duration = milliseconds(0);  // explicitly none
  EXPECT_EQ(choose(route, Request("")).stream, std::nullopt);
}

TEST(ChooseTimeoutsTest, GrpcTimeoutHeaderMax) {
  router::RouteTimeouts route;
  route.has_max_stream_duration = true;
  route.max_stream_duration = milliseconds(4000);
  route.grpc_timeout_header_max = milliseconds(2000);
  auto t = choose(route, Request("1500m"));
  EXPECT_EQ(t.stream, milliseconds(1500));
  EXPECT_EQ(t.route, milliseconds(0));
  EXPECT_EQ(t.upstream_grpc_timeout, "");  // forwarded unchanged
  EXPECT_EQ(choose(route, Request("1M")).stream, milliseconds(2000));
  // Without the header, max_stream_duration.
  EXPECT_EQ(choose(route, Request("")).stream, milliseconds(4000));
  // Envoy's connection manager reads the header whatever the content-type.
  EXPECT_EQ(choose(route, Request("700m", /*grpc=*/false)).stream, milliseconds(700));
  route.grpc_timeout_header_max = milliseconds(0);  // no cap
  EXPECT_EQ(choose(route, Request("1M")).stream, milliseconds(60000));
}

TEST(ChooseTimeoutsTest, GrpcTimeoutHeaderOffsetMayEndTheStreamAtOnce) {
  router::RouteTimeouts route;
  route.has_max_stream_duration = true;
  route.grpc_timeout_header_max = milliseconds(1000);
  route.grpc_timeout_header_offset = milliseconds(300);
  EXPECT_EQ(choose(route, Request("800m")).stream, milliseconds(500));
  EXPECT_EQ(choose(route, Request("5S")).stream, milliseconds(700));  // cap, then offset
  EXPECT_EQ(choose(route, Request("300m")).stream, milliseconds(0));
  EXPECT_EQ(choose(route, Request("200m")).stream, milliseconds(0));
  EXPECT_EQ(choose(route, Request("0m")).stream, milliseconds(0));
}

}  // namespace
}  // namespace skiff::filters
