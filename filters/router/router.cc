#include "filters/router/router.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <string>

#include "filters/router/grpc_timeout.h"
#include "proxy/access_log/formatter.h"
#include "proxy/access_log/response_code_details.h"
#include "proxy/buffer/object_pool.h"
#include "proxy/common/log.h"
#include "proxy/http/connection_manager.h"
#include "proxy/net/deadline_queue.h"
#include "proxy/router/request_overrides.h"
#include "proxy/router/retry_policy.h"
#include "proxy/router/route_table.h"
#include "proxy/upstream/cluster_manager.h"
#include "proxy/worker/worker.h"

namespace skiff::filters {

namespace {

// Sets name to ms in decimal (Envoy's x-envoy-* millisecond headers).
void setMilliseconds(HeaderMap& headers, WellKnownHeader name, uint64_t ms) {
  char text[20];
  auto [end, ec] = std::to_chars(text, text + sizeof(text), ms);
  headers.set(name, std::string_view(text, static_cast<size_t>(end - text)));
}

// What Envoy's router says about an upstream stream reset: the response
// flag (streamResetReasonToResponseFlag), the reason's words in the local
// reply body, and the response code details before or after the response
// started. A RST_STREAM with REFUSED_STREAM is Envoy's "remote refused
// stream reset", a reason of its own.
struct ResetWords {
  std::string_view flag;
  std::string_view reason;
  std::string_view details;
};

ResetWords resetWords(http::ResetReason reason, bool refused, bool response_started) {
  namespace d = access_log::details;
  switch (reason) {
    case http::ResetReason::kConnectionFailure:
      return {"UF", "remote connection failure", d::kResetBeforeStartedConnectionFailure};
    case http::ResetReason::kConnectionTermination:
      return {"UC", "connection termination",
              response_started ? d::kResetAfterStartedConnectionTermination
                               : d::kResetBeforeStartedConnectionTermination};
    case http::ResetReason::kProtocolError:
      return {"UPE", "protocol error",
              response_started ? d::kResetAfterStartedProtocolError
                               : d::kResetBeforeStartedProtocolError};
    case http::ResetReason::kLocalReset:
      return {
          "LR", "local reset",
          response_started ? d::kResetAfterStartedLocalReset : d::kResetBeforeStartedLocalReset};
    case http::ResetReason::kRemoteReset:
      break;
  }
  if (refused) {
    return {"UR", "remote refused stream reset",
            response_started ? d::kResetAfterStartedRefusedStream
                             : d::kResetBeforeStartedRefusedStream};
  }
  return {"UR", "remote reset",
          response_started ? d::kResetAfterStartedRemoteReset : d::kResetBeforeStartedRemoteReset};
}

// The start of Envoy's local reply body for a failed upstream request; after
// a retry it says the reason is the latest one.
std::string resetBody(bool retried) {
  return retried ? "upstream connect error or disconnect/reset before headers. retried and the "
                   "latest reset reason: "
                 : "upstream connect error or disconnect/reset before headers. reset reason: ";
}

using upstream::PoolFailure;
using upstream::UpstreamClient;

// How much request body the router holds: while the upstream connection is
// coming (then it stops reading the downstream), and for a retry (past it,
// the request is not retried: Envoy's retry_or_shadow_abandoned). Envoy's
// default connection buffer limit.
constexpr size_t kRequestBufferLimit = 1024 * 1024;

// Envoy's response code details for a per-try timeout, and for a request
// whose body outgrew the retry buffer while no attempt was running.
constexpr std::string_view kUpstreamPerTryTimeout = "upstream_per_try_timeout";
constexpr std::string_view kUpstreamPerTryIdleTimeout = "upstream_per_try_idle_timeout";
constexpr std::string_view kRetryBufferExceeded = "request_payload_exceeded_retry_buffer_limit";
// ... and for an upstream stream that outlived its maximum duration.
constexpr std::string_view kUpstreamMaxStreamDurationReached =
    "upstream_max_stream_duration_reached";

// The policy of a request that has retry headers (x-envoy-retry-on, ...) or a
// per-try timeout header but whose route has no retry policy: Envoy's
// defaults, retrying on nothing but what the headers name.
const router::RetryPolicy kNoRetryPolicy;

// A route's retry policy applied to one request: made only for a route that
// has one (or a request whose override headers ask for retries or a per-try
// timeout), so a request without pays one pointer (pooled like the router).
struct RetryState {
  static void* operator new(size_t size) { return ObjectPool<RetryState, 1024>::take(size); }
  static void operator delete(void* p, size_t size) { ObjectPool<RetryState, 1024>::give(p, size); }

  RetryState(const router::RetryPolicy& p, Deadline::Callback on_backoff,
             Deadline::Callback on_per_try, Deadline::Callback on_per_try_idle,
             Deadline::Callback on_stream_duration, void* router)
      : policy(p),
        retry_on(p.retry_on),
        retries_left(p.num_retries),
        per_try_timeout(p.per_try_timeout),
        status_codes(&p.retriable_status_codes),
        headers(&p.retriable_headers),
        backoff(on_backoff, router),
        per_try(on_per_try, router),
        per_try_idle(on_per_try_idle, router),
        stream_duration_deadline(on_stream_duration, router) {}

  const router::RetryPolicy& policy;  // Lives in the route table the stream holds.
  // What this request does with it: the policy's, or as its override headers
  // changed them.
  uint32_t retry_on;  // retry_on bits
  uint32_t retries_left;
  std::chrono::milliseconds per_try_timeout;        // Zero: none.
  const std::vector<uint32_t>* status_codes;        // The policy's, or own_status_codes.
  std::vector<uint32_t> own_status_codes;           // With x-envoy-retriable-status-codes.
  const std::vector<router::HeaderMatch>* headers;  // The policy's, or own_headers.
  std::vector<router::HeaderMatch> own_headers;     // With x-envoy-retriable-header-names.
  uint32_t retries_done = 0;
  Deadline backoff;  // Armed between a failed attempt and the next.
  Deadline per_try;  // The running attempt's per_try_timeout.
  // The running attempt's per_try_idle_timeout, armed again by each
  // response byte.
  Deadline per_try_idle;
  // x-envoy-upstream-stream-duration-ms (zero: none): how long each
  // attempt's upstream stream may last from its connection on.
  std::chrono::milliseconds stream_duration{0};
  Deadline stream_duration_deadline;  // The running attempt's stream_duration.
  // The request body so far, for the next attempt: the same refcounted
  // slices the first attempt sends, so no byte is copied.
  BufferChain body;
  HeaderMap* trailers = nullptr;  // The request's trailers, once they came.
  // No more retries: the body outgrew the buffer, or a 1xx response went
  // downstream. Envoy drops its retry state then (no retry stats after).
  bool disabled = false;
  // This request holds one of the cluster's max_retries, from a retry's
  // decision to the next attempt's outcome (Envoy's retries resource).
  bool holds_retry = false;
  // previous_hosts: the hosts attempted (identity only, never dereferenced).
  std::vector<const upstream::Host*> tried;
};

// What shouldRetry decided.
enum class RetryDecision { kRetry, kNo, kLimitExceeded, kOverflow };

// Forwards one request to an upstream host and streams the response back.
// Its life: decodeHeaders picks cluster and host and asks the host's pool for
// a connection; request body that arrives before the connection waits here;
// the response comes back through StreamDecoder and leaves through the
// filter callbacks' encode side.
class RouterFilter : public HttpFilter,
                     public upstream::PoolCallbacks,
                     public http::StreamCallbacks,
                     public router::CookieSink {
 public:
  // Every request makes one: they come from a per-worker free list (a
  // malloc and a free per request cost 300 instructions), sized for 64
  // HTTP/2 connections of 100 streams (8,192 filters).
  static void* operator new(size_t size) { return ObjectPool<RouterFilter, 8192>::take(size); }
  static void operator delete(void* p, size_t size) {
    ObjectPool<RouterFilter, 8192>::give(p, size);
  }

  explicit RouterFilter(bool suppress_envoy_headers)
      : suppress_envoy_headers_(suppress_envoy_headers),
        response_(*this),
        route_deadline_([](void* self) { static_cast<RouterFilter*>(self)->onTimeout(); }, this),
        stream_deadline_([](void* self) { static_cast<RouterFilter*>(self)->onStreamTimeout(); },
                         this) {}
  ~RouterFilter() override { cleanup(); }

  void setCallbacks(FilterCallbacks& callbacks) override { cb_ = &callbacks; }

  FilterStatus decodeHeaders(HeaderMap& headers, bool end_stream) override {
    // Envoy's rq_total: every request the router sees (not those that an
    // earlier filter or the connection manager answered).
    cb_->connectionManagerStats().rq_total.inc();
    const router::RouteEntry* route = cb_->route();
    if (!route) {
      // Envoy's 404 for no route has an empty body (and so no grpc-message).
      cb_->sendLocalReply(404, "", "NR", access_log::details::kRouteNotFound);
      return FilterStatus::kContinue;
    }
    if (route->kind() == router::RouteEntry::Kind::kDirectResponse) {
      cb_->connectionManagerStats().rq_direct_response.inc();
      cb_->setResponseCodeDetails(access_log::details::kDirectResponse);
      sendDirect(*route);
      return FilterStatus::kContinue;
    }
    if (route->kind() == router::RouteEntry::Kind::kRedirect) {
      // Envoy's router counts a redirect route under rq_direct_response: its
      // redirects are direct response entries.
      cb_->connectionManagerStats().rq_direct_response.inc();
      cb_->setResponseCodeDetails(access_log::details::kDirectResponse);
      auto h = std::make_unique<HeaderMap>();
      h->addCopy(WellKnownHeader::kStatus, std::to_string(route->redirectStatus()));
      h->addCopy("location", route->redirectLocation(headers));
      route->finalizeResponseHeaders(*h);
      cb_->encodeHeaders(std::move(h), true);
      return FilterStatus::kContinue;
    }
    std::string_view cluster_name = route->clusterName(headers, cb_->worker().random());
    cluster_ = cluster_name.empty() ? nullptr : cb_->worker().clusterManager().get(cluster_name);
    if (!cluster_) {
      // Envoy: the route's cluster_not_found_response_code (503 by default)
      // with response flag NC (cluster_not_found) and an empty body.
      cb_->connectionManagerStats().no_cluster.inc();
      cb_->sendLocalReply(static_cast<int>(route->clusterNotFoundStatus()), "", "NC",
                          access_log::details::kClusterNotFound);
      return FilterStatus::kContinue;
    }
    access_log::StreamRecord* record = cb_->streamRecord();
    if (record) record->upstream_cluster = cluster_->name();
    host_ = cluster_->chooseHost(lbContext(*route, headers));
    if (!host_) {
      replyNoHealthyUpstream();
      return FilterStatus::kContinue;
    }
    if (record) record->upstream_host = host_->address();
    if (cluster_->active_requests >= cluster_->config().max_requests) {
      replyMaxRequestsOverflow();
      return FilterStatus::kContinue;
    }
    // An Upgrade or CONNECT that the connection manager let through: its
    // request and response data are a tunnel's two directions.
    std::string_view upgrade = cb_->upgradeType();
    tunnel_ = !upgrade.empty();
    tunnel_connect_ = upgrade == "CONNECT";
    upstream::Want want = cluster_->want(cb_->downstreamProtocol());
    // A CONNECT that this route terminates becomes a raw TCP connection;
    // any other goes on as a CONNECT, over HTTP/2 as RFC 9113 8.5's (the
    // codec sends only :method and :authority), and an Upgrade toward an
    // HTTP/2 upstream as RFC 8441's extended CONNECT.
    if (tunnel_connect_ && route->terminatesConnect()) want = upstream::Want::kTcp;
    request_headers_ = &headers;
    route_ = route;
    // Whether the request is gRPC matters only to routes with gRPC timeouts
    // or a maximum stream duration (its reply differs for gRPC).
    const router::RouteTimeouts& route_timeouts = route->timeouts();
    grpc_ = (route_timeouts.max_grpc_timeout || route_timeouts.has_max_stream_duration) &&
            isGrpcRequest(headers);
    RequestTimeouts timeouts = chooseTimeouts(route_timeouts, headers, grpc_);
    rewrite_grpc_timeout_ =
        grpc_ && route_timeouts.max_grpc_timeout && !route_timeouts.has_max_stream_duration;
    const router::RetryPolicy* policy = route->retryPolicy();
    if (headers.hasRouterOverrides()) [[unlikely]] {
      policy = takeOverrides(headers, route_timeouts, timeouts, policy);
    }
    if (!timeouts.upstream_grpc_timeout.empty()) {
      headers.set(WellKnownHeader::kGrpcTimeout, timeouts.upstream_grpc_timeout);
    }
    route->finalizeRequestHeaders(headers, !suppress_envoy_headers_);
    if (route->autoHostRewrite()) headers.set(WellKnownHeader::kAuthority, host_->address());
    timeout_ms_ = static_cast<uint64_t>(timeouts.route.count());
    if (timeout_ms_ != 0 && !suppress_envoy_headers_) {
      // Envoy's router tells the upstream the time it will wait: the route
      // timeout (a gRPC one included), on every request that has one. The
      // route's own timeout is text in the route table already, which the
      // stream holds: a view, no copy (70 instructions less per request).
      if (timeouts.route == route_timeouts.timeout) {
        headers.setView(WellKnownHeader::kXEnvoyExpectedRqTimeoutMs, route_timeouts.timeout_text);
      } else {
        setMilliseconds(headers, WellKnownHeader::kXEnvoyExpectedRqTimeoutMs, timeout_ms_);
      }
    }
    if (policy && !tunnel_) [[unlikely]] {
      startRetryState(*policy, headers);
    }
    if (end_stream) markRequestEnd();
    if (timeouts.stream) {
      // Counted from here, the stream's first filter callback (Envoy counts
      // from the request's headers). A grpc-timeout makes it a duration of
      // this request's own.
      cb_->worker().deadlines().armComputed(stream_deadline_,
                                            static_cast<uint64_t>(timeouts.stream->count()));
    }
    want_ = want;
    if (end_stream) startTimeout();
    startAttempt();
    return FilterStatus::kContinue;
  }

  FilterStatus decodeData(BufferChain& data, bool end_stream) override {
    if (end_stream) {
      markRequestEnd();
      startTimeout();
    }
    if (retry_ && !retry_->disabled && !finished_ && !bufferForRetry(data)) {
      return FilterStatus::kContinue;  // Answered: the body outgrew the retry buffer.
    }
    if (end_stream) {
      startPerTryTimeout();
      startPerTryIdleTimeout();
    }
    if (encoder_) {
      encoder_->encodeData(data, end_stream);
      if (end_stream && tunnel_response_done_) {
        upstreamDone();  // Both directions of the tunnel have ended.
      }
    } else if (!finished_) {
      // The connection is still coming: hold the body here. Past the buffer
      // limit, stop reading the downstream until the upstream takes it.
      pending_body_.move(data);
      if (pending_body_.length() > kRequestBufferLimit && !downstream_paused_) {
        downstream_paused_ = true;
        cb_->readDisableDownstream(true);
      }
    }
    return FilterStatus::kContinue;
  }

  FilterStatus decodeTrailers(HeaderMap& trailers) override {
    markRequestEnd();
    startTimeout();
    if (retry_) retry_->trailers = &trailers;
    startPerTryTimeout();
    startPerTryIdleTimeout();
    if (encoder_) {
      encoder_->encodeTrailers(trailers);
    } else {
      pending_trailers_ = &trailers;
    }
    return FilterStatus::kContinue;
  }

  FilterStatus encodeHeaders(HeaderMap&, bool) override { return FilterStatus::kContinue; }
  FilterStatus encodeData(BufferChain&, bool) override { return FilterStatus::kContinue; }
  FilterStatus encodeTrailers(HeaderMap&) override { return FilterStatus::kContinue; }

  void onDownstreamAboveWriteBufferHighWatermark() override {
    if (client_ && encoder_) encoder_->stream().readDisable(true);
    ++upstream_read_disabled_;
  }
  void onDownstreamBelowWriteBufferLowWatermark() override {
    if (upstream_read_disabled_ == 0) return;
    --upstream_read_disabled_;
    if (client_ && encoder_) encoder_->stream().readDisable(false);
  }

  void onDestroy() override { cleanup(); }

  // ---- PoolCallbacks
  void onPoolReady(UpstreamClient& client) override {
    waiting_for_pool_ = false;
    if (finished_) {
      client.release();
      return;
    }
    client_ = &client;
    host_->onLocalOrigin(upstream::LocalOrigin::kConnectSuccess);
    if (access_log::StreamRecord* r = cb_->streamRecord(); r && r->want_upstream_local_address) {
      r->upstream_local_address = client.localAddress();
    }
    encoder_ = &client.codec().newStream(response_);
    encoder_->stream().setCallbacks(this);
    for (int i = 0; i < upstream_read_disabled_; ++i) encoder_->stream().readDisable(true);
    if (retry_ && retry_->stream_duration.count() != 0) [[unlikely]] {
      cb_->worker().deadlines().arm(retry_->stream_duration_deadline,
                                    static_cast<uint64_t>(retry_->stream_duration.count()));
    }
    if (retry_ && !retry_->disabled) [[unlikely]] {
      sendBufferedRequest();
    } else {
      bool headers_end = request_end_ && pending_body_.empty() && !pending_trailers_;
      encoder_->encodeHeaders(*request_headers_, headers_end);
      if (!pending_body_.empty()) {
        encoder_->encodeData(pending_body_, request_end_ && !pending_trailers_);
      }
      if (pending_trailers_) encoder_->encodeTrailers(*pending_trailers_);
    }
    if (downstream_paused_) {
      downstream_paused_ = false;
      cb_->readDisableDownstream(false);
    }
    startPerTryTimeout();
    startPerTryIdleTimeout();
  }

  void onPoolFailure(PoolFailure reason, std::string_view transport_failure) override {
    waiting_for_pool_ = false;
    // An overflow is the cluster's, not the host's: Envoy does not count it.
    if (reason != PoolFailure::kOverflow)
      host_->onLocalOrigin(upstream::LocalOrigin::kConnectFailed);
    if (finished_) return;
    std::string_view retry_flag;  // ",URX" or ",UO" after the failure's own flag.
    if (retry_ && !retry_->disabled) {
      endAttempt(false);
      // Envoy never retries an overflow (but it is the retried attempt's outcome).
      RetryDecision d = shouldRetry(reason != PoolFailure::kOverflow &&
                                    router::RetryPolicy::retriableFailure(
                                        retry_->retry_on, router::AttemptFailure::kConnectFailure));
      if (d == RetryDecision::kRetry) return;
      retry_flag = retryFlag(d);
    }
    finished_ = true;
    stopTimeout();
    if (reason == PoolFailure::kOverflow) {
      cb_->sendLocalReply(503, "upstream overflow: max_pending_requests reached", "UO",
                          access_log::details::kResetBeforeStartedOverflow,
                          !suppress_envoy_headers_);
      return;
    }
    if (access_log::StreamRecord* r = cb_->streamRecord(); r && !transport_failure.empty()) {
      r->upstream_transport_failure_reason = transport_failure;  // Copy: failures only.
    }
    const bool timeout = reason == PoolFailure::kConnectTimeout;
    // Envoy's words: its reset reason, then the transport's failure if any.
    std::string body = resetBody(retried());
    body += timeout ? "connection timeout" : "remote connection failure";
    if (!transport_failure.empty()) {
      body += ", transport failure reason: ";
      body += transport_failure;
    }
    cb_->sendLocalReply(503, body, withFlag("UF", retry_flag),
                        timeout ? access_log::details::kResetBeforeStartedConnectionTimeout
                                : access_log::details::kResetBeforeStartedConnectionFailure);
  }

  // ---- The upstream response (through UpstreamResponse)
  void onUpstream1xxHeaders(HeaderMapPtr headers) {
    // Something went downstream: no attempt may follow (Envoy drops its
    // retry state on a 1xx).
    if (retry_) disableRetry();
    cb_->encode1xxHeaders(std::move(headers));
  }

  void onUpstreamHeaders(HeaderMapPtr headers, bool end_stream) {
    host_->onUpstreamResponse(*headers, *request_headers_);  // Retried or not, as Envoy's.
    if (retry_) [[unlikely]] {
      touchPerTryIdleTimeout();
      if (!retry_->disabled && retryFromHeaders(*headers, end_stream)) return;  // Never forwarded.
      if (retry_->policy.attempt_count_in_response) setAttemptCount(*headers);
    }
    // The route timeout runs on until the response is complete, as Envoy's.
    response_started_ = true;
    int status = headers->status();
    if (tunnel_ && (tunnel_connect_ ? (status >= 200 && status < 300) : status == 101)) {
      // The tunnel is open. The route timeout bounds a request/response
      // exchange, not a tunnel; stream_idle_timeout bounds an idle one.
      tunnel_open_ = true;
      stopTimeout();
    }
    countStatus(status);
    if (request_end_ && !suppress_envoy_headers_) {
      // Envoy's x-envoy-upstream-service-time: milliseconds from the end of
      // the downstream request to the upstream's response headers, only when
      // the request was complete (not for a premature response). Loop time,
      // which the worker has already: no clock read.
      setMilliseconds(*headers, WellKnownHeader::kXEnvoyUpstreamServiceTime,
                      uv_now(cb_->worker().loop()) - request_end_ms_);
    }
    if (route_) route_->finalizeResponseHeaders(*headers);
    if (!set_cookie_.empty()) [[unlikely]] {
      headers->addCopy("set-cookie", set_cookie_);
    }
    if (end_stream) upstreamDone();
    cb_->encodeHeaders(std::move(headers), end_stream);
  }

  void onUpstreamData(BufferChain& data, bool end_stream) {
    if (retry_) [[unlikely]]
      touchPerTryIdleTimeout();
    if (end_stream && tunnel_open_ && !request_end_) {
      // The upstream ended its direction (FIN). The downstream's goes on
      // until its own end; the connection is given back then.
      tunnel_response_done_ = true;
      cb_->encodeData(data, true);
      return;
    }
    if (end_stream) upstreamDone();
    cb_->encodeData(data, end_stream);
  }

  void onUpstreamTrailers(HeaderMapPtr trailers) {
    upstreamDone();
    cb_->encodeTrailers(std::move(trailers));
  }

  // ---- StreamCallbacks: the upstream stream
  void onResetStream(http::ResetReason reason, std::string_view detail) override {
    // Envoy counts any upstream reset as a failed connection, before or
    // after the response started.
    host_->onLocalOrigin(upstream::LocalOrigin::kConnectFailed);
    if (retry_) {
      retry_->stream_duration_deadline.cancel();
      retry_->per_try_idle.cancel();
    }
    UpstreamClient* client = client_;
    client_ = nullptr;
    encoder_ = nullptr;
    endRequestCount();
    if (client) client->abandon();
    const bool refused = detail == "REFUSED_STREAM";  // The HTTP/2 codec's error name.
    std::string_view retry_flag;                      // ",URX" or ",UO" after the reset's own flag.
    if (!finished_ && !response_started_ && retry_ && !retry_->disabled) {
      retry_->per_try.cancel();
      router::AttemptFailure failure = router::AttemptFailure::kReset;
      if (refused) {
        failure = router::AttemptFailure::kRefusedStream;
      } else if (reason == http::ResetReason::kConnectionFailure) {
        failure = router::AttemptFailure::kConnectFailure;
      }
      RetryDecision d =
          shouldRetry(router::RetryPolicy::retriableFailure(retry_->retry_on, failure));
      if (d == RetryDecision::kRetry) return;
      retry_flag = retryFlag(d);
    }
    stopTimeout();
    stream_deadline_.cancel();
    if (finished_) return;
    finished_ = true;
    const ResetWords words = resetWords(reason, refused, response_started_);
    if (response_started_) {
      cb_->connectionManagerStats().rq_reset_after_downstream_response_started.inc();
      // Too late for a clean answer: status 0 resets the downstream stream.
      cb_->sendLocalReply(0, "upstream reset after response started", words.flag, words.details);
      return;
    }
    // The codec's own detail (which Envoy's body does not carry) goes to the
    // debug log. Envoy answers a protocol error 502, anything else 503.
    if (!detail.empty()) SKIFF_LOG(kDebug, "upstream reset before headers: " + std::string(detail));
    const int status = reason == http::ResetReason::kProtocolError ? 502 : 503;
    cb_->sendLocalReply(status, resetBody(retried()) + std::string(words.reason),
                        withFlag(words.flag, retry_flag), words.details);
  }
  void onAboveWriteBufferHighWatermark() override {
    if (!downstream_paused_) {
      downstream_paused_ = true;
      cb_->readDisableDownstream(true);
    }
  }
  void onBelowWriteBufferLowWatermark() override {
    if (downstream_paused_) {
      downstream_paused_ = false;
      cb_->readDisableDownstream(false);
    }
  }

 private:
  // Receives the upstream response. A separate object because the filter's
  // decode* methods (the downstream request) share names with the codec's.
  class UpstreamResponse : public http::StreamDecoder {
   public:
    explicit UpstreamResponse(RouterFilter& router) : router_(router) {}
    void decode1xxHeaders(HeaderMapPtr h) override { router_.onUpstream1xxHeaders(std::move(h)); }
    void decodeHeaders(HeaderMapPtr h, bool end) override {
      router_.onUpstreamHeaders(std::move(h), end);
    }
    void decodeData(BufferChain& data, bool end) override { router_.onUpstreamData(data, end); }
    void decodeTrailers(HeaderMapPtr t) override { router_.onUpstreamTrailers(std::move(t)); }

   private:
    RouterFilter& router_;
  };

  void sendDirect(const router::RouteEntry& route) {
    auto h = std::make_unique<HeaderMap>();
    h->addCopy(WellKnownHeader::kStatus, std::to_string(route.directStatus()));
    const std::string& body = route.directBody();
    if (!body.empty()) {
      h->addView(WellKnownHeader::kContentType, "text/plain");
      h->addCopy(WellKnownHeader::kContentLength, std::to_string(body.size()));
    }
    route.finalizeResponseHeaders(*h);
    if (body.empty()) {
      cb_->encodeHeaders(std::move(h), true);
      return;
    }
    cb_->encodeHeaders(std::move(h), false);
    BufferChain data;
    data.appendCopy(body);  // Copy: the body lives in the route table.
    cb_->encodeData(data, true);
  }

  void markRequestEnd() {
    request_end_ = true;
    request_end_ms_ = uv_now(cb_->worker().loop());
  }

  void countStatus(int status) {
    auto& s = cluster_->stats();
    if (status >= 500) {
      s.upstream_rq_5xx.inc();
    } else if (status >= 400) {
      s.upstream_rq_4xx.inc();
    } else if (status >= 300) {
      s.upstream_rq_3xx.inc();
    } else if (status >= 200) {
      s.upstream_rq_2xx.inc();
    } else {
      s.upstream_rq_1xx.inc();
    }
  }

  // The upstream response is complete: the connection goes back to the pool.
  void upstreamDone() {
    finished_ = true;
    stopTimeout();
    stream_deadline_.cancel();
    endRequestCount();
    cluster_->stats().upstream_rq_completed.inc();
    if (client_) {
      encoder_->stream().setCallbacks(nullptr);
      UpstreamClient* client = client_;
      http::RequestEncoder* encoder = encoder_;
      client_ = nullptr;
      encoder_ = nullptr;
      if (request_end_) {
        client->release();
      } else {
        // The response ended before the request did: the rest of the request
        // is not sent (HTTP/2: RST_STREAM; HTTP/1: the connection closes).
        encoder->stream().resetStream(http::ResetReason::kLocalReset);
        client->abandon();
      }
    }
  }

  // Envoy's RouteAction.timeout "spans between the point at which the entire
  // downstream request (i.e. end-of-stream) has been processed and when the
  // upstream response has been completely processed": it starts when the
  // request is complete, whether or not the upstream connection is ready,
  // so the time to connect counts and a slow upload does not.
  void startTimeout() {
    if (timeout_ms_ == 0 || route_deadline_.armed() || finished_ || tunnel_open_) return;
    cb_->worker().deadlines().arm(route_deadline_, timeout_ms_);
  }

  void stopTimeout() { route_deadline_.cancel(); }

  void onTimeout() {
    if (finished_) return;
    finished_ = true;
    stream_deadline_.cancel();
    stopRetries();
    cluster_->stats().upstream_rq_timeout.inc();
    recordTimeout();
    if (waiting_for_pool_) {
      // Still waiting for a connection: the request never left.
      waiting_for_pool_ = false;
      host_->cancel(*this);
    }
    endRequestCount();
    abandonUpstream();
    replyTimeout("UT", access_log::details::kResponseTimeout);
  }

  // The stream's maximum duration (max_stream_duration, or a grpc-timeout
  // under grpc_timeout_header_max) is over. Envoy's connection manager
  // answers this one: 408 while the request is still arriving, else 504, and
  // for gRPC DEADLINE_EXCEEDED rather than the status mapped from the HTTP one.
  void onStreamTimeout() {
    if (finished_) return;
    finished_ = true;
    stopTimeout();
    stopRetries();
    if (waiting_for_pool_) {
      waiting_for_pool_ = false;
      host_->cancel(*this);
    }
    endRequestCount();
    abandonUpstream();
    constexpr std::string_view kDetails = "downstream duration timeout";
    if (response_started_) {
      cb_->sendLocalReply(0, kDetails, "", access_log::details::kMaxDurationTimeout);
    } else if (grpc_) {
      cb_->setResponseCodeDetails(access_log::details::kMaxDurationTimeout);
      // Trailers-only, as the connection manager answers gRPC, with the
      // status Envoy names explicitly for this timeout.
      auto h = std::make_unique<HeaderMap>();
      h->addView(WellKnownHeader::kStatus, "200");
      h->addView(WellKnownHeader::kContentType, "application/grpc");
      h->addView(WellKnownHeader::kGrpcStatus, "4");  // DEADLINE_EXCEEDED
      h->addView(WellKnownHeader::kGrpcMessage, kDetails);
      cb_->encodeHeaders(std::move(h), true);
    } else {
      cb_->sendLocalReply(request_end_ ? 504 : 408, kDetails, "",
                          access_log::details::kMaxDurationTimeout);
    }
  }

  // A timeout ended the attempt: outlier detection hears of it when the
  // attempt had its connection (Envoy's, when it had its host), with the
  // status the router answers.
  void recordTimeout() {
    if (client_)
      host_->onLocalOrigin(upstream::LocalOrigin::kTimeout, timeout_alt_response_ ? 204 : 504);
  }

  // Gives up the upstream stream mid-way: it is reset, and its connection
  // goes back to the pool (HTTP/2) or closes (HTTP/1).
  void abandonUpstream() {
    if (!client_) return;
    encoder_->stream().setCallbacks(nullptr);
    encoder_->stream().resetStream(http::ResetReason::kLocalReset);
    UpstreamClient* client = client_;
    client_ = nullptr;
    encoder_ = nullptr;
    client->abandon();
  }

  void endRequestCount() {
    if (counted_request_) {
      counted_request_ = false;
      host_->requestEnded();
    }
  }

  void cleanup() {
    stopTimeout();
    stream_deadline_.cancel();
    stopRetries();
    if (waiting_for_pool_ && host_) {
      waiting_for_pool_ = false;
      host_->cancel(*this);
    }
    finished_ = true;
    endRequestCount();
    abandonUpstream();
  }

  // ---- Attempts and retries (the route's retry_policy; retry_ is null
  // without one, and none of this runs)

  // The request retries by policy (a tunnel's bytes are no request to replay:
  // never retried). Its state may be made already, by takeOverrides.
  [[gnu::noinline]] void startRetryState(const router::RetryPolicy& policy, HeaderMap& headers) {
    if (!retry_) makeRetryState(policy);
    RetryState& r = *retry_;
    const uint64_t per_try_ms = static_cast<uint64_t>(r.per_try_timeout.count());
    if (per_try_ms != 0 && timeout_ms_ != 0 && per_try_ms >= timeout_ms_) {
      // Envoy: a per-try timeout no shorter than the route timeout is none.
      r.per_try_timeout = std::chrono::milliseconds(0);
    } else if (per_try_ms != 0) {
      // Envoy: with a per_try_timeout shorter than the route timeout, the
      // upstream is told the per-try one, the time it has before a retry.
      setAttemptTimeoutHeaders(0);
    }
    // retriable_request_headers: a request none of them matches is not
    // retried (Envoy clears its retry_on, the headers' conditions included).
    if (!policy.retriableRequest(headers)) r.retry_on = 0;
    // A virtual host with attempt counts but no retry policy: nothing to
    // keep for a retry.
    if (r.retry_on == 0) r.disabled = true;
    if (policy.attempt_count_in_request) setAttemptCount(headers);
  }

  void makeRetryState(const router::RetryPolicy& policy) {
    retry_ = std::make_unique<RetryState>(
        policy, [](void* self) { static_cast<RouterFilter*>(self)->onBackoffDone(); },
        [](void* self) { static_cast<RouterFilter*>(self)->onPerTryTimeout(); },
        [](void* self) { static_cast<RouterFilter*>(self)->onPerTryIdleTimeout(); },
        [](void* self) { static_cast<RouterFilter*>(self)->onStreamDurationReached(); }, this);
  }

  // An internal request kept x-envoy-* headers that steer the router (the
  // connection manager marked it): Envoy's router takes them (they do not go
  // upstream) and applies them. x-envoy-upstream-rq-timeout-ms replaces the
  // route timeout (and so the x-envoy-expected-rq-timeout-ms the upstream is
  // told); x-envoy-upstream-rq-timeout-alt-response answers a timeout 204;
  // the retry headers widen the route's policy, or make one where the route
  // has none. Returns the policy the request retries by (null: none).
  [[gnu::noinline]] const router::RetryPolicy* takeOverrides(
      HeaderMap& headers, const router::RouteTimeouts& route_timeouts, RequestTimeouts& timeouts,
      const router::RetryPolicy* policy) {
    const router::RequestOverrides o = router::takeRequestOverrides(headers);
    if (o.timeout) {
      timeouts.route = *o.timeout;
      // Under max_grpc_timeout the upstream's grpc-timeout says the router's
      // timeout; with none (0), the client's is left as it came.
      if (grpc_ && route_timeouts.max_grpc_timeout && !route_timeouts.has_max_stream_duration) {
        timeouts.upstream_grpc_timeout =
            o.timeout->count() > 0 ? formatGrpcTimeout(*o.timeout) : std::string();
      }
    }
    timeout_alt_response_ = o.timeout_alt_response;
    if (tunnel_) return policy;  // A tunnel is never retried.
    if (!policy && !o.needsRetryState()) return nullptr;
    if (!policy) policy = &kNoRetryPolicy;
    makeRetryState(*policy);
    RetryState& r = *retry_;
    r.retry_on |= o.retry_on;
    if (o.max_retries) r.retries_left = *o.max_retries;
    if (o.per_try_timeout) r.per_try_timeout = *o.per_try_timeout;
    if (o.stream_duration) r.stream_duration = *o.stream_duration;
    if (!o.retriable_status_codes.empty()) {
      r.own_status_codes = policy->retriable_status_codes;
      r.own_status_codes.insert(r.own_status_codes.end(), o.retriable_status_codes.begin(),
                                o.retriable_status_codes.end());
      r.status_codes = &r.own_status_codes;
    }
    if (!o.retriable_header_names.empty()) {
      // Envoy makes each name a matcher of that name alone: present.
      r.own_headers = policy->retriable_headers;
      for (const std::string& name : o.retriable_header_names) {
        router::HeaderMatch m;
        m.name = name;
        m.kind = router::HeaderMatch::Kind::kPresent;
        r.own_headers.push_back(std::move(m));
      }
      r.headers = &r.own_headers;
    }
    return policy;
  }

  // The route timeout or a per-try timeout fired: 504, or with
  // x-envoy-upstream-rq-timeout-alt-response 204 with no body (Envoy's
  // timeout_response_code_); a response already started is reset.
  void replyTimeout(std::string_view flags, std::string_view details) {
    if (timeout_alt_response_) {
      cb_->sendLocalReply(response_started_ ? 0 : 204, "", flags, details);
      return;
    }
    cb_->sendLocalReply(response_started_ ? 0 : 504, "upstream request timeout", flags, details);
  }

  // Envoy's setTimeoutHeaders for an attempt that starts elapsed_ms after
  // the request's end: x-envoy-expected-rq-timeout-ms says the time the
  // attempt has (the per-try timeout, bounded by what is left of the route
  // timeout), and under max_grpc_timeout grpc-timeout says it too, so that a
  // gRPC server gives up when skiff does. Retry paths only.
  [[gnu::noinline]] void setAttemptTimeoutHeaders(uint64_t elapsed_ms) {
    const uint64_t per_try_ms = static_cast<uint64_t>(retry_->per_try_timeout.count());
    const uint64_t expected = expectedTimeoutMs(timeout_ms_, per_try_ms, elapsed_ms);
    if (expected == 0) return;
    if (!suppress_envoy_headers_) {
      setMilliseconds(*request_headers_, WellKnownHeader::kXEnvoyExpectedRqTimeoutMs, expected);
    }
    if (rewrite_grpc_timeout_) {
      request_headers_->set(WellKnownHeader::kGrpcTimeout,
                            formatGrpcTimeout(std::chrono::milliseconds(expected)));
    }
  }

  // Envoy's x-envoy-attempt-count: 1 for the first attempt. It replaces any
  // value already there.
  void setAttemptCount(HeaderMap& headers) {
    char text[12];
    auto [end, ec] = std::to_chars(text, text + sizeof(text), retry_->retries_done + 1);
    headers.set("x-envoy-attempt-count", std::string_view(text, static_cast<size_t>(end - text)));
  }

  // Sends the request to host_: the first attempt, or a retry. Inline: as a
  // call it cost every request 26 instructions (bench/probe.sh instr).
  [[gnu::always_inline]] void startAttempt() {
    host_->requestStarted();
    counted_request_ = true;
    waiting_for_pool_ = true;
    if (retry_ && retry_->policy.previous_hosts) [[unlikely]]
      retry_->tried.push_back(host_.get());
    // May call onPoolReady / onPoolFailure right away.
    host_->newStream(*this, want_);
  }

  // The request so far to a new attempt's stream, from the retry buffer: a
  // copy of its slices (refcounts, no bytes), so a later attempt can send it
  // again. What waited in pending_body_ is in the retry buffer too.
  [[gnu::noinline]] void sendBufferedRequest() {
    pending_body_.clear();
    const BufferChain& body = retry_->body;
    HeaderMap* trailers = retry_->trailers;
    http::RequestEncoder* encoder = encoder_;
    encoder->encodeHeaders(*request_headers_, request_end_ && body.empty() && !trailers);
    if (encoder_ != encoder) return;  // Reset while sending.
    if (!body.empty()) {
      BufferChain copy;
      for (const Slice& slice : body.slices()) copy.append(slice);
      encoder->encodeData(copy, request_end_ && !trailers);
      if (encoder_ != encoder) return;
    }
    if (trailers) encoder->encodeTrailers(*trailers);
  }

  // Keeps the request body for a retry. Past the buffer limit, the request
  // is not retried any more (Envoy's retry_or_shadow_abandoned); between two
  // attempts it cannot go on, and is answered 507 (returns false).
  bool bufferForRetry(BufferChain& data) {
    RetryState& r = *retry_;
    if (r.body.length() + data.length() <= kRequestBufferLimit) {
      for (const Slice& slice : data.slices()) r.body.append(slice);
      return true;
    }
    cluster_->stats().retry_or_shadow_abandoned.inc();
    if (r.backoff.armed()) {
      disableRetry();
      finishBetweenAttempts();
      cb_->sendLocalReply(507, "exceeded request buffer limit while retrying upstream", "",
                          kRetryBufferExceeded);
      return false;
    }
    if (!encoder_) {
      // An attempt waits for its connection: it still needs all of it.
      pending_body_.clear();
      pending_body_.move(r.body);
    }
    disableRetry();
    return true;
  }

  // Envoy's RetryState::shouldRetry for the outcome of the attempt that just
  // ended: would_retry says whether retry_on covers it.
  RetryDecision shouldRetry(bool would_retry) {
    RetryState& r = *retry_;
    upstream::ClusterStats& stats = cluster_->stats();
    // The attempt after a retry ended in an answer not worth retrying.
    if (r.holds_retry && !would_retry) stats.upstream_rq_retry_success.inc();
    releaseRetry();
    if (!would_retry) return RetryDecision::kNo;
    if (r.retries_left == 0) {
      stats.upstream_rq_retry_limit_exceeded.inc();
      return RetryDecision::kLimitExceeded;
    }
    --r.retries_left;
    if (cluster_->active_retries >= cluster_->config().max_retries) {
      stats.upstream_rq_retry_overflow.inc();
      return RetryDecision::kOverflow;
    }
    ++cluster_->active_retries;
    r.holds_retry = true;
    stats.upstream_rq_retry.inc();
    cb_->worker().deadlines().armComputed(
        r.backoff, r.policy.backOffMs(++r.retries_done, cb_->worker().random()));
    return RetryDecision::kRetry;
  }

  // At least one retry ran (Envoy's is_retry_: the body says so).
  bool retried() const { return retry_ && retry_->retries_done > 0; }

  static std::string_view retryFlag(RetryDecision d) {
    if (d == RetryDecision::kLimitExceeded) return ",URX";
    return d == RetryDecision::kOverflow ? ",UO" : "";
  }
  // A failure's flag followed by the retry's (Envoy lists UF, UC, UT before
  // URX). Failures only; short enough to need no allocation.
  static std::string withFlag(std::string_view flag, std::string_view retry_flag) {
    std::string out(flag);
    out += retry_flag;
    return out;
  }

  // A response arrived: retried (true) when retry_on covers it and a retry
  // is left; it is then dropped, never forwarded.
  [[gnu::noinline]] bool retryFromHeaders(const HeaderMap& headers, bool end_stream) {
    RetryState& r = *retry_;
    r.per_try.cancel();
    RetryDecision d = shouldRetry(
        router::RetryPolicy::retriableResponse(r.retry_on, *r.status_codes, *r.headers, headers));
    if (d == RetryDecision::kRetry) {
      countStatus(headers.status());
      endAttempt(end_stream);
      return true;
    }
    if (d == RetryDecision::kLimitExceeded) {
      cb_->setResponseFlag("URX");
    } else if (d == RetryDecision::kOverflow) {
      cb_->setResponseFlag("UO");
    }
    return false;
  }

  // Ends the current attempt before a retry. A complete response to a
  // complete request leaves its connection reusable; otherwise the stream
  // is reset (HTTP/2: RST_STREAM; HTTP/1: the connection closes), as Envoy
  // resets a retried upstream request.
  void endAttempt(bool response_complete) {
    retry_->per_try.cancel();
    retry_->per_try_idle.cancel();
    retry_->stream_duration_deadline.cancel();
    if (waiting_for_pool_) {
      waiting_for_pool_ = false;
      host_->cancel(*this);
    }
    endRequestCount();
    if (!client_) return;
    if (response_complete && request_end_) {
      encoder_->stream().setCallbacks(nullptr);
      UpstreamClient* client = client_;
      client_ = nullptr;
      encoder_ = nullptr;
      client->release();
    } else {
      abandonUpstream();
    }
  }

  // The cluster has no host to send to: Envoy's 503, UH.
  void replyNoHealthyUpstream() {
    cluster_->stats().upstream_cx_none_healthy.inc();
    cb_->sendLocalReply(503, "no healthy upstream", "UH", access_log::details::kNoHealthyUpstream);
  }

  // The cluster's max_requests is reached. Envoy counts that overflow with
  // the pending ones, and its pool refuses the request: an overflow before
  // the response started.
  void replyMaxRequestsOverflow() {
    cluster_->stats().upstream_rq_pending_overflow.inc();
    cb_->sendLocalReply(503, "upstream overflow: max_requests reached", "UO",
                        access_log::details::kResetBeforeStartedOverflow, !suppress_envoy_headers_);
  }

  // No attempt is running and the router answers itself: its timers stop.
  void finishBetweenAttempts() {
    finished_ = true;
    stopTimeout();
    stream_deadline_.cancel();
  }

  // The back-off is over: the next attempt picks a host again.
  void onBackoffDone() {
    if (finished_) return;
    std::shared_ptr<upstream::Host> host = pickHost();
    if (!host) {
      finishBetweenAttempts();
      replyNoHealthyUpstream();
      return;
    }
    if (cluster_->active_requests >= cluster_->config().max_requests) {
      finishBetweenAttempts();
      replyMaxRequestsOverflow();
      return;
    }
    host_ = std::move(host);
    if (access_log::StreamRecord* record = cb_->streamRecord()) {
      record->upstream_host = host_->address();
    }
    if (route_->autoHostRewrite()) {
      request_headers_->set(WellKnownHeader::kAuthority, host_->address());
    }
    if (retry_->policy.attempt_count_in_request) setAttemptCount(*request_headers_);
    // The route timeout runs from the request's end (if it came): the new
    // attempt is told what is left of it.
    setAttemptTimeoutHeaders(request_end_ ? uv_now(cb_->worker().loop()) - request_end_ms_ : 0);
    startAttempt();
  }

  // The cluster's pick; with previous_hosts, picked again (up to
  // host_selection_retry_max_attempts more times) while it is a host already
  // tried, and the last pick is taken if all were.
  std::shared_ptr<upstream::Host> pickHost() {
    upstream::LbContext context = lbContext(*route_, *request_headers_);
    std::shared_ptr<upstream::Host> host = cluster_->chooseHost(context);
    if (!retry_->policy.previous_hosts) return host;
    auto tried = [&](const upstream::Host* h) {
      return std::find(retry_->tried.begin(), retry_->tried.end(), h) != retry_->tried.end();
    };
    for (uint32_t i = 0;
         host && i < retry_->policy.host_selection_max_attempts && tried(host.get()); ++i) {
      context.attempt = i + 1;  // A hashing cluster steps away from the hash's host.
      host = cluster_->chooseHost(context);
    }
    return host;
  }

  // What the cluster's load balancer may use. The downstream address is
  // asked for (a virtual call) only for a route with a hash policy.
  upstream::LbContext lbContext(const router::RouteEntry& route, const HeaderMap& headers) {
    upstream::LbContext context;
    context.headers = &headers;
    context.original_dst = cb_->originalDestination();
    if (const router::HashPolicy* policy = route.hashPolicy()) {
      context.hash_policy = policy;
      context.downstream_address = cb_->downstreamAddress();
      context.cookie_sink = this;
      if (policy->hashesSourceIp()) [[unlikely]] {
        if (std::optional<http::IpAddress> ip = cb_->downstreamRemoteIp()) {
          if (inet_ntop(ip->v6 ? AF_INET6 : AF_INET, ip->bytes.data(), context.remote_ip.data(),
                        context.remote_ip.size()) != nullptr) {
            context.remote_ip_length = static_cast<uint8_t>(std::strlen(context.remote_ip.data()));
          }
        }
      }
    }
    return context;
  }

  // router::CookieSink: a hash policy's cookie goes on the upstream's response.
  std::string downstreamLocalAddress() const override { return cb_->downstreamLocalAddress(); }
  void setCookie(std::string value) override { set_cookie_ = std::move(value); }

  // per_try_timeout runs from when the attempt has its upstream stream, or
  // the request's end if later, until the response starts: as in Envoy, the
  // time spent waiting for a connection is not the attempt's (the route
  // timeout bounds it, and connect_timeout the connecting).
  void startPerTryTimeout() {
    if (!retry_ || retry_->per_try_timeout.count() == 0 || !request_end_ || finished_ ||
        response_started_ || client_ == nullptr) {
      return;
    }
    cb_->worker().deadlines().arm(retry_->per_try,
                                  static_cast<uint64_t>(retry_->per_try_timeout.count()));
  }

  void onPerTryTimeout() {
    // Envoy ignores a per-try timeout once the response went downstream.
    if (finished_ || response_started_) return;
    cluster_->stats().upstream_rq_per_try_timeout.inc();
    recordTimeout();
    std::string_view retry_flag;
    if (retryAfterFailedAttempt(router::AttemptFailure::kPerTryTimeout, retry_flag)) return;
    replyTimeout(withFlag("UT", retry_flag), kUpstreamPerTryTimeout);
  }

  // The running attempt failed by a timer (failure): it ends, and a retry
  // starts if the policy allows one and no response went downstream (true).
  // Else the router stops between attempts, and retry_flag says why there
  // was no retry (",URX", ",UO"; empty when none was considered).
  bool retryAfterFailedAttempt(router::AttemptFailure failure, std::string_view& retry_flag) {
    endAttempt(false);
    if (!response_started_ && !retry_->disabled) {
      RetryDecision d =
          shouldRetry(router::RetryPolicy::retriableFailure(retry_->retry_on, failure));
      if (d == RetryDecision::kRetry) return true;
      retry_flag = retryFlag(d);
    }
    finishBetweenAttempts();
    return false;
  }

  // per_try_idle_timeout runs while the attempt has its upstream stream and
  // the request is complete (Envoy arms it with the per-try timeout), and
  // each response byte starts it again, to the response's end.
  void startPerTryIdleTimeout() {
    if (!retry_ || retry_->policy.per_try_idle_timeout.count() == 0 || !request_end_ || finished_ ||
        !client_) {
      return;
    }
    cb_->worker().deadlines().arm(
        retry_->per_try_idle, static_cast<uint64_t>(retry_->policy.per_try_idle_timeout.count()));
  }
  void touchPerTryIdleTimeout() {
    if (retry_->per_try_idle.armed()) startPerTryIdleTimeout();
  }

  // The attempt brought nothing for per_try_idle_timeout (Envoy's
  // onPerTryIdleTimeout): it is reset and retried as a per-try timeout is,
  // else 504 UT (a response already started is reset).
  void onPerTryIdleTimeout() {
    if (finished_) return;
    // Envoy's counter, made on demand: only this rare path needs it.
    upstream::ClusterStats& stats = cluster_->stats();
    stats.store.counter(stats.prefix + "upstream_rq_per_try_idle_timeout").inc();
    recordTimeout();
    std::string_view retry_flag;
    if (retryAfterFailedAttempt(router::AttemptFailure::kPerTryTimeout, retry_flag)) return;
    replyTimeout(withFlag("UT", retry_flag), kUpstreamPerTryIdleTimeout);
  }

  // The attempt's upstream stream outlived x-envoy-upstream-stream-duration-ms
  // (Envoy's onStreamMaxDurationReached): it is reset, and retried as a reset
  // would be; else 408 while the request is still arriving, 504 after, flag
  // UMSDR (a response already started is reset).
  void onStreamDurationReached() {
    if (finished_) return;
    // Envoy's counter, made on demand: only this rare path needs it.
    upstream::ClusterStats& stats = cluster_->stats();
    stats.store.counter(stats.prefix + "upstream_rq_max_duration_reached").inc();
    std::string_view retry_flag;
    if (retryAfterFailedAttempt(router::AttemptFailure::kReset, retry_flag)) return;
    // Envoy lists URX before UMSDR.
    std::string flags(retry_flag.empty() ? "" : retry_flag.substr(1));
    if (!flags.empty()) flags += ',';
    flags += "UMSDR";
    cb_->sendLocalReply(response_started_ ? 0 : (request_end_ ? 504 : 408),
                        "upstream max stream duration reached", flags,
                        kUpstreamMaxStreamDurationReached);
  }

  // No more attempts (1xx forwarded, body too large): Envoy drops its retry
  // state, giving back its max_retries slot.
  void disableRetry() {
    releaseRetry();
    retry_->disabled = true;
    retry_->backoff.cancel();
    retry_->body.clear();
  }

  void releaseRetry() {
    if (retry_->holds_retry) {
      retry_->holds_retry = false;
      if (cluster_->active_retries > 0) --cluster_->active_retries;
    }
  }

  // The request ends: no back-off or per-try timer may fire.
  void stopRetries() {
    if (retry_) [[unlikely]]
      stopRetryTimers();
  }
  [[gnu::noinline]] void stopRetryTimers() {
    retry_->backoff.cancel();
    retry_->per_try.cancel();
    retry_->per_try_idle.cancel();
    retry_->stream_duration_deadline.cancel();
    releaseRetry();
  }

  const bool suppress_envoy_headers_;  // The Router's suppress_envoy_headers.
  FilterCallbacks* cb_ = nullptr;
  UpstreamResponse response_;
  const router::RouteEntry* route_ = nullptr;
  // Set-Cookie made by the route's hash policy (a cookie entry with a ttl
  // that the request lacked), for the upstream's response; usually empty.
  std::string set_cookie_;
  upstream::Cluster* cluster_ = nullptr;
  std::shared_ptr<upstream::Host> host_;
  UpstreamClient* client_ = nullptr;
  http::RequestEncoder* encoder_ = nullptr;
  HeaderMap* request_headers_ = nullptr;
  HeaderMap* pending_trailers_ = nullptr;
  BufferChain pending_body_;
  Deadline route_deadline_;   // the route timeout
  Deadline stream_deadline_;  // the stream's maximum duration
  uint64_t timeout_ms_ = 0;
  uint64_t request_end_ms_ = 0;  // Loop time when the request was complete.
  int upstream_read_disabled_ = 0;
  bool request_end_ = false;
  // The request is gRPC (content-type application/grpc...); only looked at
  // when the route has gRPC timeouts or max_stream_duration.
  bool grpc_ = false;
  // grpc-timeout goes upstream as the time each attempt has (a gRPC request
  // on a route with max_grpc_timeout and no max_stream_duration).
  bool rewrite_grpc_timeout_ = false;
  bool response_started_ = false;
  bool finished_ = false;
  bool waiting_for_pool_ = false;
  bool counted_request_ = false;
  bool downstream_paused_ = false;
  bool timeout_alt_response_ = false;             // x-envoy-upstream-rq-timeout-alt-response: 204.
  bool tunnel_ = false;                           // An Upgrade or CONNECT.
  bool tunnel_connect_ = false;                   // ... a CONNECT.
  bool tunnel_open_ = false;                      // The upstream accepted it.
  bool tunnel_response_done_ = false;             // The upstream's direction ended first.
  upstream::Want want_ = upstream::Want::kHttp1;  // What each attempt asks the pool for.
  std::unique_ptr<RetryState> retry_;             // Only for a route with a retry_policy.
};

class RouterFilterFactory : public HttpFilterFactory {
 public:
  explicit RouterFilterFactory(RouterConfig config) : config_(config) {}
  std::unique_ptr<HttpFilter> create() const override {
    return std::make_unique<RouterFilter>(config_.suppress_envoy_headers);
  }
  bool isTerminal() const override { return true; }

 private:
  RouterConfig config_;
};

}  // namespace

std::shared_ptr<const HttpFilterFactory> makeRouterFilterFactory(RouterConfig config) {
  return std::make_shared<RouterFilterFactory>(config);
}

}  // namespace skiff::filters
