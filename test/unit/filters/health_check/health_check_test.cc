#include "filters/health_check/health_check.h"

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <map>

#include "envoy/extensions/filters/http/health_check/v3/health_check.pb.h"

namespace skiff::filters {
namespace {

Result<HealthCheckSettings> compile(const std::string& json) {
  envoy::extensions::filters::http::health_check::v3::HealthCheck proto;
  auto st = google::protobuf::util::JsonStringToMessage(json, &proto);
  EXPECT_TRUE(st.ok()) << st.ToString() << "\n" << json;
  return compileHealthCheckSettings(proto, "hc");
}

HealthCheckSettings mustCompile(const std::string& json) {
  auto r = compile(json);
  EXPECT_TRUE(r.isOk()) << (r.isOk() ? "" : r.status().message());
  return r.isOk() ? std::move(r.value()) : HealthCheckSettings{};
}

// judgeClusters against a fixed table of clusters.
std::string_view judge(const HealthCheckSettings& s,
                       const std::map<std::string, ClusterMembership>& clusters) {
  return judgeClusters(s, [&](const std::string& name) -> std::optional<ClusterMembership> {
    auto it = clusters.find(name);
    if (it == clusters.end()) return std::nullopt;
    return it->second;
  });
}

TEST(HealthCheckSettingsTest, CompilesHeadersAndPercentages) {
  auto s = mustCompile(R"({"pass_through_mode": true,
      "headers": [{"name": ":path", "string_match": {"exact": "/healthz"}}],
      "cluster_min_healthy_percentages": {"b": {"value": 50.9}, "a": {"value": 100}}})");
  EXPECT_TRUE(s.pass_through);
  ASSERT_EQ(s.headers.size(), 1u);
  EXPECT_EQ(s.headers[0].name, ":path");
  // Sorted by name, each truncated to a whole percent as Envoy does.
  ASSERT_EQ(s.cluster_min_healthy.size(), 2u);
  EXPECT_EQ(s.cluster_min_healthy[0], (std::pair<std::string, uint64_t>{"a", 100}));
  EXPECT_EQ(s.cluster_min_healthy[1], (std::pair<std::string, uint64_t>{"b", 50}));
}

TEST(HealthCheckSettingsTest, RefusesWhatEnvoyRefuses) {
  auto missing = compile(R"({"headers": []})");
  ASSERT_FALSE(missing.isOk());
  EXPECT_EQ(missing.status().message(), "hc.pass_through_mode: is required");
  auto over = compile(
      R"({"pass_through_mode": false, "cluster_min_healthy_percentages": {"c": {"value": 100.5}}})");
  ASSERT_FALSE(over.isOk());
  EXPECT_EQ(over.status().message(),
            "hc.cluster_min_healthy_percentages[\"c\"].value: must be within [0, 100]");
}

TEST(HealthCheckJudgeTest, NoClustersListedIsOk) {
  auto s = mustCompile(R"({"pass_through_mode": false})");
  EXPECT_EQ(judge(s, {}), "health_check_ok");
}

TEST(HealthCheckJudgeTest, EnoughHealthyHostsInEveryCluster) {
  auto s = mustCompile(R"({"pass_through_mode": false,
      "cluster_min_healthy_percentages": {"a": {"value": 50}, "b": {"value": 100}}})");
  EXPECT_EQ(judge(s, {{"a", {4, 2}}, {"b", {3, 3}}}), "health_check_ok_cluster_healthy");
  // 1 of 3 healthy is 33%, short of 50% (whole-number arithmetic, as Envoy's).
  EXPECT_EQ(judge(s, {{"a", {3, 1}}, {"b", {3, 3}}}), "health_check_failed_cluster_unhealthy");
  EXPECT_EQ(judge(s, {{"a", {4, 2}}, {"b", {3, 2}}}), "health_check_failed_cluster_unhealthy");
}

TEST(HealthCheckJudgeTest, MissingAndEmptyClusters) {
  auto s = mustCompile(R"({"pass_through_mode": false,
      "cluster_min_healthy_percentages": {"a": {"value": 10}}})");
  EXPECT_EQ(judge(s, {}), "health_check_failed_no_cluster_found");
  EXPECT_EQ(judge(s, {{"a", {0, 0}}}), "health_check_failed_cluster_empty");
  // An empty cluster of which 0% is wanted passes.
  auto zero = mustCompile(R"({"pass_through_mode": false,
      "cluster_min_healthy_percentages": {"a": {"value": 0.9}}})");
  EXPECT_EQ(judge(zero, {{"a", {0, 0}}}), "health_check_ok_cluster_healthy");
}

}  // namespace
}  // namespace skiff::filters
