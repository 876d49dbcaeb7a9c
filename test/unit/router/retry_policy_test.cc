#include "proxy/router/retry_policy.h"

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include "envoy/config/route/v3/route.pb.h"
#include "envoy/config/route/v3/route_components.pb.h"
#include "proxy/router/route_table.h"

namespace skiff::router {
namespace {

Result<RetryPolicy> compileJson(const std::string& json) {
  envoy::config::route::v3::RetryPolicy p;
  auto st = google::protobuf::util::JsonStringToMessage(json, &p);
  EXPECT_TRUE(st.ok()) << st.ToString() << "\n" << json;
  return RetryPolicy::compile(p, "rp");
}

const std::vector<HeaderMatch> kNoHeaders;

HeaderMapPtr makeResponse(std::string_view status, std::string_view grpc_status = {}) {
  auto h = std::make_unique<HeaderMap>();
  h->addView(WellKnownHeader::kStatus, status);
  if (!grpc_status.empty()) h->addView(WellKnownHeader::kGrpcStatus, grpc_status);
  return h;
}

TEST(RetryPolicyTest, ParsesRetryOnLikeEnvoy) {
  using namespace retry_on;
  EXPECT_EQ(parseRetryOn("5xx"), k5xx);
  EXPECT_EQ(
      parseRetryOn("connect-failure,refused-stream,unavailable,cancelled,"
                   "retriable-status-codes"),
      kConnectFailure | kRefusedStream | kGrpcUnavailable | kGrpcCancelled | kRetriableStatusCodes);
  EXPECT_EQ(parseRetryOn(" gateway-error , reset,retriable-4xx"),
            kGatewayError | kReset | kRetriable4xx);
  EXPECT_EQ(parseRetryOn("deadline-exceeded,internal,resource-exhausted,envoy-ratelimited"),
            kGrpcDeadlineExceeded | kGrpcInternal | kGrpcResourceExhausted | kEnvoyRateLimited);
  // Envoy ignores names it does not know.
  EXPECT_EQ(parseRetryOn("nonsense,,5xx"), k5xx);
  std::string unsupported;
  EXPECT_EQ(parseRetryOn("5xx,reset-before-request,http3-post-connect-failure", &unsupported),
            k5xx);
  EXPECT_EQ(unsupported, "reset-before-request");
  EXPECT_EQ(parseRetryOn("retriable-headers"), kRetriableHeaders);
}

TEST(RetryPolicyTest, ResponseConditions) {
  using namespace retry_on;
  const std::vector<uint32_t> none;
  EXPECT_TRUE(RetryPolicy::retriableResponse(k5xx, none, kNoHeaders, *makeResponse("503")));
  EXPECT_TRUE(RetryPolicy::retriableResponse(k5xx, none, kNoHeaders, *makeResponse("500")));
  EXPECT_FALSE(RetryPolicy::retriableResponse(k5xx, none, kNoHeaders, *makeResponse("404")));
  EXPECT_FALSE(
      RetryPolicy::retriableResponse(kGatewayError, none, kNoHeaders, *makeResponse("500")));
  EXPECT_TRUE(
      RetryPolicy::retriableResponse(kGatewayError, none, kNoHeaders, *makeResponse("502")));
  EXPECT_TRUE(
      RetryPolicy::retriableResponse(kGatewayError, none, kNoHeaders, *makeResponse("504")));
  EXPECT_TRUE(
      RetryPolicy::retriableResponse(kRetriable4xx, none, kNoHeaders, *makeResponse("409")));
  EXPECT_FALSE(
      RetryPolicy::retriableResponse(kRetriable4xx, none, kNoHeaders, *makeResponse("429")));
  const std::vector<uint32_t> codes = {418, 503};
  EXPECT_TRUE(RetryPolicy::retriableResponse(kRetriableStatusCodes, codes, kNoHeaders,
                                             *makeResponse("418")));
  EXPECT_FALSE(RetryPolicy::retriableResponse(kRetriableStatusCodes, codes, kNoHeaders,
                                              *makeResponse("500")));
  // The codes count only under retriable-status-codes.
  EXPECT_FALSE(
      RetryPolicy::retriableResponse(kConnectFailure, codes, kNoHeaders, *makeResponse("418")));
  // gRPC: grpc-status in the response headers.
  EXPECT_TRUE(RetryPolicy::retriableResponse(kGrpcUnavailable, none, kNoHeaders,
                                             *makeResponse("200", "14")));
  EXPECT_FALSE(RetryPolicy::retriableResponse(kGrpcUnavailable, none, kNoHeaders,
                                              *makeResponse("200", "13")));
  EXPECT_TRUE(
      RetryPolicy::retriableResponse(kGrpcInternal, none, kNoHeaders, *makeResponse("200", "13")));
  EXPECT_TRUE(
      RetryPolicy::retriableResponse(kGrpcCancelled, none, kNoHeaders, *makeResponse("200", "1")));
  EXPECT_TRUE(RetryPolicy::retriableResponse(kGrpcDeadlineExceeded, none, kNoHeaders,
                                             *makeResponse("200", "4")));
  EXPECT_TRUE(RetryPolicy::retriableResponse(kGrpcResourceExhausted, none, kNoHeaders,
                                             *makeResponse("200", "8")));
  EXPECT_FALSE(RetryPolicy::retriableResponse(kGrpc, none, kNoHeaders, *makeResponse("200", "0")));
  EXPECT_FALSE(RetryPolicy::retriableResponse(kGrpc, none, kNoHeaders, *makeResponse("200")));
  // An upstream Envoy's rate limit: only under envoy-ratelimited.
  HeaderMapPtr limited_ptr = makeResponse("503");
  HeaderMap& limited = *limited_ptr;
  limited.addView("x-envoy-ratelimited", "true");
  EXPECT_FALSE(RetryPolicy::retriableResponse(k5xx, none, kNoHeaders, limited));
  EXPECT_TRUE(RetryPolicy::retriableResponse(kEnvoyRateLimited, none, kNoHeaders, limited));
  EXPECT_FALSE(
      RetryPolicy::retriableResponse(kEnvoyRateLimited, none, kNoHeaders, *makeResponse("503")));
}

TEST(RetryPolicyTest, RetriableHeadersMatchTheResponse) {
  using namespace retry_on;
  auto p = compileJson(R"({"retry_on": "retriable-headers", "retriable_headers": [
      {"name": "x-upstream-retry", "string_match": {"exact": "true"}},
      {"name": "x-backoff"}]})");
  ASSERT_TRUE(p.isOk()) << p.status().message();
  EXPECT_EQ(p->retry_on, kRetriableHeaders);
  const std::vector<uint32_t> none;
  auto retry = makeResponse("200");
  retry->addView("X-Upstream-Retry", "true");
  EXPECT_TRUE(RetryPolicy::retriableResponse(p->retry_on, none, p->retriable_headers, *retry));
  auto no = makeResponse("503");
  no->addView("x-upstream-retry", "false");
  EXPECT_FALSE(RetryPolicy::retriableResponse(p->retry_on, none, p->retriable_headers, *no));
  auto present = makeResponse("200");
  present->addView("x-backoff", "");
  EXPECT_TRUE(RetryPolicy::retriableResponse(p->retry_on, none, p->retriable_headers, *present));
  // The matchers count only under retriable-headers.
  EXPECT_FALSE(RetryPolicy::retriableResponse(k5xx, none, p->retriable_headers, *retry));
}

TEST(RetryPolicyTest, RetriableRequestHeadersGateTheRequest) {
  auto p = compileJson(R"({"retry_on": "5xx", "retriable_request_headers": [
      {"name": ":method", "string_match": {"exact": "GET"}},
      {"name": ":method", "string_match": {"exact": "HEAD"}}]})");
  ASSERT_TRUE(p.isOk()) << p.status().message();
  HeaderMap get;
  get.addView(":method", "GET");
  HeaderMap head;
  head.addView(":method", "HEAD");
  HeaderMap post;
  post.addView(":method", "POST");
  EXPECT_TRUE(p->retriableRequest(get));
  EXPECT_TRUE(p->retriableRequest(head));
  EXPECT_FALSE(p->retriableRequest(post));
  // None listed: every request may be retried.
  auto open = compileJson(R"({"retry_on": "5xx"})");
  EXPECT_TRUE(open->retriableRequest(post));
}

TEST(RetryPolicyTest, FailureConditions) {
  using namespace retry_on;
  using F = AttemptFailure;
  EXPECT_TRUE(RetryPolicy::retriableFailure(kConnectFailure, F::kConnectFailure));
  EXPECT_FALSE(RetryPolicy::retriableFailure(kConnectFailure, F::kReset));
  EXPECT_FALSE(RetryPolicy::retriableFailure(kConnectFailure, F::kPerTryTimeout));
  EXPECT_TRUE(RetryPolicy::retriableFailure(kRefusedStream, F::kRefusedStream));
  EXPECT_FALSE(RetryPolicy::retriableFailure(kRefusedStream, F::kReset));
  for (uint32_t on : {k5xx, kGatewayError, kReset}) {
    for (F failure : {F::kConnectFailure, F::kRefusedStream, F::kReset, F::kPerTryTimeout}) {
      EXPECT_TRUE(RetryPolicy::retriableFailure(on, failure));
    }
  }
  EXPECT_FALSE(RetryPolicy::retriableFailure(kRetriable4xx | kGrpc, F::kReset));
}

TEST(RetryPolicyTest, JitteredExponentialBackOff) {
  RetryPolicy p;  // base 25 ms, max 250 ms
  // Retry n waits below (2^n - 1) x 25 ms: 0-24, 0-74, 0-174, then capped.
  EXPECT_EQ(p.backOffMs(1, 24), 24u);
  EXPECT_EQ(p.backOffMs(1, 25), 0u);
  EXPECT_EQ(p.backOffMs(2, 74), 74u);
  EXPECT_EQ(p.backOffMs(3, 174), 174u);
  EXPECT_EQ(p.backOffMs(3, 175), 0u);
  EXPECT_EQ(p.backOffMs(4, 250), 250u);
  EXPECT_EQ(p.backOffMs(4, 251), 0u);
  for (uint32_t n = 1; n < 100; ++n) EXPECT_LE(p.backOffMs(n, UINT64_MAX - n), 250u);
}

TEST(RetryPolicyTest, CompilesIstiosDefault) {
  auto p = compileJson(R"({"retry_on": "connect-failure,refused-stream,unavailable,cancelled,)"
                       R"(retriable-status-codes", "num_retries": 2,)"
                       R"("retriable_status_codes": [503]})");
  ASSERT_TRUE(p.isOk()) << p.status().message();
  EXPECT_EQ(p.value().num_retries, 2u);
  EXPECT_EQ(p.value().retriable_status_codes, std::vector<uint32_t>{503});
  EXPECT_EQ(p.value().base_interval_ms, 25u);
  EXPECT_EQ(p.value().max_interval_ms, 250u);
  EXPECT_FALSE(p.value().previous_hosts);
}

TEST(RetryPolicyTest, CompilesPreviousHostsPredicate) {
  auto p = compileJson(
      R"({"retry_on": "5xx", "retry_host_predicate": [{"name": )"
      R"("envoy.retry_host_predicates.previous_hosts", "typed_config": {"@type": )"
      R"("type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}],)"
      R"("host_selection_retry_max_attempts": "5"})");
  ASSERT_TRUE(p.isOk()) << p.status().message();
  EXPECT_TRUE(p.value().previous_hosts);
  EXPECT_EQ(p.value().host_selection_max_attempts, 5u);
  auto by_name = compileJson(
      R"({"retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts"}]})");
  ASSERT_TRUE(by_name.isOk());
  EXPECT_TRUE(by_name.value().previous_hosts);
  EXPECT_EQ(by_name.value().host_selection_max_attempts, 1u);  // Envoy's default
}

TEST(RetryPolicyTest, Defaults) {
  auto p = compileJson(R"({"retry_on": "5xx"})");
  ASSERT_TRUE(p.isOk());
  EXPECT_EQ(p.value().num_retries, 1u);  // Envoy's default
  EXPECT_EQ(p.value().per_try_timeout.count(), 0);
  auto zero = compileJson(R"({"retry_on": "5xx", "num_retries": 0})");
  ASSERT_TRUE(zero.isOk());
  EXPECT_EQ(zero.value().num_retries, 0u);
}

TEST(RetryPolicyTest, BackOffAndPerTryTimeout) {
  auto p = compileJson(R"({"retry_on": "5xx", "per_try_timeout": "0.25s",)"
                       R"("per_try_idle_timeout": "0.125s",)"
                       R"("retry_back_off": {"base_interval": "0.1s"}})");
  ASSERT_TRUE(p.isOk());
  EXPECT_EQ(p.value().per_try_timeout.count(), 250);
  EXPECT_EQ(p.value().per_try_idle_timeout.count(), 125);
  EXPECT_EQ(p.value().base_interval_ms, 100u);
  EXPECT_EQ(p.value().max_interval_ms, 1000u);  // 10 x base
  auto q = compileJson(R"({"retry_back_off": {"base_interval": "0.1s", "max_interval": "3s"}})");
  ASSERT_TRUE(q.isOk());
  EXPECT_EQ(q.value().max_interval_ms, 3000u);
}

TEST(RetryPolicyTest, RefusesWhatItCannotHonour) {
  auto msg = [](const std::string& json) {
    auto p = compileJson(json);
    return p.isOk() ? std::string("(compiled)") : p.status().message();
  };
  EXPECT_EQ(msg(R"({"retry_on": "5xx,reset-before-request"})"),
            "rp.retry_on: 'reset-before-request' is not supported yet");
  EXPECT_EQ(msg(R"({"retriable_headers": [{"name": ""}]})"),
            "rp.retriable_headers[0].name: must not be empty");
  EXPECT_EQ(msg(R"({"retriable_request_headers": [{"name": ":method"}, {"name": "x",
                    "range_match": {"start": 5, "end": 1}}]})"),
            "rp.retriable_request_headers[1].range_match: start must be less than end");
  EXPECT_EQ(msg(R"({"retry_back_off": {"base_interval": "0.0001s"}})"),
            "rp.retry_back_off.base_interval: must be at least 1ms");
  EXPECT_EQ(msg(R"({"retry_back_off": {"base_interval": "1s", "max_interval": "0.5s"}})"),
            "rp.retry_back_off.max_interval: must not be less than base_interval");
  EXPECT_EQ(msg(R"({"per_try_timeout": "-1s"})"), "rp.per_try_timeout: must not be negative");
  EXPECT_EQ(msg(R"({"per_try_idle_timeout": "-1s"})"),
            "rp.per_try_idle_timeout: must not be negative");
  EXPECT_EQ(msg(R"({"retry_host_predicate": [{"name": "envoy.retry_host_predicates.canary"}]})"),
            "rp.retry_host_predicate[0]: 'envoy.retry_host_predicates.canary' is not supported "
            "yet (only envoy.retry_host_predicates.previous_hosts)");
}

TEST(RetryPolicyTest, RouteReplacesVirtualHostPolicy) {
  envoy::config::route::v3::RouteConfiguration config;
  auto st = google::protobuf::util::JsonStringToMessage(
      R"({"virtual_hosts": [{"name": "vh", "domains": ["*"],
           "retry_policy": {"retry_on": "5xx", "num_retries": 3},
           "routes": [
             {"match": {"prefix": "/own"},
              "route": {"cluster": "a", "retry_policy": {"retry_on": "reset"}}},
             {"match": {"prefix": "/d"}, "direct_response": {"status": 200}},
             {"match": {"prefix": "/"}, "route": {"cluster": "a"}}]},
          {"name": "plain", "domains": ["plain"],
           "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "a"}}]}]})",
      &config);
  ASSERT_TRUE(st.ok()) << st.ToString();
  auto table = RouteTable::compile(config, "rc");
  ASSERT_TRUE(table.isOk()) << table.status().message();
  auto match = [&](std::string_view authority, std::string_view path) {
    HeaderMap h;
    h.addView(WellKnownHeader::kMethod, "GET");
    h.addView(WellKnownHeader::kAuthority, authority);
    h.addView(WellKnownHeader::kPath, path);
    return table.value()->match(h, 0);
  };
  const RouteEntry* own = match("x", "/own");
  ASSERT_TRUE(own && own->retryPolicy());
  EXPECT_EQ(own->retryPolicy()->retry_on, retry_on::kReset);
  EXPECT_EQ(own->retryPolicy()->num_retries, 1u);  // Not merged with the host's 3.
  const RouteEntry* inherited = match("x", "/other");
  ASSERT_TRUE(inherited && inherited->retryPolicy());
  EXPECT_EQ(inherited->retryPolicy()->retry_on, retry_on::k5xx);
  EXPECT_EQ(inherited->retryPolicy()->num_retries, 3u);
  const RouteEntry* direct = match("x", "/d");
  ASSERT_TRUE(direct);
  EXPECT_EQ(direct->retryPolicy(), nullptr);
  const RouteEntry* plain = match("plain", "/");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->retryPolicy(), nullptr);
}

TEST(RetryPolicyTest, AttemptCountFlagsOfTheVirtualHost) {
  envoy::config::route::v3::RouteConfiguration config;
  auto st = google::protobuf::util::JsonStringToMessage(
      R"({"virtual_hosts": [
           {"name": "counts", "domains": ["counts"], "include_request_attempt_count": true,
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "a"}}]},
           {"name": "both", "domains": ["*"], "include_attempt_count_in_response": true,
            "retry_policy": {"retry_on": "5xx", "num_retries": 4},
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "a"}}]}]})",
      &config);
  ASSERT_TRUE(st.ok()) << st.ToString();
  auto table = RouteTable::compile(config, "rc");
  ASSERT_TRUE(table.isOk()) << table.status().message();
  auto match = [&](std::string_view authority) {
    HeaderMap h;
    h.addView(WellKnownHeader::kMethod, "GET");
    h.addView(WellKnownHeader::kAuthority, authority);
    h.addView(WellKnownHeader::kPath, "/");
    return table.value()->match(h, 0);
  };
  const RouteEntry* counts = match("counts");
  ASSERT_TRUE(counts && counts->retryPolicy());
  EXPECT_EQ(counts->retryPolicy()->retry_on, 0u);  // Counts only: never retried.
  EXPECT_TRUE(counts->retryPolicy()->attempt_count_in_request);
  EXPECT_FALSE(counts->retryPolicy()->attempt_count_in_response);
  const RouteEntry* both = match("x");
  ASSERT_TRUE(both && both->retryPolicy());
  EXPECT_EQ(both->retryPolicy()->num_retries, 4u);
  EXPECT_FALSE(both->retryPolicy()->attempt_count_in_request);
  EXPECT_TRUE(both->retryPolicy()->attempt_count_in_response);
}

TEST(RetryPolicyTest, RouteTableNamesTheFieldPath) {
  envoy::config::route::v3::RouteConfiguration config;
  auto st = google::protobuf::util::JsonStringToMessage(
      R"({"virtual_hosts": [{"name": "vh", "domains": ["*"], "routes": [
           {"match": {"prefix": "/"},
            "route": {"cluster": "a", "retry_policy": {"retry_on": "reset-before-request"}}}]}]})",
      &config);
  ASSERT_TRUE(st.ok());
  auto table = RouteTable::compile(config, "rc");
  ASSERT_FALSE(table.isOk());
  EXPECT_EQ(table.status().message(),
            "rc.virtual_hosts[0].routes[0].route.retry_policy.retry_on: 'reset-before-request' is "
            "not supported yet");
}

}  // namespace
}  // namespace skiff::router
