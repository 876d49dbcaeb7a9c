#include "filters/router/router.h"

#include <charconv>
#include <string>

#include "filters/router/grpc_timeout.h"
#include "proxy/access_log/formatter.h"
#include "proxy/access_log/response_code_details.h"
#include "proxy/buffer/object_pool.h"
#include "proxy/http/connection_manager.h"
#include "proxy/net/deadline_queue.h"
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

// Envoy's response code details for an upstream stream reset, before or
// after the response started.
std::string_view resetDetails(http::ResetReason reason, bool response_started) {
  namespace d = access_log::details;
  switch (reason) {
    case http::ResetReason::kConnectionTermination:
      return response_started ? d::kResetAfterStartedConnectionTermination
                              : d::kResetBeforeStartedConnectionTermination;
    case http::ResetReason::kProtocolError:
      return response_started ? d::kResetAfterStartedProtocolError
                              : d::kResetBeforeStartedProtocolError;
    default:
      return response_started ? d::kResetAfterStartedRemoteReset
                              : d::kResetBeforeStartedRemoteReset;
  }
}

using upstream::PoolFailure;
using upstream::UpstreamClient;

// Forwards one request to an upstream host and streams the response back.
// Its life: decodeHeaders picks cluster and host and asks the host's pool for
// a connection; request body that arrives before the connection waits here;
// the response comes back through StreamDecoder and leaves through the
// filter callbacks' encode side.
class RouterFilter : public HttpFilter,
                     public upstream::PoolCallbacks,
                     public http::StreamCallbacks {
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
    host_ = cluster_->chooseHost();
    if (!host_) {
      cluster_->stats().upstream_cx_none_healthy.inc();
      cb_->sendLocalReply(503, "no healthy upstream", "UH",
                          access_log::details::kNoHealthyUpstream);
      return FilterStatus::kContinue;
    }
    if (record) record->upstream_host = host_->address();
    if (cluster_->active_requests >= cluster_->config().max_requests) {
      // Envoy counts a max_requests overflow with the pending ones.
      cluster_->stats().upstream_rq_pending_overflow.inc();
      // Envoy's pool refuses it: an overflow before the response started.
      cb_->sendLocalReply(503, "upstream overflow: max_requests reached", "UO",
                          access_log::details::kResetBeforeStartedOverflow,
                          !suppress_envoy_headers_);
      return FilterStatus::kContinue;
    }
    // An Upgrade or CONNECT that the connection manager let through: its
    // request and response data are a tunnel's two directions.
    std::string_view upgrade = cb_->upgradeType();
    tunnel_ = !upgrade.empty();
    tunnel_connect_ = upgrade == "CONNECT";
    upstream::Want want = cluster_->want(cb_->downstreamProtocol());
    if (tunnel_connect_ && route->terminatesConnect()) {
      want = upstream::Want::kTcp;  // skiff answers the CONNECT; raw TCP upstream.
    } else if (tunnel_ && want != upstream::Want::kHttp1) {
      // HTTP/2 upstreams would need extended CONNECT (RFC 8441).
      cb_->sendLocalReply(503, "upgrade needs an HTTP/1.1 upstream", "",
                          access_log::details::kUpgradeFailed);
      return FilterStatus::kContinue;
    }
    request_headers_ = &headers;
    route_ = route;
    // Whether the request is gRPC matters only to routes with gRPC timeouts
    // or a maximum stream duration (its reply differs for gRPC).
    const router::RouteTimeouts& route_timeouts = route->timeouts();
    grpc_ = (route_timeouts.max_grpc_timeout || route_timeouts.has_max_stream_duration) &&
            isGrpcRequest(headers);
    RequestTimeouts timeouts = chooseTimeouts(route_timeouts, headers, grpc_);
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
    if (end_stream) markRequestEnd();
    if (timeouts.stream) {
      // Counted from here, the stream's first filter callback (Envoy counts
      // from the request's headers). A grpc-timeout makes it a duration of
      // this request's own.
      cb_->worker().deadlines().armComputed(stream_deadline_,
                                            static_cast<uint64_t>(timeouts.stream->count()));
    }
    host_->requestStarted();
    counted_request_ = true;
    waiting_for_pool_ = true;
    if (end_stream) startTimeout();
    // May call onPoolReady / onPoolFailure right away.
    host_->newStream(*this, want);
    return FilterStatus::kContinue;
  }

  FilterStatus decodeData(BufferChain& data, bool end_stream) override {
    if (end_stream) {
      markRequestEnd();
      startTimeout();
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
      if (pending_body_.length() > 1024 * 1024 && !downstream_paused_) {
        downstream_paused_ = true;
        cb_->readDisableDownstream(true);
      }
    }
    return FilterStatus::kContinue;
  }

  FilterStatus decodeTrailers(HeaderMap& trailers) override {
    markRequestEnd();
    startTimeout();
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
    if (access_log::StreamRecord* r = cb_->streamRecord(); r && r->want_upstream_local_address) {
      r->upstream_local_address = client.localAddress();
    }
    encoder_ = &client.codec().newStream(response_);
    encoder_->stream().setCallbacks(this);
    for (int i = 0; i < upstream_read_disabled_; ++i) encoder_->stream().readDisable(true);
    bool headers_end = request_end_ && pending_body_.empty() && !pending_trailers_;
    encoder_->encodeHeaders(*request_headers_, headers_end);
    if (!pending_body_.empty()) {
      encoder_->encodeData(pending_body_, request_end_ && !pending_trailers_);
    }
    if (pending_trailers_) encoder_->encodeTrailers(*pending_trailers_);
    if (downstream_paused_) {
      downstream_paused_ = false;
      cb_->readDisableDownstream(false);
    }
  }

  void onPoolFailure(PoolFailure reason, std::string_view transport_failure) override {
    waiting_for_pool_ = false;
    if (finished_) return;
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
    cb_->sendLocalReply(503,
                        std::string("upstream connect error or disconnect/reset before headers. "
                                    "reset reason: ") +
                            (timeout ? "connection timeout" : "connection failure"),
                        "UF",
                        timeout ? access_log::details::kResetBeforeStartedConnectionTimeout
                                : access_log::details::kResetBeforeStartedConnectionFailure);
  }

  // ---- The upstream response (through UpstreamResponse)
  void onUpstream1xxHeaders(HeaderMapPtr headers) { cb_->encode1xxHeaders(std::move(headers)); }

  void onUpstreamHeaders(HeaderMapPtr headers, bool end_stream) {
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
    if (end_stream) upstreamDone();
    cb_->encodeHeaders(std::move(headers), end_stream);
  }

  void onUpstreamData(BufferChain& data, bool end_stream) {
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
    UpstreamClient* client = client_;
    client_ = nullptr;
    encoder_ = nullptr;
    stopTimeout();
    stream_deadline_.cancel();
    endRequestCount();
    if (client) client->abandon();
    if (finished_) return;
    finished_ = true;
    if (response_started_) {
      // Too late for a clean answer: status 0 resets the downstream stream.
      cb_->sendLocalReply(0, "upstream reset after response started", "UR",
                          resetDetails(reason, true));
      return;
    }
    std::string why =
        reason == http::ResetReason::kConnectionTermination
            ? "connection termination"
            : (reason == http::ResetReason::kProtocolError ? "protocol error" : "remote reset");
    if (!detail.empty()) why += std::string(" (") + std::string(detail) + ")";
    cb_->sendLocalReply(
        503, "upstream connect error or disconnect/reset before headers. reset reason: " + why,
        reason == http::ResetReason::kProtocolError ? "UPE" : "UC", resetDetails(reason, false));
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
    cluster_->stats().upstream_rq_timeout.inc();
    if (waiting_for_pool_) {
      // Still waiting for a connection: the request never left.
      waiting_for_pool_ = false;
      host_->cancel(*this);
    }
    endRequestCount();
    abandonUpstream();
    cb_->sendLocalReply(response_started_ ? 0 : 504, "upstream request timeout", "UT",
                        access_log::details::kResponseTimeout);
  }

  // The stream's maximum duration (max_stream_duration, or a grpc-timeout
  // under grpc_timeout_header_max) is over. Envoy's connection manager
  // answers this one: 408 while the request is still arriving, else 504, and
  // for gRPC DEADLINE_EXCEEDED rather than the status mapped from the HTTP one.
  void onStreamTimeout() {
    if (finished_) return;
    finished_ = true;
    stopTimeout();
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
    if (waiting_for_pool_ && host_) {
      waiting_for_pool_ = false;
      host_->cancel(*this);
    }
    finished_ = true;
    endRequestCount();
    abandonUpstream();
  }

  const bool suppress_envoy_headers_;  // The Router's suppress_envoy_headers.
  FilterCallbacks* cb_ = nullptr;
  UpstreamResponse response_;
  const router::RouteEntry* route_ = nullptr;
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
  bool response_started_ = false;
  bool finished_ = false;
  bool waiting_for_pool_ = false;
  bool counted_request_ = false;
  bool downstream_paused_ = false;
  bool tunnel_ = false;                // An Upgrade or CONNECT.
  bool tunnel_connect_ = false;        // ... a CONNECT.
  bool tunnel_open_ = false;           // The upstream accepted it.
  bool tunnel_response_done_ = false;  // The upstream's direction ended first.
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
