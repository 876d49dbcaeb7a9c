#include "proxy/upstream/outlier_detector.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace skiff::upstream {
namespace {

TEST(OutlierRules, MaxEjectionPercent) {
  // Envoy: 100 * (ejected + 1) / hosts <= max_ejection_percent.
  EXPECT_TRUE(mayEject(0, 10, 10, false));   // 10% of 10 hosts: one.
  EXPECT_FALSE(mayEject(1, 10, 10, false));  // A second would be 20%.
  EXPECT_FALSE(mayEject(0, 9, 10, false));   // One of 9 is 11%: none at the default.
  EXPECT_FALSE(mayEject(0, 2, 10, false));
  EXPECT_TRUE(mayEject(1, 4, 50, false));  // Two of four: 50%.
  EXPECT_FALSE(mayEject(2, 4, 50, false));
  EXPECT_TRUE(mayEject(1, 2, 100, false));
  EXPECT_FALSE(mayEject(2, 2, 100, false));
  // always_eject_one_host: the first one, whatever the percentage.
  EXPECT_TRUE(mayEject(0, 2, 10, true));
  EXPECT_FALSE(mayEject(1, 2, 10, true));
  EXPECT_TRUE(mayEject(0, 1, 0, true));
  EXPECT_FALSE(mayEject(0, 1, 0, false));
  EXPECT_FALSE(mayEject(0, 0, 100, false));
}

TEST(OutlierRules, EjectionTimeGrowsWithBackoffToTheCap) {
  config::OutlierDetectionConfig c;
  c.base_ejection_time = std::chrono::milliseconds(300);
  c.max_ejection_time = std::chrono::milliseconds(1000);
  EXPECT_EQ(ejectionMs(c, 1), 300u);
  EXPECT_EQ(ejectionMs(c, 2), 600u);
  EXPECT_EQ(ejectionMs(c, 3), 900u);
  EXPECT_EQ(ejectionMs(c, 4), 1000u);
  EXPECT_EQ(ejectionMs(c, 9), 1000u);
}

// A detector with a recording notify and a fixed draw for enforcing_*.
struct Harness {
  explicit Harness(config::OutlierDetectionConfig od, std::vector<std::string> hosts) {
    auto cluster = std::make_shared<config::ClusterConfig>();
    cluster->name = "c";
    cluster->outlier_detection = std::make_shared<config::OutlierDetectionConfig>(od);
    detector = std::make_unique<OutlierDetector>(
        cluster, store,
        [this](const std::string& address, bool ejected) { events.emplace_back(address, ejected); },
        [this] { return draw; });
    detector->setHosts(hosts);
  }
  uint64_t counter(const std::string& name) {
    return store.counter("cluster.c.outlier_detection." + name).value();
  }
  int64_t active() { return store.gauge("cluster.c.outlier_detection.ejections_active").value(); }

  stats::Store store;
  uint64_t draw = 0;
  std::vector<std::pair<std::string, bool>> events;
  std::unique_ptr<OutlierDetector> detector;
};

config::OutlierDetectionConfig shortTimes() {
  config::OutlierDetectionConfig c;
  c.interval = std::chrono::milliseconds(100);
  c.base_ejection_time = std::chrono::milliseconds(300);
  c.max_ejection_time = std::chrono::milliseconds(1000);
  c.max_ejection_percent = 100;
  return c;
}

TEST(OutlierDetector, EjectsAndUnejectsOnTheInterval) {
  Harness h(shortTimes(), {"a:1", "b:1"});
  h.detector->onReport("a:1", OutlierKind::kConsecutive5xx, 1000);
  EXPECT_TRUE(h.detector->ejected("a:1"));
  EXPECT_FALSE(h.detector->ejected("b:1"));
  EXPECT_EQ(h.active(), 1);
  EXPECT_EQ(h.counter("ejections_detected_consecutive_5xx"), 1u);
  EXPECT_EQ(h.counter("ejections_enforced_consecutive_5xx"), 1u);
  EXPECT_EQ(h.counter("ejections_enforced_total"), 1u);
  EXPECT_EQ(h.counter("ejections_total"), 1u);
  EXPECT_EQ(h.counter("ejections_consecutive_5xx"), 1u);
  ASSERT_EQ(h.events.size(), 1u);
  EXPECT_EQ(h.events[0], std::make_pair(std::string("a:1"), true));
  // A second report while ejected is not a detection.
  h.detector->onReport("a:1", OutlierKind::kConsecutive5xx, 1010);
  EXPECT_EQ(h.counter("ejections_detected_consecutive_5xx"), 1u);
  // Not yet: 299 ms.
  h.detector->onInterval(1299);
  EXPECT_TRUE(h.detector->ejected("a:1"));
  h.detector->onInterval(1300);
  EXPECT_FALSE(h.detector->ejected("a:1"));
  EXPECT_EQ(h.active(), 0);
  ASSERT_EQ(h.events.size(), 2u);
  EXPECT_EQ(h.events[1], std::make_pair(std::string("a:1"), false));
}

TEST(OutlierDetector, PassingActiveHealthCheckUnejects) {
  // successful_active_health_check_uneject_host (default true): back at once.
  Harness h(shortTimes(), {"a:1", "b:1"});
  h.detector->onReport("a:1", OutlierKind::kConsecutive5xx, 1000);
  ASSERT_TRUE(h.detector->ejected("a:1"));
  h.detector->onHealthCheckPassed("b:1", 1010);  // Not ejected: nothing.
  h.detector->onHealthCheckPassed("c:1", 1010);  // Not a host: nothing.
  EXPECT_EQ(h.events.size(), 1u);
  h.detector->onHealthCheckPassed("a:1", 1020);
  EXPECT_FALSE(h.detector->ejected("a:1"));
  EXPECT_EQ(h.active(), 0);
  ASSERT_EQ(h.events.size(), 2u);
  EXPECT_EQ(h.events[1], std::make_pair(std::string("a:1"), false));
  // Turned off: it waits for its ejection time.
  config::OutlierDetectionConfig off = shortTimes();
  off.successful_active_health_check_uneject_host = false;
  Harness k(off, {"a:1", "b:1"});
  k.detector->onReport("a:1", OutlierKind::kConsecutive5xx, 1000);
  k.detector->onHealthCheckPassed("a:1", 1020);
  EXPECT_TRUE(k.detector->ejected("a:1"));
  EXPECT_EQ(k.active(), 1);
}

TEST(OutlierDetector, BackoffGrowsAndShrinks) {
  Harness h(shortTimes(), {"a:1", "b:1"});
  uint64_t now = 0;
  // Ejected again as soon as it is back: 300, 600, 900, then capped at 1000.
  for (uint64_t expected : {300u, 600u, 900u, 1000u, 1000u}) {
    h.detector->onReport("a:1", OutlierKind::kConsecutive5xx, now);
    ASSERT_TRUE(h.detector->ejected("a:1"));
    h.detector->onInterval(now + expected - 1);
    EXPECT_TRUE(h.detector->ejected("a:1")) << expected;
    now += expected;
    h.detector->onInterval(now);
    EXPECT_FALSE(h.detector->ejected("a:1")) << expected;
  }
  // Envoy's back-off grew to 5 and stops there (5 * 300 >= 1000 + 300).
  // Each interval spent healthy, from one interval after it came back,
  // lowers it by one.
  h.detector->onInterval(now + 50);   // Less than an interval since it came back.
  h.detector->onInterval(now + 100);  // 5 -> 4
  h.detector->onInterval(now + 200);  // 4 -> 3
  h.detector->onInterval(now + 300);  // 3 -> 2
  now += 300;
  h.detector->onReport("a:1", OutlierKind::kConsecutive5xx, now);  // 2 -> 3: 900 ms.
  h.detector->onInterval(now + 899);
  EXPECT_TRUE(h.detector->ejected("a:1"));
  h.detector->onInterval(now + 900);
  EXPECT_FALSE(h.detector->ejected("a:1"));
}

TEST(OutlierDetector, MaxEjectionPercentOverflows) {
  config::OutlierDetectionConfig c = shortTimes();
  c.max_ejection_percent = 50;
  Harness h(c, {"a:1", "b:1", "c:1", "d:1"});
  for (const char* a : {"a:1", "b:1", "c:1"}) {
    h.detector->onReport(a, OutlierKind::kConsecutiveGatewayFailure, 0);
  }
  // enforcing_consecutive_gateway_failure defaults to 0: detected, not ejected.
  EXPECT_EQ(h.counter("ejections_detected_consecutive_gateway_failure"), 3u);
  EXPECT_EQ(h.counter("ejections_enforced_total"), 0u);
  EXPECT_EQ(h.detector->ejectedCount(), 0u);
  for (const char* a : {"a:1", "b:1", "c:1"}) {
    h.detector->onReport(a, OutlierKind::kConsecutive5xx, 0);
  }
  EXPECT_EQ(h.detector->ejectedCount(), 2u);
  EXPECT_EQ(h.counter("ejections_overflow"), 1u);
  EXPECT_FALSE(h.detector->ejected("c:1"));
}

TEST(OutlierDetector, EnforcingPercentDraws) {
  config::OutlierDetectionConfig c = shortTimes();
  c.enforcing_consecutive_local_origin_failure = 30;
  Harness h(c, {"a:1", "b:1"});
  h.draw = 30;  // 30 % 100 is not below 30: not enforced.
  h.detector->onReport("a:1", OutlierKind::kConsecutiveLocalOriginFailure, 0);
  EXPECT_FALSE(h.detector->ejected("a:1"));
  EXPECT_EQ(h.counter("ejections_detected_consecutive_local_origin_failure"), 1u);
  h.draw = 129;  // 29: enforced.
  h.detector->onReport("a:1", OutlierKind::kConsecutiveLocalOriginFailure, 0);
  EXPECT_TRUE(h.detector->ejected("a:1"));
  EXPECT_EQ(h.counter("ejections_enforced_consecutive_local_origin_failure"), 1u);
}

TEST(OutlierDetector, HostsLeavingAndComing) {
  Harness h(shortTimes(), {"a:1", "b:1"});
  h.detector->onReport("a:1", OutlierKind::kConsecutive5xx, 0);
  EXPECT_EQ(h.active(), 1);
  h.detector->setHosts({"b:1", "c:1"});  // The ejected host left.
  EXPECT_EQ(h.active(), 0);
  EXPECT_EQ(h.detector->ejectedCount(), 0u);
  h.detector->onReport("a:1", OutlierKind::kConsecutive5xx, 0);  // Too late: ignored.
  EXPECT_EQ(h.counter("ejections_detected_consecutive_5xx"), 1u);
  h.detector->onReport("c:1", OutlierKind::kConsecutive5xx, 0);
  EXPECT_TRUE(h.detector->ejected("c:1"));
  h.detector->setHosts({"b:1", "c:1", "d:1"});  // A kept host keeps its ejection.
  EXPECT_TRUE(h.detector->ejected("c:1"));
  EXPECT_EQ(h.active(), 1);
  h.detector.reset();  // A detector that goes takes its ejections off the gauge.
  EXPECT_EQ(h.active(), 0);
}

TEST(OutlierRules, SuccessRateThreshold) {
  // Envoy's example: mean 90, standard deviation 20, factor 1.9.
  double mean = 0;
  EXPECT_DOUBLE_EQ(successRateThreshold({50, 100, 100, 100, 100}, 1.9, mean), 52);
  EXPECT_DOUBLE_EQ(mean, 90);
  EXPECT_DOUBLE_EQ(successRateThreshold({100, 100}, 1.9, mean), 100);
}

std::map<std::string, RequestCounts> counts(
    std::initializer_list<std::pair<const char*, RequestCounts>> list) {
  std::map<std::string, RequestCounts> out;
  for (const auto& [a, c] : list) out[a] = c;
  return out;
}

TEST(OutlierDetector, SuccessRate) {
  Harness h(shortTimes(), {"a:1", "b:1", "c:1", "d:1", "e:1"});
  auto good = RequestCounts{100, 100, 0, 0};
  // Too few requests on one host (99 < 100): four hosts count, fewer than 5.
  h.detector->onInterval(
      0,
      counts({{"a:1", {99, 0, 0, 0}}, {"b:1", good}, {"c:1", good}, {"d:1", good}, {"e:1", good}}));
  EXPECT_EQ(h.detector->ejectedCount(), 0u);
  h.detector->onInterval(
      100,
      counts(
          {{"a:1", {100, 50, 0, 0}}, {"b:1", good}, {"c:1", good}, {"d:1", good}, {"e:1", good}}));
  EXPECT_TRUE(h.detector->ejected("a:1"));
  EXPECT_EQ(h.detector->ejectedCount(), 1u);
  // What /clusters shows: Envoy's example, mean 90, threshold 52.
  EXPECT_DOUBLE_EQ(h.detector->successRateAverage(false), 90);
  EXPECT_DOUBLE_EQ(h.detector->successRateEjectionThreshold(false), 52);
  EXPECT_DOUBLE_EQ(h.detector->successRateAverage(true), -1);
  EXPECT_DOUBLE_EQ(h.detector->successRate("a:1", false), 50);
  EXPECT_DOUBLE_EQ(h.detector->successRate("b:1", false), 100);
  EXPECT_DOUBLE_EQ(h.detector->successRate("b:1", true), -1);
  EXPECT_EQ(h.counter("ejections_detected_success_rate"), 1u);
  EXPECT_EQ(h.counter("ejections_enforced_success_rate"), 1u);
  EXPECT_EQ(h.counter("ejections_success_rate"), 1u);
  EXPECT_EQ(h.counter("ejections_total"), 1u);
  // Local-origin results are judged apart.
  EXPECT_EQ(h.counter("ejections_detected_local_origin_success_rate"), 0u);
}

TEST(OutlierDetector, FailurePercentage) {
  config::OutlierDetectionConfig c = shortTimes();
  c.enforcing_success_rate = 0;
  c.enforcing_failure_percentage_local_origin = 100;
  c.failure_percentage_minimum_hosts = 2;
  c.failure_percentage_request_volume = 10;
  Harness h(c, {"a:1", "b:1"});
  // 84% failures: under the threshold (85).
  h.detector->onInterval(0, counts({{"a:1", {0, 0, 100, 16}}, {"b:1", {0, 0, 100, 100}}}));
  EXPECT_EQ(h.detector->ejectedCount(), 0u);
  h.detector->onInterval(100, counts({{"a:1", {0, 0, 100, 15}}, {"b:1", {0, 0, 100, 100}}}));
  EXPECT_TRUE(h.detector->ejected("a:1"));
  EXPECT_EQ(h.counter("ejections_detected_local_origin_failure_percentage"), 1u);
  EXPECT_EQ(h.counter("ejections_enforced_local_origin_failure_percentage"), 1u);
  EXPECT_EQ(h.counter("ejections_detected_failure_percentage"), 0u);
}

}  // namespace
}  // namespace skiff::upstream
