#include "proxy/upstream/health_checker.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace skiff::upstream {
namespace {

using std::chrono::milliseconds;

TEST(HostHealthTest, FirstCheckDecidesAtOnce) {
  // Envoy: a host's first passing check makes it healthy whatever
  // healthy_threshold says.
  HostHealth h(/*failed=*/true);
  EXPECT_EQ(h.onSuccess(3), HcTransition::kChanged);
  EXPECT_FALSE(h.failed());
  // A first failing check of a failed host changes nothing.
  HostHealth f(true);
  EXPECT_EQ(f.onFailure(HcFailure::kNetwork, 2), HcTransition::kUnchanged);
  EXPECT_TRUE(f.failed());
  // After it, healthy_threshold passes in a row.
  EXPECT_EQ(f.onSuccess(3), HcTransition::kChangePending);
  EXPECT_EQ(f.onSuccess(3), HcTransition::kChangePending);
  EXPECT_EQ(f.onSuccess(3), HcTransition::kChanged);
  EXPECT_FALSE(f.failed());
}

TEST(HostHealthTest, PassesMustBeInARow) {
  HostHealth h(true);
  h.onFailure(HcFailure::kActive, 1);  // The first check.
  EXPECT_EQ(h.onSuccess(2), HcTransition::kChangePending);
  EXPECT_EQ(h.onFailure(HcFailure::kNetwork, 1), HcTransition::kUnchanged);
  EXPECT_EQ(h.onSuccess(2), HcTransition::kChangePending);
  EXPECT_EQ(h.onSuccess(2), HcTransition::kChanged);
}

TEST(HostHealthTest, NetworkAndRetriableFailuresCountToTheThreshold) {
  for (HcFailure counted :
       {HcFailure::kNetwork, HcFailure::kNetworkTimeout, HcFailure::kRetriable}) {
    HostHealth h(false);
    EXPECT_EQ(h.onFailure(counted, 3), HcTransition::kChangePending);
    EXPECT_EQ(h.onFailure(counted, 3), HcTransition::kChangePending);
    EXPECT_EQ(h.onFailure(counted, 3), HcTransition::kChanged);
    EXPECT_TRUE(h.failed());
  }
  // A pass in between starts the count again.
  HostHealth h(false);
  h.onFailure(HcFailure::kNetwork, 2);
  EXPECT_EQ(h.onSuccess(1), HcTransition::kUnchanged);
  EXPECT_EQ(h.onFailure(HcFailure::kNetwork, 2), HcTransition::kChangePending);
  EXPECT_FALSE(h.failed());
}

TEST(HostHealthTest, OtherFailuresFailAtOnce) {
  for (HcFailure at_once : {HcFailure::kActive, HcFailure::kPassive}) {
    HostHealth h(false);
    EXPECT_EQ(h.onFailure(at_once, 5), HcTransition::kChanged);
    EXPECT_TRUE(h.failed());
  }
}

config::HealthCheckConfig intervals() {
  config::HealthCheckConfig c;
  c.interval = milliseconds(10);
  c.unhealthy_interval = milliseconds(20);
  c.unhealthy_edge_interval = milliseconds(30);
  c.healthy_edge_interval = milliseconds(40);
  c.no_traffic_interval = milliseconds(50);
  c.no_traffic_healthy_interval = milliseconds(60);
  return c;
}

TEST(HealthCheckIntervalTest, EnvoysChoice) {
  const config::HealthCheckConfig c = intervals();
  // With traffic: by the check's result and whether a change is pending.
  EXPECT_EQ(healthCheckBaseMs(c, true, true, HcTransition::kUnchanged), 10u);
  EXPECT_EQ(healthCheckBaseMs(c, true, true, HcTransition::kChanged), 10u);
  EXPECT_EQ(healthCheckBaseMs(c, true, true, HcTransition::kChangePending), 40u);
  EXPECT_EQ(healthCheckBaseMs(c, true, false, HcTransition::kUnchanged), 20u);
  EXPECT_EQ(healthCheckBaseMs(c, true, false, HcTransition::kChanged), 20u);
  EXPECT_EQ(healthCheckBaseMs(c, true, false, HcTransition::kChangePending), 30u);
  // Without: no_traffic_healthy_interval only after a pass that settled.
  EXPECT_EQ(healthCheckBaseMs(c, false, true, HcTransition::kUnchanged), 60u);
  EXPECT_EQ(healthCheckBaseMs(c, false, true, HcTransition::kChangePending), 50u);
  EXPECT_EQ(healthCheckBaseMs(c, false, false, HcTransition::kChanged), 50u);
}

TEST(HealthCheckIntervalTest, JitterBounds) {
  config::HealthCheckConfig c;
  uint64_t r = 0;
  auto random = [&r] { return r; };
  EXPECT_EQ(healthCheckJitteredMs(c, 1000, random), 1000u);
  EXPECT_EQ(healthCheckJitteredMs(c, 0, random), 1u);  // Never 0 (Envoy: no live lock).
  c.interval_jitter_percent = 10;
  c.interval_jitter = milliseconds(50);
  for (r = 0; r < 400; r += 7) {
    const uint64_t ms = healthCheckJitteredMs(c, 1000, random);
    EXPECT_GE(ms, 1000u);
    EXPECT_LT(ms, 1000u + 100 + 50);
  }
  r = 99 + 100 * 49;  // Both at their largest: 99 of 100, 49 of 50.
  EXPECT_EQ(healthCheckJitteredMs(c, 1000, random), 1000u + 99 + 49);
}

TEST(HealthCheckRulesTest, StatusRanges) {
  const std::vector<std::pair<int64_t, int64_t>> ranges{{200, 201}, {400, 500}};
  EXPECT_TRUE(statusInRanges(200, ranges));
  EXPECT_FALSE(statusInRanges(201, ranges));
  EXPECT_TRUE(statusInRanges(404, ranges));
  EXPECT_FALSE(statusInRanges(500, ranges));
  EXPECT_FALSE(statusInRanges(0, ranges));
  EXPECT_FALSE(statusInRanges(200, {}));
}

TEST(HealthCheckRulesTest, TcpReceiveBlocksInOrder) {
  EXPECT_TRUE(tcpReceiveMatches("anything", {}));
  EXPECT_TRUE(tcpReceiveMatches("..pong..", {"po", "ng"}));
  EXPECT_FALSE(tcpReceiveMatches("ngpo", {"po", "ng"}));
  EXPECT_FALSE(tcpReceiveMatches("pon", {"po", "ng"}));  // Overlap does not count.
  EXPECT_TRUE(tcpReceiveMatches(std::string("\0\x01", 2), {std::string("\0", 1), "\x01"}));
}

TEST(HealthCheckedHostsTest, NewHostsAreFailedUntilSet) {
  HealthCheckedHosts& hosts = HealthCheckedHosts::instance();
  EXPECT_TRUE(hosts.failed("unit-c", "1.2.3.4:80"));
  hosts.set("unit-c", "1.2.3.4:80", false);
  EXPECT_FALSE(hosts.failed("unit-c", "1.2.3.4:80"));
  EXPECT_TRUE(hosts.failed("unit-c", "1.2.3.4:81"));
  EXPECT_TRUE(hosts.failed("unit-d", "1.2.3.4:80"));
  hosts.set("unit-c", "1.2.3.4:80", true);
  EXPECT_TRUE(hosts.failed("unit-c", "1.2.3.4:80"));
  hosts.set("unit-c", "1.2.3.4:80", false);
  hosts.forgetCluster("unit-c");
  EXPECT_TRUE(hosts.failed("unit-c", "1.2.3.4:80"));
}

}  // namespace
}  // namespace skiff::upstream
