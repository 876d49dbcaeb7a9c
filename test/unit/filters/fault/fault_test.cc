#include "filters/fault/fault.h"

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include "envoy/extensions/filters/http/fault/v3/fault.pb.h"

namespace skiff::filters {
namespace {

using std::chrono::milliseconds;

Result<std::shared_ptr<const FaultSettings>> compile(const std::string& json) {
  envoy::extensions::filters::http::fault::v3::HTTPFault proto;
  auto st = google::protobuf::util::JsonStringToMessage(json, &proto);
  EXPECT_TRUE(st.ok()) << st.ToString() << "\n" << json;
  return compileFaultSettings(proto, "fault");
}

std::shared_ptr<const FaultSettings> mustCompile(const std::string& json) {
  auto r = compile(json);
  EXPECT_TRUE(r.isOk()) << (r.isOk() ? "" : r.status().message());
  return r.isOk() ? r.value() : nullptr;
}

// A request's headers (HeaderMap is not copyable: it lives in its arena).
std::unique_ptr<HeaderMap> request(std::vector<std::pair<std::string, std::string>> extra = {}) {
  auto h = std::make_unique<HeaderMap>();
  h->addCopy(":method", "GET");
  h->addCopy(":path", "/");
  h->addCopy(":authority", "a");
  for (auto& [k, v] : extra) h->addCopy(k, v);
  return h;
}

TEST(FaultSettingsTest, FixedAbortAndDelayByPercentage) {
  auto s = mustCompile(R"({"abort": {"http_status": 503, "percentage": {"numerator": 25}},
                           "delay": {"fixed_delay": "2s", "percentage": {"numerator": 10}}})");
  ASSERT_TRUE(s);
  auto h_owner = request();
  const HeaderMap& h = *h_owner;
  int aborts = 0;
  int delays = 0;
  for (uint64_t r = 0; r < 100; ++r) {
    if (auto a = s->abortFor(h, r)) {
      ++aborts;
      EXPECT_EQ(a->http_status, 503u);
      EXPECT_EQ(a->grpc_status, -1);
    }
    if (auto d = s->delayFor(h, r)) {
      ++delays;
      EXPECT_EQ(*d, milliseconds(2000));
    }
  }
  EXPECT_EQ(aborts, 25);
  EXPECT_EQ(delays, 10);
  // A fixed fault ignores the header controls.
  auto with_owner = request({{"x-envoy-fault-abort-request", "404"},
                             {"x-envoy-fault-abort-request-percentage", "0"},
                             {"x-envoy-fault-delay-request", "5"}});
  const HeaderMap& with = *with_owner;
  EXPECT_EQ(s->abortFor(with, 0)->http_status, 503u);
  EXPECT_EQ(*s->delayFor(with, 0), milliseconds(2000));
}

TEST(FaultSettingsTest, UnsetPercentageInjectsNothing) {
  auto s = mustCompile(R"({"abort": {"http_status": 500}})");
  ASSERT_TRUE(s);
  auto h_owner = request();
  const HeaderMap& h = *h_owner;
  for (uint64_t r = 0; r < 100; ++r) EXPECT_FALSE(s->abortFor(h, r));
}

TEST(FaultSettingsTest, GrpcAbortAnswers200WithTheGrpcStatus) {
  auto s = mustCompile(R"({"abort": {"grpc_status": 14, "percentage": {"numerator": 100}}})");
  ASSERT_TRUE(s);
  auto a = s->abortFor(*request(), 7);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->http_status, 200u);
  EXPECT_EQ(a->grpc_status, 14);
}

TEST(FaultSettingsTest, HeaderAbortReadsTheRequestsHeaders) {
  auto s = mustCompile(R"({"abort": {"header_abort": {}, "percentage": {"numerator": 100}}})");
  ASSERT_TRUE(s);
  EXPECT_FALSE(s->abortFor(*request(), 0));  // No header: no abort.
  EXPECT_EQ(s->abortFor(*request({{"x-envoy-fault-abort-request", "429"}}), 0)->http_status, 429u);
  // Outside [200, 600), or not a number: no HTTP abort.
  EXPECT_FALSE(s->abortFor(*request({{"x-envoy-fault-abort-request", "600"}}), 0));
  EXPECT_FALSE(s->abortFor(*request({{"x-envoy-fault-abort-request", "199"}}), 0));
  EXPECT_FALSE(s->abortFor(*request({{"x-envoy-fault-abort-request", "5o3"}}), 0));
  auto g = s->abortFor(*request({{"x-envoy-fault-abort-grpc-request", "8"}}), 0);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->http_status, 200u);
  EXPECT_EQ(g->grpc_status, 8);
  // Both: the HTTP status wins.
  auto both = s->abortFor(
      *request({{"x-envoy-fault-abort-request", "502"}, {"x-envoy-fault-abort-grpc-request", "8"}}),
      0);
  EXPECT_EQ(both->http_status, 502u);
  EXPECT_EQ(both->grpc_status, -1);
  // The percentage header lowers the configured 100%.
  auto half_owner = request(
      {{"x-envoy-fault-abort-request", "503"}, {"x-envoy-fault-abort-request-percentage", "50"}});
  const HeaderMap& half = *half_owner;
  EXPECT_TRUE(s->abortFor(half, 49));
  EXPECT_FALSE(s->abortFor(half, 50));
}

TEST(FaultSettingsTest, HeaderDelayReadsMilliseconds) {
  auto s = mustCompile(R"({"delay": {"header_delay": {}, "percentage": {"numerator": 40}}})");
  ASSERT_TRUE(s);
  EXPECT_FALSE(s->delayFor(*request(), 0));
  EXPECT_EQ(*s->delayFor(*request({{"x-envoy-fault-delay-request", "250"}}), 0), milliseconds(250));
  EXPECT_FALSE(s->delayFor(*request({{"x-envoy-fault-delay-request", "0"}}), 0));  // > 0 ms only.
  EXPECT_FALSE(
      s->delayFor(*request({{"x-envoy-fault-delay-request", "250"}}), 40));  // Not sampled.
  // The percentage header can lower it, never raise it.
  auto more_owner = request(
      {{"x-envoy-fault-delay-request", "9"}, {"x-envoy-fault-delay-request-percentage", "90"}});
  const HeaderMap& more = *more_owner;
  EXPECT_FALSE(s->delayFor(more, 60));
  auto less_owner = request(
      {{"x-envoy-fault-delay-request", "9"}, {"x-envoy-fault-delay-request-percentage", "10"}});
  const HeaderMap& less = *less_owner;
  EXPECT_TRUE(s->delayFor(less, 9));
  EXPECT_FALSE(s->delayFor(less, 10));
}

TEST(FaultSettingsTest, MatchersAndLimitsAreKept) {
  auto s = mustCompile(R"({"abort": {"http_status": 500, "percentage": {"numerator": 1}},
                           "upstream_cluster": "c1", "downstream_nodes": ["n1", "n2"],
                           "headers": [{"name": "X-Chaos", "present_match": true}],
                           "max_active_faults": 3, "disable_downstream_cluster_stats": true,
                           "abort_percent_runtime": "ignored.key"})");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->upstream_cluster, "c1");
  EXPECT_EQ(s->downstream_nodes, (std::vector<std::string>{"n1", "n2"}));
  ASSERT_EQ(s->headers.size(), 1u);
  EXPECT_TRUE(s->headers[0].matches(*request({{"x-chaos", "1"}})));
  EXPECT_FALSE(s->headers[0].matches(*request()));
  EXPECT_EQ(s->max_active_faults, 3u);
  EXPECT_TRUE(s->disable_downstream_cluster_stats);
}

TEST(FaultSettingsTest, RefusesValuesEnvoyRefuses) {
  auto bad = compile(R"({"abort": {"http_status": 600}})");
  ASSERT_FALSE(bad.isOk());
  EXPECT_EQ(bad.status().message(), "fault.abort.http_status: 600 is not in [200, 600)");
  auto none = compile(R"({"abort": {"percentage": {"numerator": 1}}})");
  ASSERT_FALSE(none.isOk());
  EXPECT_EQ(none.status().message(),
            "fault.abort: one of http_status, grpc_status, header_abort is required");
  auto zero = compile(R"({"delay": {"fixed_delay": "0s"}})");
  ASSERT_FALSE(zero.isOk());
  EXPECT_EQ(zero.status().message(), "fault.delay.fixed_delay: must be greater than 0");
}

}  // namespace
}  // namespace skiff::filters
