#include "proxy/http/connection_manager.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "filters/tcp_proxy/tcp_proxy.h"
#include "proxy/access_log/response_code_details.h"
#include "proxy/buffer/object_pool.h"
#include "proxy/common/health_check_state.h"
#include "proxy/common/log.h"
#include "proxy/http/edge_headers.h"
#include "proxy/http/http1/http1_codec.h"
#include "proxy/http/http2/http2_codec.h"
#include "proxy/http/path_normalizer.h"
#include "proxy/net/tls/tls_transport.h"
#include "proxy/router/route_table.h"

namespace skiff {

namespace {

std::string listenerStatName(const config::ListenerConfig& l) {
  // Envoy names listener stats by address: listener.127.0.0.1_10000.*
  return "listener." + l.address.address + "_" + std::to_string(l.address.port);
}

// This worker's stats blocks of a config: made when the worker installs the
// listener (HttpConnectionManager::installOn), found by the worker's index
// after, with no lookup by name.
ListenerStats& listenerStatsOn(Worker& worker, const config::ListenerConfig& l) {
  return l.stats.install(worker.index(), [&] {
    return std::make_unique<ListenerStats>(worker.stats(), listenerStatName(l) + ".");
  });
}

HttpConnectionManagerStats& hcmStatsOn(Worker& worker,
                                       const config::HttpConnectionManagerConfig& hcm) {
  return hcm.stats.install(worker.index(), [&] {
    return std::make_unique<HttpConnectionManagerStats>(worker.stats(), hcm.stat_prefix);
  });
}

// RFC 9113 §3.4: the client connection preface starts with this string.
constexpr std::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

std::string_view protocolName(http::Protocol p) {
  switch (p) {
    case http::Protocol::kHttp10:
      return "HTTP/1.0";
    case http::Protocol::kHttp11:
      return "HTTP/1.1";
    case http::Protocol::kHttp2:
      return "HTTP/2";
  }
  return {};
}

// A record's start: the monotonic clock for durations, the wall clock for
// START_TIME.
void stampStart(access_log::StreamRecord& record) {
  record.start_ns = uv_hrtime();
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  record.start_unix_ns = static_cast<int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
}

std::string_view ipOf(std::string_view address) {
  if (address.starts_with("[")) return address.substr(1, address.find(']') - 1);
  return address.substr(0, address.rfind(':'));
}

// Writes v as 8 lowercase hex digits, most significant first, without a
// loop: each nibble is spread into a byte of its own, and the bytes become
// digits together. Always inlined: as a call it cost makeUuid about 20
// instructions more per request once decodeHeaders grew past the inliner's
// budget.
[[gnu::always_inline]] inline void putHex8(char* out, uint32_t v) {
  uint64_t x = v;
  x = (x | (x << 16)) & 0x0000ffff0000ffffULL;
  x = (x | (x << 8)) & 0x00ff00ff00ff00ffULL;
  x = (x | (x << 4)) & 0x0f0f0f0f0f0f0f0fULL;  // Byte k: nibble k.
  // A nibble of 10 or more has bit 4 set once 6 is added: it takes a letter.
  uint64_t letters = ((x + 0x0606060606060606ULL) >> 4) & 0x0101010101010101ULL;
  x += 0x3030303030303030ULL + letters * ('a' - '0' - 10);
  x = __builtin_bswap64(x);  // The most significant nibble first in memory.
  std::memcpy(out, &x, 8);
}

// A random version 4 UUID for x-request-id, formatted by hand into out
// (snprintf was 1.4% of the CPU of a proxied request, and a std::string of
// 36 characters is a heap allocation; a digit at a time cost 240
// instructions per request, putHex8 about 100).
using Uuid = std::array<char, 36>;
void makeUuid(Worker& worker, Uuid& out) {
  uint64_t a = worker.random(), b = worker.random();
  a = (a & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // Version 4.
  b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // Variant 10.
  char hex[32];
  putHex8(hex, static_cast<uint32_t>(a >> 32));
  putHex8(hex + 8, static_cast<uint32_t>(a));
  putHex8(hex + 16, static_cast<uint32_t>(b >> 32));
  putHex8(hex + 24, static_cast<uint32_t>(b));
  // 8-4-4-4-12.
  char* to = out.data();
  std::memcpy(to, hex, 8);
  to[8] = '-';
  std::memcpy(to + 9, hex + 8, 4);
  to[13] = '-';
  std::memcpy(to + 14, hex + 12, 4);
  to[18] = '-';
  std::memcpy(to + 19, hex + 16, 4);
  to[23] = '-';
  std::memcpy(to + 24, hex + 20, 12);
}

// Percent-encodes every byte but RFC 3986's unreserved ones, as Envoy
// encodes a PEM certificate for x-forwarded-client-cert.
std::string urlEncode(std::string_view in) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(in.size() + in.size() / 8);
  for (char c : in) {
    const auto u = static_cast<unsigned char>(c);
    if ((u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') || u == '-' ||
        u == '.' || u == '_' || u == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    }
  }
  return out;
}

}  // namespace

HttpConnectionManagerStats::HttpConnectionManagerStats(stats::Store& s, const std::string& p)
    : downstream_cx_total(s.counter("http." + p + ".downstream_cx_total")),
      downstream_cx_active(s.gauge("http." + p + ".downstream_cx_active")),
      downstream_cx_http1_total(s.counter("http." + p + ".downstream_cx_http1_total")),
      downstream_cx_http2_total(s.counter("http." + p + ".downstream_cx_http2_total")),
      downstream_cx_ssl_total(s.counter("http." + p + ".downstream_cx_ssl_total")),
      downstream_cx_protocol_error(s.counter("http." + p + ".downstream_cx_protocol_error")),
      downstream_cx_drain_close(s.counter("http." + p + ".downstream_cx_drain_close")),
      downstream_rq_total(s.counter("http." + p + ".downstream_rq_total")),
      downstream_rq_http1_total(s.counter("http." + p + ".downstream_rq_http1_total")),
      downstream_rq_http2_total(s.counter("http." + p + ".downstream_rq_http2_total")),
      downstream_rq_active(s.gauge("http." + p + ".downstream_rq_active")),
      downstream_rq_completed(s.counter("http." + p + ".downstream_rq_completed")),
      downstream_rq_1xx(s.counter("http." + p + ".downstream_rq_1xx")),
      downstream_rq_2xx(s.counter("http." + p + ".downstream_rq_2xx")),
      downstream_rq_3xx(s.counter("http." + p + ".downstream_rq_3xx")),
      downstream_rq_4xx(s.counter("http." + p + ".downstream_rq_4xx")),
      downstream_rq_5xx(s.counter("http." + p + ".downstream_rq_5xx")),
      downstream_rq_rx_reset(s.counter("http." + p + ".downstream_rq_rx_reset")),
      downstream_rq_tx_reset(s.counter("http." + p + ".downstream_rq_tx_reset")),
      downstream_rq_too_large(s.counter("http." + p + ".downstream_rq_too_large")),
      downstream_rq_response_before_rq_complete(
          s.counter("http." + p + ".downstream_rq_response_before_rq_complete")),
      no_route(s.counter("http." + p + ".no_route")),
      rq_total(s.counter("http." + p + ".rq_total")),
      no_cluster(s.counter("http." + p + ".no_cluster")),
      rq_direct_response(s.counter("http." + p + ".rq_direct_response")),
      rq_redirect(s.counter("http." + p + ".rq_redirect")),
      rq_reset_after_downstream_response_started(
          s.counter("http." + p + ".rq_reset_after_downstream_response_started")),
      downstream_cx_upgrades_total(s.counter("http." + p + ".downstream_cx_upgrades_total")),
      downstream_cx_upgrades_active(s.gauge("http." + p + ".downstream_cx_upgrades_active")),
      downstream_rq_ws_on_non_ws_route(
          s.counter("http." + p + ".downstream_rq_ws_on_non_ws_route")),
      downstream_rq_failed_path_normalization(
          s.counter("http." + p + ".downstream_rq_failed_path_normalization")),
      downstream_rq_redirected_with_normalized_path(
          s.counter("http." + p + ".downstream_rq_redirected_with_normalized_path")) {}

ListenerStats::ListenerStats(stats::Store& s, const std::string& p)
    : downstream_cx_total(s.counter(p + "downstream_cx_total")),
      downstream_cx_active(s.gauge(p + "downstream_cx_active")),
      no_filter_chain_match(s.counter(p + "no_filter_chain_match")),
      ssl_handshake(s.counter(p + "ssl.handshake")),
      downstream_pre_cx_timeout(s.counter(p + "downstream_pre_cx_timeout")),
      store(s),
      prefix(p) {}

// ---- ActiveStream: one request/response on the connection.

class HttpConnectionManager::ActiveStream : public Deletable,
                                            public http::StreamDecoder,
                                            public http::StreamCallbacks,
                                            public filters::FilterCallbacks,
                                            public http::EncodeSink {
 public:
  // Every request makes one: they come from a per-worker free list, sized
  // for 64 HTTP/2 connections of 100 streams (8,192 streams, 3.9 MiB).
  static void* operator new(size_t size) { return ObjectPool<ActiveStream, 8192>::take(size); }
  static void operator delete(void* p, size_t size) {
    ObjectPool<ActiveStream, 8192>::give(p, size);
  }

  ActiveStream(HttpConnectionManager& hcm, http::ResponseEncoder& encoder)
      : hcm_(hcm),
        encoder_(encoder),
        listener_(hcm.listener_),
        chain_(*this, hcm.listener().per_connection_buffer_limit_bytes) {
    encoder_.stream().setCallbacks(this);
    for (const auto& f : hcm.config().http_filters) {
      auto filter = f.factory->create();
      filter->setCallbacks(*this);
      chain_.add(std::move(filter));
    }
    hcm_.stats().downstream_rq_total.inc();
    if (hcm_.protocol() == http::Protocol::kHttp2) {
      hcm_.stats().downstream_rq_http2_total.inc();
    } else {
      hcm_.stats().downstream_rq_http1_total.inc();
    }
    hcm_.stats().downstream_rq_active.inc();
    if (!hcm.config().access_logs.empty()) startRecord();
    armTimers();
  }

  ~ActiveStream() override {
    hcm_.stats().downstream_rq_active.dec();
    if (upgrade_) hcm_.stats().downstream_cx_upgrades_active.dec();
  }

  ActiveStream* prev = nullptr;  // Links in the connection's stream list.
  ActiveStream* next = nullptr;

  // ---- http::StreamDecoder (the request)
  void decode1xxHeaders(HeaderMapPtr) override {}

  void decodeHeaders(HeaderMapPtr headers, bool end_stream) override {
    if (end_stream) markRequestEnd();
    grpc_ = isGrpcRequest(*headers);
    const auto& cfg = hcm_.config();
    HeaderMap& h = *headers;
    if (h.authority().empty()) {
      // RFC 9112 §3.2: a server MUST respond 400 to an HTTP/1.1 request
      // that lacks a Host header.
      keepForLog(std::move(headers));
      sendLocalReply(400, "missing host header", "DPE", access_log::details::kMissingHostHeader);
      return;
    }
    // Before anything reads the path (Envoy's maybeNormalizePath): the
    // route, the filters and the upstream all see the normal form.
    if (cfg.normalize_paths) [[unlikely]] {
      if (!normalizePath(headers)) return;
    }
    std::string_view remote_ip = ipOf(hcm_.connection().peerAddress());
    std::string_view scheme = hcm_.connection().tls() ? "https" : "http";
    // Envoy judges where the request comes from by x-forwarded-for as the
    // client sent it, then strips the x-envoy-* headers an external client
    // may not set (they would steer retries and timeouts further on).
    const http::RequestOrigin origin = http::classifyRequest(
        {cfg.use_remote_address, cfg.xff_num_trusted_hops, &cfg.internal_address_ranges}, h,
        remote_ip);
    http::sanitizeRequestHeaders(h, origin);
    if (cfg.use_remote_address) {
      if (!cfg.skip_xff_append) {
        auto xff = h.get(WellKnownHeader::kXForwardedFor);
        if (xff && !xff->empty()) {
          h.set(WellKnownHeader::kXForwardedFor, std::string(*xff) + "," + std::string(remote_ip));
        } else {
          h.set(WellKnownHeader::kXForwardedFor, remote_ip);
        }
      }
      h.setView(WellKnownHeader::kXForwardedProto, scheme);  // A literal: no copy.
    } else if (!h.has(WellKnownHeader::kXForwardedProto)) {
      h.setView(WellKnownHeader::kXForwardedProto, scheme);
    }
    // x-forwarded-client-cert: under the default (SANITIZE) a request
    // without one pays a test of the map's index.
    if (cfg.forward_client_cert !=
            config::HttpConnectionManagerConfig::ForwardClientCert::kSanitize ||
        h.has(WellKnownHeader::kXForwardedClientCert)) [[unlikely]] {
      mutateClientCertHeader(h);
    }
    if (cfg.generate_request_id) {
      if (!h.has(WellKnownHeader::kXRequestId) ||
          (origin.edge && !cfg.preserve_external_request_id)) {
        Uuid id;
        makeUuid(hcm_.worker(), id);
        h.set(WellKnownHeader::kXRequestId,
              {id.data(), id.size()});  // Copied into the map's arena.
      }
    }
    // Envoy answers 100-continue itself (proxy_100_continue is off) and does
    // not forward the expectation.
    if (auto expect = h.get(WellKnownHeader::kExpect);
        expect && equalsIgnoreCase(*expect, "100-continue")) {
      h.remove("expect");
      HeaderMap cont;
      cont.addView(":status", "100");
      encoder_.encode1xxHeaders(cont);
    }
    const router::RouteTable* table = cfg.route_table.get();
    if (!cfg.rds_route_config_name.empty()) {
      // RDS: the worker's current table, held by the stream to its end so a
      // swap never changes a request in flight.
      rds_table_ = hcm_.worker().routeTable(cfg.rds_route_config_name);
      table = rds_table_.get();
    }
    if (table) {
      route_ = table->match(h, hcm_.worker().random());
      if (!route_) hcm_.stats().no_route.inc();
    }
    std::string_view upgrade = skiff::upgradeType(h);  // Once; the router asks us.
    if (!upgrade.empty() && route_ != nullptr) {
      if (!upgradeAllowed(upgrade)) {
        // Envoy: 403, and (HTTP/1) the connection closes after it, since what
        // follows the request may be the refused protocol's bytes.
        hcm_.stats().downstream_rq_ws_on_non_ws_route.inc();
        keepForLog(std::move(headers));
        sendLocalReply(403, "", "", access_log::details::kUpgradeFailed);  // No body, as Envoy.
        return;
      }
      upgrade_ = true;
      upgrade_type_ = upgrade;
      connect_ = upgrade == "CONNECT";
      hcm_.stats().downstream_cx_upgrades_total.inc();
      hcm_.stats().downstream_cx_upgrades_active.inc();
      // The request's end is the tunnel's end: request_timeout would cut
      // every tunnel. stream_idle_timeout still bounds an idle one.
      request_deadline_.cancel();
    }
    chain_.decodeHeaders(std::move(headers), end_stream);
  }

  void decodeData(BufferChain& data, bool end_stream) override {
    if (record_) record_->bytes_received += data.length();
    if (end_stream) markRequestEnd();
    touch();
    if (tunnel_open_) {
      // The upstream may have ended its direction already: this one goes on.
      chain_.decodeData(data, end_stream);
      if (end_stream) maybeFinish();
      return;
    }
    if (local_complete_) {
      data.clear();  // The answer went out already; the rest is ignored.
      maybeFinish();
      return;
    }
    chain_.decodeData(data, end_stream);
  }

  void decodeTrailers(HeaderMapPtr trailers) override {
    markRequestEnd();
    if (local_complete_) {
      maybeFinish();
      return;
    }
    chain_.decodeTrailers(std::move(trailers));
  }

  // ---- http::StreamCallbacks (the downstream stream)
  void onResetStream(http::ResetReason reason, std::string_view) override {
    if (finished_) return;
    hcm_.stats().downstream_rq_rx_reset.inc();
    if (record_ && !local_complete_) {
      // Only the access log shows these: Envoy's DC (the downstream
      // connection went away) and DR (the client reset the stream), with
      // the details Envoy gives them. A stream whose response was all sent
      // (a local reply before the request ended) ended there for Envoy: its
      // line keeps that response's details and gets no flag.
      const bool gone = reason == http::ResetReason::kConnectionTermination;
      auto* h1 = dynamic_cast<http::Http1ServerCodec*>(&hcm_.codec());
      if (h1 != nullptr && !gone) {
        // The HTTP/1 codec could not parse the rest of the request (its
        // body) and answered it itself unless a response had started, as
        // Envoy's codec does: DPE and the codec's details.
        setResponseFlag("DPE");
        record_->response_code_details = h1->errorDetails();
        if (!chain_.requestHeaders()) keepForLog(h1->takeRefusedHeaders());
        if (!response_headers_ && h1->errorStatus() != 0) {
          record_->codec_response_code = static_cast<uint32_t>(h1->errorStatus());
          record_->bytes_sent += http::codecErrorBody(h1->errorStatus()).size();
        }
      } else {
        setResponseFlag(gone ? "DC" : "DR");
        record_->response_code_details = gone ? access_log::details::kDownstreamRemoteDisconnect
                                              : access_log::details::kHttp2RemoteReset;
      }
    }
    finish();
  }
  void onAboveWriteBufferHighWatermark() override {
    for (auto& f : chain_.filters()) f->onDownstreamAboveWriteBufferHighWatermark();
  }
  void onBelowWriteBufferLowWatermark() override {
    for (auto& f : chain_.filters()) f->onDownstreamBelowWriteBufferLowWatermark();
  }

  // ---- filters::FilterCallbacks
  Worker& worker() override { return hcm_.worker(); }
  HttpConnectionManagerStats& connectionManagerStats() override { return hcm_.stats(); }
  const router::RouteEntry* route() override { return route_; }
  void continueDecoding() override { chain_.continueDecoding(); }
  void continueEncoding() override { chain_.continueEncoding(); }
  void setResponseFlag(std::string_view flag) override {
    if (!response_flags_.empty()) response_flags_ += ",";
    response_flags_ += flag;
  }
  void setResponseCodeDetails(std::string_view details) override {
    if (record_) record_->response_code_details = details;
  }
  std::string_view downstreamAddress() const override { return hcm_.connection().peerAddress(); }
  std::string downstreamLocalAddress() const override { return hcm_.localAddress(); }
  const sockaddr* originalDestination() const override { return hcm_.restoredLocalAddress(); }
  http::Protocol downstreamProtocol() const override { return hcm_.protocol(); }
  std::string_view upgradeType() const override { return upgrade_type_; }
  access_log::StreamRecord* streamRecord() override { return record_.get(); }
  const filters::DownstreamConnectionInfo* downstreamConnectionInfo() override {
    return &hcm_.connectionInfo();
  }
  // Envoy's ConnectionManagerUtility: with use_remote_address, the address
  // xff_num_trusted_hops - 1 entries from the right of the x-forwarded-for
  // the client sent (none: the peer); without it, the one
  // xff_num_trusted_hops from the right. The header now ends with the peer
  // when this proxy appended it, which counts as one more entry to skip.
  std::optional<http::IpAddress> downstreamRemoteIp() override {
    const auto& cfg = hcm_.config();
    const HeaderMap* h = chain_.requestHeaders();
    std::string_view peer = ipOf(hcm_.connection().peerAddress());
    if (h == nullptr || (cfg.use_remote_address && cfg.xff_num_trusted_hops == 0)) {
      return http::parseIp(peer);
    }
    uint32_t skip = cfg.xff_num_trusted_hops;
    if (cfg.use_remote_address && cfg.skip_xff_append) --skip;
    if (auto xff = h->get(WellKnownHeader::kXForwardedFor)) {
      if (auto last = http::lastXffAddress(*xff, skip)) {
        if (auto ip = http::parseIp(last->address)) return ip;
      }
    }
    return http::parseIp(peer);
  }
  void readDisableDownstream(bool disable) override {
    if (!finished_ && !encoder_detached_) encoder_.stream().readDisable(disable);
  }

  void sendLocalReply(int status, std::string_view body, std::string_view response_flag,
                      std::string_view details, bool overloaded = false) override {
    if (finished_) return;
    if (!response_flag.empty()) setResponseFlag(response_flag);
    setResponseCodeDetails(details);
    if (status == 0 || chain_.responseStarted()) {
      // Mid-response: nothing clean can be sent; reset the stream.
      hcm_.stats().downstream_rq_tx_reset.inc();
      detachEncoder();
      encoder_.stream().resetStream(http::ResetReason::kLocalReset);
      finish();
      return;
    }
    auto h = std::make_unique<HeaderMap>();
    if (grpc_) {
      // A gRPC client reads status from trailers: the answer is
      // "trailers-only" (HTTP 200, grpc-status, grpc-message, no body), with
      // the HTTP status mapped as Envoy maps it.
      h->addView(":status", "200");
      h->addView("content-type", "application/grpc");
      h->addCopy("grpc-status", std::to_string(grpcStatusFromHttp(status)));
      if (!body.empty()) h->addCopy("grpc-message", body);
      if (overloaded) h->addView("x-envoy-overloaded", "true");
      local_reply_ = true;
      chain_.encodeHeaders(std::move(h), true);
      return;
    }
    h->addCopy(":status", std::to_string(status));
    if (overloaded) h->addView("x-envoy-overloaded", "true");
    local_reply_ = true;
    if (body.empty()) {
      // No body at all, as Envoy's local replies with an empty body (its
      // "no route" 404): no content-type; HTTP/1 says content-length: 0.
      chain_.encodeHeaders(std::move(h), true);
      return;
    }
    // The body as the caller wrote it, with no newline added: Envoy's
    // local replies end where their text does ("no healthy upstream" is
    // content-length 19).
    h->addView("content-type", "text/plain");
    h->addCopy("content-length", std::to_string(body.size()));
    chain_.encodeHeaders(std::move(h), false);
    if (finished_) return;
    BufferChain data;
    data.appendCopy(body);  // Copy: a locally made body.
    chain_.encodeData(data, true);
  }

  void encode1xxHeaders(HeaderMapPtr headers) override {
    if (!finished_ && !local_complete_) encoder_.encode1xxHeaders(*headers);
  }
  void encodeHeaders(HeaderMapPtr headers, bool end_stream) override {
    if (!finished_) chain_.encodeHeaders(std::move(headers), end_stream);
  }
  void encodeData(BufferChain& data, bool end_stream) override {
    if (!finished_) chain_.encodeData(data, end_stream);
  }
  void encodeTrailers(HeaderMapPtr trailers) override {
    if (!finished_) chain_.encodeTrailers(std::move(trailers));
  }

  // ---- http::EncodeSink: the response leaves the filter chain.
  void sinkHeaders(HeaderMapPtr headers, bool end_stream) override {
    const auto& cfg = hcm_.config();
    using T = config::HttpConnectionManagerConfig::ServerHeaderTransformation;
    if (cfg.server_header_transformation == T::kOverwrite ||
        (cfg.server_header_transformation == T::kAppendIfAbsent &&
         !headers->has(WellKnownHeader::kServer))) {
      headers->set(WellKnownHeader::kServer, cfg.server_name);
    }
    int status = headers->status();
    auto& s = hcm_.stats();
    if (status >= 500) {
      s.downstream_rq_5xx.inc();
    } else if (status >= 400) {
      s.downstream_rq_4xx.inc();
    } else if (status >= 300) {
      s.downstream_rq_3xx.inc();
    } else if (status >= 200) {
      s.downstream_rq_2xx.inc();
    } else {
      s.downstream_rq_1xx.inc();
    }
    if (upgrade_ && (connect_ ? (status >= 200 && status < 300) : status == 101)) {
      tunnel_open_ = true;  // Accepted: bytes flow both ways until both ends.
    }
    if (!remote_complete_) {
      // Envoy's rule: a response that starts before the whole request has
      // arrived (a direct response or a local reply to a request whose body
      // is still coming) ends an HTTP/1 connection, which cannot tell where
      // that body ends once it is not read, and says so: the codec writes
      // `connection: close` and closes after this response (a tunnel's own
      // end closes it already).
      hcm_.stats().downstream_rq_response_before_rq_complete.inc();
      if (hcm_.protocol() != http::Protocol::kHttp2 && !upgrade_) hcm_.codec().goAway();
    }
    if (healthCheckFailed() && !hcm_.draining_) [[unlikely]] {
      // Envoy's drain decision: while the server fails health checks
      // (/healthcheck/fail), a response drains its connection, so that
      // clients move to another proxy: HTTP/1 says `connection: close` on
      // this response (not on a tunnel, whose bytes are no longer HTTP/1)
      // and closes after it; HTTP/2 sends GOAWAY and closes once its
      // streams have ended.
      if (hcm_.protocol() == http::Protocol::kHttp2 || !upgrade_) {
        hcm_.stats().downstream_cx_drain_close.inc();
        hcm_.drain();
      }
    }
    response_headers_ = std::move(headers);  // Encoders may hold views into it.
    if (record_) {
      uint64_t now = uv_hrtime();
      // RESPONSE_DURATION: the upstream's response reached us (filters that
      // run on it are in the nanoseconds).
      if (!local_reply_ && !record_->upstream_host.empty()) {
        record_->upstream_first_byte_ns = now;
        if (record_->response_code_details.empty()) {
          record_->response_code_details = access_log::details::kViaUpstream;
        }
      }
      if (end_stream) record_->response_end_ns = now;
    }
    if (end_stream) beforeLastEncode();
    encoder_.encodeHeaders(*response_headers_, end_stream);
    if (end_stream) onLocalComplete();
  }
  void sinkData(BufferChain& data, bool end_stream) override {
    touch();
    if (record_) {
      record_->bytes_sent += data.length();
      if (end_stream) record_->response_end_ns = uv_hrtime();
    }
    if (end_stream) beforeLastEncode();
    encoder_.encodeData(data, end_stream);
    if (end_stream) onLocalComplete();
  }
  void sinkTrailers(HeaderMapPtr trailers) override {
    beforeLastEncode();
    encoder_.encodeTrailers(*trailers);
    if (record_) {
      record_->response_end_ns = uv_hrtime();
      record_->response_trailers = std::move(trailers);  // For %TRAILER(...)%.
    }
    onLocalComplete();
  }
  void onBufferLimitExceeded(bool decoding) override {
    if (decoding) {
      hcm_.stats().downstream_rq_too_large.inc();
      sendLocalReply(413, "request payload too large", "",
                     access_log::details::kRequestPayloadTooLarge);
    } else {
      sendLocalReply(500, "response payload too large", "",
                     access_log::details::kResponsePayloadTooLarge);
    }
  }

 private:
  // The two stream timeouts are deadlines on the worker's queue (no uv timer
  // per stream). request_timeout bounds the time to receive the whole
  // request, from the stream's start; stream_idle_timeout bounds the time
  // with no bytes either way, so activity re-arms it (a move to the tail of
  // its list, no timer operation).
  void armTimers() {
    const auto& cfg = hcm_.config();
    DeadlineQueue& q = hcm_.worker().deadlines();
    if (cfg.request_timeout.count() > 0) {
      q.arm(request_deadline_, static_cast<uint64_t>(cfg.request_timeout.count()));
    }
    touch();
  }

  void touch() {
    const auto& cfg = hcm_.config();
    if (cfg.stream_idle_timeout.count() > 0) {
      hcm_.worker().deadlines().arm(idle_deadline_,
                                    static_cast<uint64_t>(cfg.stream_idle_timeout.count()));
    }
  }

  void stopTimers() {
    request_deadline_.cancel();
    idle_deadline_.cancel();
  }

  // A request answered before it reaches the filter chain still shows its
  // method, path and headers in the access log.
  void keepForLog(HeaderMapPtr headers) {
    if (record_) record_->unfiltered_request_headers = std::move(headers);
  }

  void markRequestEnd() {
    remote_complete_ = true;
    if (record_) record_->request_end_ns = uv_hrtime();
  }

  // Access logs: the stream keeps a record only when its connection manager
  // has one, and writes it once, as it ends.
  void startRecord() {
    record_ = std::make_unique<access_log::StreamRecord>();
    stampStart(*record_);
    record_->want_upstream_local_address = hcm_.config().access_log_upstream_local;
  }

  void writeAccessLogs() {
    access_log::LogContext c;
    c.record = record_.get();
    c.end_ns = uv_hrtime();
    c.request_headers = chain_.requestHeaders() ? chain_.requestHeaders()
                                                : record_->unfiltered_request_headers.get();
    c.response_headers = response_headers_.get();
    c.response_code = response_headers_ ? static_cast<uint32_t>(response_headers_->status())
                                        : record_->codec_response_code;
    c.response_flags = response_flags_;
    if (route_) c.route_name = route_->name();
    hcm_.writeAccessLogs(c);
  }

  // Envoy's ConnectionManagerUtility::mutateXfccRequestHeader.
  void mutateClientCertHeader(HeaderMap& h) {
    using Mode = config::HttpConnectionManagerConfig::ForwardClientCert;
    static constexpr std::string_view kXfcc = "x-forwarded-client-cert";
    const auto& cfg = hcm_.config();
    const Mode mode = cfg.forward_client_cert;
    if (mode == Mode::kAlwaysForwardOnly) return;
    tls::TlsTransport* t = hcm_.connection().tls();
    if (mode == Mode::kSanitize || t == nullptr || !t->peerCertificatePresented()) {
      h.remove(kXfcc);
      return;
    }
    if (mode == Mode::kForwardOnly) return;
    // This connection's element: Key=value pairs joined by ';', in Envoy's
    // order. Subject, Cert and Chain are quoted; Cert and Chain are PEM,
    // URL-encoded. URI= stays (empty) when asked for and there is none.
    std::string element;
    auto add = [&element](std::string_view key, std::string_view value, bool quoted) {
      if (!element.empty()) element += ';';
      element += key;
      element += '=';
      if (quoted) element += '"';
      element += value;
      if (quoted) element += '"';
    };
    for (const std::string& uri : t->localUriSans()) add("By", uri, false);
    if (std::string hash = t->peerCertificateSha256(); !hash.empty()) add("Hash", hash, false);
    const auto& d = cfg.client_cert_details;
    if (d.subject) add("Subject", t->peerSubject(), true);
    if (d.uri) {
      const std::vector<std::string> sans = t->peerUriSans();
      if (sans.empty()) add("URI", "", false);
      for (const std::string& uri : sans) add("URI", uri, false);
    }
    if (d.cert) {
      if (std::string pem = t->peerCertificatePem(); !pem.empty())
        add("Cert", urlEncode(pem), true);
    }
    if (d.chain) {
      if (std::string pem = t->peerCertificateChainPem(); !pem.empty()) {
        add("Chain", urlEncode(pem), true);
      }
    }
    if (d.dns) {
      for (const std::string& dns : t->peerDnsSans()) add("DNS", dns, false);
    }
    std::string value;
    if (mode == Mode::kAppendForward) {
      // What came before, every field of the name joined by ',', then ours.
      for (const HeaderMap::Entry& e : h.entries()) {
        if (!equalsIgnoreCase(e.name, kXfcc) || e.value.empty()) continue;
        if (!value.empty()) value += ',';
        value += e.value;
      }
      if (!value.empty()) value += ',';
    }
    value += element;
    h.remove(kXfcc);
    h.addCopy(WellKnownHeader::kXForwardedClientCert, value);  // Copied into the map's arena.
  }

  // Applies the HCM's path options to h's :path; false when the request was
  // answered instead (400, or a 307 to the normal form).
  bool normalizePath(HeaderMapPtr& headers) {
    HeaderMap& h = *headers;
    std::string normal;  // Allocated only when the path changes.
    bool changed = false;
    const http::PathVerdict verdict =
        http::normalizeRequestPath(hcm_.config().path_normalization, h.path(), normal, changed);
    // A gRPC client follows no redirect: Envoy refuses it instead.
    if (verdict == http::PathVerdict::kReject ||
        (verdict == http::PathVerdict::kRedirect && grpc_)) {
      hcm_.stats().downstream_rq_failed_path_normalization.inc();
      keepForLog(std::move(headers));
      sendLocalReply(400, "", "", access_log::details::kPathNormalizationFailed);
      return false;
    }
    if (changed) h.set(WellKnownHeader::kPath, normal);  // Copied into the map's arena.
    if (verdict == http::PathVerdict::kRedirect) {
      // Envoy's answer: 307, no body, location is the new path alone.
      hcm_.stats().downstream_rq_redirected_with_normalized_path.inc();
      keepForLog(std::move(headers));
      setResponseCodeDetails(access_log::details::kPathNormalizationFailed);
      auto r = std::make_unique<HeaderMap>();
      r->addView(":status", "307");
      r->addCopy("location", normal);
      local_reply_ = true;
      chain_.encodeHeaders(std::move(r), true);
      return false;
    }
    return true;
  }

  // Envoy's rule: the route's upgrade_configs entry for the type decides;
  // without one, the connection manager's; a type neither names is refused.
  bool upgradeAllowed(std::string_view type) const {
    if (route_->kind() == router::RouteEntry::Kind::kCluster) {
      if (std::optional<bool> on = route_->upgradeEnabled(type)) return *on;
    }
    for (const auto& u : hcm_.config().upgrade_configs) {
      if (equalsIgnoreCase(u.type, type)) return u.enabled;
    }
    return false;
  }

  static void onRequestTimeout(void* self) {
    auto* s = static_cast<ActiveStream*>(self);
    if (s->finished_ || s->remote_complete_) return;
    s->sendLocalReply(408, "request timeout", "", access_log::details::kRequestOverallTimeout);
  }

  static void onIdleTimeout(void* self) {
    auto* s = static_cast<ActiveStream*>(self);
    if (s->finished_) return;
    // Envoy: 408 before the response started, a reset after; flag SI.
    s->sendLocalReply(408, "stream timeout", "SI", access_log::details::kStreamIdleTimeout);
  }

  void onLocalComplete() {
    local_complete_ = true;
    hcm_.stats().downstream_rq_completed.inc();
    if (!remote_complete_ && !tunnel_open_) {
      // The response ended before the request did (a local reply to a
      // request whose body is still coming, or an upstream that answered
      // early). As in Envoy, HTTP/1 cannot resync, so the connection closes
      // after the response. HTTP/2 drops the rest of the request, and resets
      // the stream with NO_ERROR if more comes (Http2Stream::
      // resetAfterResponse); the stream ends here now. An open
      // tunnel is half-closed instead: the downstream's direction goes on
      // to its own end.
      if (hcm_.protocol() != http::Protocol::kHttp2) {
        hcm_.closeAfterFlush();
      } else {
        detachEncoder();
        encoder_.stream().resetAfterResponse();
        finish();
        return;
      }
    }
    maybeFinish();
  }

  // The stream ends once both directions are done. A response that ended
  // first waits for the rest of the request (which is ignored), or for the
  // connection to close under it.
  void maybeFinish() {
    if (local_complete_ && remote_complete_) finish();
  }

  // A codec may free a stream once both of its directions have ended (HTTP/2
  // does, when the outermost codec call returns). So the stream is let go
  // of before the call that can end it, never after.
  void detachEncoder() {
    if (encoder_detached_) return;
    encoder_detached_ = true;
    encoder_.stream().setCallbacks(nullptr);
  }
  void beforeLastEncode() {
    if (remote_complete_) detachEncoder();
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    stopTimers();
    detachEncoder();
    if (record_) writeAccessLogs();  // Before the filters go: the router holds the host.
    chain_.destroy();
    hcm_.removeStream(*this);
  }

  HttpConnectionManager& hcm_;
  http::ResponseEncoder& encoder_;
  std::shared_ptr<const config::ListenerConfig> listener_;  // Pins the route table.
  http::FilterChain chain_;
  const router::RouteEntry* route_ = nullptr;  // Owned by the listener's or rds_table_.
  std::shared_ptr<const router::RouteTable> rds_table_;
  HeaderMapPtr response_headers_;
  std::string response_flags_;
  std::unique_ptr<access_log::StreamRecord> record_;  // Only with access logs.
  Deadline request_deadline_{&ActiveStream::onRequestTimeout, this};
  Deadline idle_deadline_{&ActiveStream::onIdleTimeout, this};
  bool remote_complete_ = false;
  bool local_complete_ = false;
  bool encoder_detached_ = false;
  bool grpc_ = false;  // The request is gRPC: local replies are trailers-only.
  bool local_reply_ = false;
  bool finished_ = false;
  bool upgrade_ = false;           // An Upgrade or CONNECT the configuration lets through.
  bool connect_ = false;           // ... and it is a CONNECT.
  bool tunnel_open_ = false;       // The upstream accepted it (101, or 2xx to CONNECT).
  std::string_view upgrade_type_;  // A view into the request headers, or "CONNECT".
};

// ---- HttpConnectionManager

namespace {

// Chooses a TLS connection's filter chain from its ClientHello and its
// addresses, which it keeps until then (ListenerConfig::
// choose_tls_chain_in_hello); the chain's TLS context answers the handshake.
class HelloChainChooser final : public tls::ContextChooser {
 public:
  HelloChainChooser(HttpConnectionManager& hcm, const sockaddr* local, const sockaddr* peer)
      : hcm_(hcm) {
    if (local != nullptr) copyAddress(local, local_);
    if (peer != nullptr) copyAddress(peer, peer_);
  }

  std::shared_ptr<const tls::TlsContext> chooseContext(
      std::string_view server_name, std::span<const std::string_view> alpn) override {
    config::ListenerConfig::ConnectionInfo info;
    info.local = local_.ss_family == AF_UNSPEC ? nullptr : reinterpret_cast<sockaddr*>(&local_);
    info.peer = peer_.ss_family == AF_UNSPEC ? nullptr : reinterpret_cast<sockaddr*>(&peer_);
    info.server_name = server_name;
    info.transport = config::FilterChainConfig::Transport::kTls;
    info.application_protocols = alpn;
    return hcm_.chooseChainInHello(info);
  }

 private:
  static void copyAddress(const sockaddr* from, sockaddr_storage& to) {
    std::memcpy(&to, from,
                from->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in));
  }

  HttpConnectionManager& hcm_;
  sockaddr_storage local_{};
  sockaddr_storage peer_{};
};

}  // namespace

void HttpConnectionManager::accept(Worker& worker,
                                   std::shared_ptr<const config::ListenerConfig> listener, int fd,
                                   const sockaddr* peer, const sockaddr_storage* original_dst,
                                   std::optional<bool> tls, std::string_view application_protocol) {
  auto* hcm = new HttpConnectionManager(worker, std::move(listener));
  if (original_dst) {
    worker.setRestoredLocalAddress(*hcm, *original_dst);
    hcm->has_restored_local_ = true;
  }
  const config::ListenerConfig& l = *hcm->listener_;
  const bool use_tls = l.tls && tls.value_or(true);
  // The addresses a chain is chosen by.
  sockaddr_storage local_storage;
  const sockaddr* local = nullptr;
  if (l.match_local_address && (!use_tls || l.choose_tls_chain_in_hello)) {
    local = hcm->restoredLocalAddress();
    socklen_t len = sizeof(local_storage);
    if (local == nullptr &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&local_storage), &len) == 0) {
      local = reinterpret_cast<const sockaddr*>(&local_storage);
    }
  }
  if (use_tls) {
    // The filter chain and the codec wait for the handshake (SNI, ALPN), or
    // at least for the ClientHello.
    auto transport = std::make_unique<tls::TlsTransport>(l.tls);
    if (l.choose_tls_chain_in_hello) {
      transport->setContextChooser(std::make_unique<HelloChainChooser>(*hcm, local, peer));
    }
    hcm->conn_.enableTls(std::move(transport));
  }
  if (hcm->conn_.accept(fd, peer) != 0) {
    hcm->conn_.close();  // onClosed() deletes it.
    return;
  }
  if (!use_tls) {
    // A plaintext connection's chain is chosen now, by its addresses.
    config::ListenerConfig::ConnectionInfo info;
    info.local = local;
    info.peer = peer;
    info.transport = config::FilterChainConfig::Transport::kRawBuffer;
    if (!application_protocol.empty()) {
      info.application_protocols = std::span<const std::string_view>(&application_protocol, 1);
    }
    if (!hcm->selectChain(info)) return;
  }
  if (!use_tls &&
      hcm->config().codec_type != config::HttpConnectionManagerConfig::CodecType::kAuto) {
    hcm->createCodec(hcm->config().codec_type ==
                     config::HttpConnectionManagerConfig::CodecType::kHttp2);
  }
  hcm->armIdleTimer();
}

ListenerStats& HttpConnectionManager::listenerStats(Worker& worker,
                                                    const config::ListenerConfig& listener) {
  return listenerStatsOn(worker, listener);
}

void HttpConnectionManager::installOn(Worker& worker, const config::ListenerConfig& listener) {
  listenerStatsOn(worker, listener);
  auto installChain = [&](const config::FilterChainConfig* chain) {
    if (chain == nullptr) return;
    if (chain->tcp_proxy) {
      tcp_proxy::statsOn(worker, *chain->tcp_proxy);
    } else {
      hcmStatsOn(worker, chain->http);
    }
  };
  for (const auto& chain : listener.filter_chains) installChain(chain.get());
  installChain(listener.default_filter_chain.get());
}

HttpConnectionManager::HttpConnectionManager(Worker& worker,
                                             std::shared_ptr<const config::ListenerConfig> listener)
    : listener_(std::move(listener)),
      listener_stats_(&listenerStatsOn(worker, *listener_)),
      conn_(worker, *this, listener_->per_connection_buffer_limit_bytes),
      idle_deadline_([](void* self) { static_cast<HttpConnectionManager*>(self)->onIdleTimer(); },
                     this) {
  worker.addDownstream();
  worker.addConnection(*this);
  listener_stats_->downstream_cx_total.inc();
  listener_stats_->downstream_cx_active.inc();
  if (worker.draining()) draining_ = true;
}

HttpConnectionManager::~HttpConnectionManager() {
  if (has_restored_local_) worker().setRestoredLocalAddress(*this, nullptr);
  worker().cancel(this);
  worker().removeConnection(*this);
}

std::shared_ptr<const tls::TlsContext> HttpConnectionManager::chooseChainInHello(
    const config::ListenerConfig::ConnectionInfo& info) {
  chain_ = listener_->selectFilterChain(info);
  if (chain_ != nullptr && chain_->tls != nullptr) return chain_->tls;
  // No chain, or a plaintext one: the handshake fails, and the connection
  // closes as one that no chain takes.
  chain_ = nullptr;
  listener_stats_->no_filter_chain_match.inc();
  return nullptr;
}

bool HttpConnectionManager::adoptChain(const config::FilterChainConfig* chain) {
  chain_ = chain;
  if (chain_ && (chain_->tls != nullptr) != (conn_.tls() != nullptr)) {
    // A TLS chain for a plaintext connection or the reverse (tls_inspector
    // told them apart, and the match let the other kind through): Envoy's
    // transport socket would fail on it; skiff takes no chain.
    chain_ = nullptr;
  }
  if (!chain_) {
    listener_stats_->no_filter_chain_match.inc();
    conn_.close();
    return false;
  }
  if (chain_->tcp_proxy) [[unlikely]] {
    // A TCP proxy chain: the session takes the codec's place and the
    // connection gets no HTTP codec, stream or timer of the connection
    // manager's (its own timeouts are the session's). The head timer is the
    // one thing a read could still arm: armHeadTimer() declines it, so
    // onRead() needs no test of its own for this.
    tcp_proxy_ = true;
    clearIdleTimer();
    auto session = std::make_unique<tcp_proxy::TcpProxySession>(conn_, *chain_->tcp_proxy,
                                                                restoredLocalAddress());
    tcp_proxy::TcpProxySession& s = *session;
    codec_ = std::move(session);
    s.start();
    return false;
  }
  stats_ = &hcmStatsOn(worker(), chain_->http);
  stats_->downstream_cx_total.inc();
  stats_->downstream_cx_active.inc();
  if (conn_.tls()) stats_->downstream_cx_ssl_total.inc();
  return true;
}

void HttpConnectionManager::createCodec(bool http2) {
  if (http2) {
    http::Http2Settings settings = config().http2;
    settings.max_header_list_size_kb = config().max_request_headers_kb;
    codec_ = std::make_unique<http::Http2ServerCodec>(*this, *this, settings);
    stats_->downstream_cx_http2_total.inc();
  } else {
    http::Http1Settings settings;
    settings.max_request_headers_kb = config().max_request_headers_kb;
    settings.enable_trailers = config().http1_enable_trailers;
    codec_ = std::make_unique<http::Http1ServerCodec>(*this, *this, settings);
    stats_->downstream_cx_http1_total.inc();
  }
  if (draining_) codec_->goAway();
}

void HttpConnectionManager::onTlsHandshakeDone() {
  tls::TlsTransport& t = *conn_.tls();
  listener_stats_->ssl_handshake.inc();
  // The ClientHello chose the chain already on some listeners.
  config::ListenerConfig::ConnectionInfo info;
  info.server_name = t.sni();
  info.transport = config::FilterChainConfig::Transport::kTls;
  if (listener_->choose_tls_chain_in_hello ? !adoptChain(chain_) : !selectChain(info)) return;
  using CodecType = config::HttpConnectionManagerConfig::CodecType;
  // ALPN decides under AUTO (h2, else HTTP/1.1), as Envoy does.
  bool h2 = config().codec_type == CodecType::kHttp2 ||
            (config().codec_type == CodecType::kAuto && t.alpn() == "h2");
  createCodec(h2);
}

void HttpConnectionManager::onRead(BufferChain& data) {
  if (!codec_) {
    if (!chain_) return;  // Not reachable: TLS picks the chain before plaintext arrives.
    // codec_type AUTO on plaintext: HTTP/2 with prior knowledge starts with
    // the connection preface; anything else is HTTP/1.
    size_t n = std::min(data.length(), kHttp2Preface.size());
    bool match = data.startsWith(kHttp2Preface.substr(0, n));
    if (match && n < kHttp2Preface.size()) return;  // Wait for more bytes.
    createCodec(match);
  }
  // The head's clock starts at its first byte; later reads do not extend it.
  // It is armed once the codec has run, and only if no stream began (most
  // heads arrive whole, and the stream then has timers of its own): the loop
  // time, and so the deadline, is the same as before the dispatch, and a
  // whole head costs no arm and cancel (85 instructions per request).
  const bool head_starts = !hasStreams() && !head_pending_;
  if (head_starts) head_pending_ = true;
  dispatch(data);
  if (head_starts && head_pending_) armHeadTimer();
}

// Bytes of a request head arrived but no stream exists yet (the codec makes
// one when the head is complete). Envoy's stream and its timers start at the
// first byte, so a head that never ends (slowloris) is bounded by
// request_timeout or stream_idle_timeout, whichever is shorter: the
// connection closes when it fires before a stream began.
void HttpConnectionManager::armHeadTimer() {
  if (!chain_ || tcp_proxy_) return;  // A TCP proxy's bytes are no request head.
  uint64_t ms = 0;
  for (auto t : {config().request_timeout, config().stream_idle_timeout}) {
    uint64_t v = static_cast<uint64_t>(t.count());
    if (v > 0 && (ms == 0 || v < ms)) ms = v;
  }
  if (ms == 0) {
    clearIdleTimer();
    return;
  }
  startIdleTimer(ms);
}

void HttpConnectionManager::dispatch(BufferChain& data) {
  http::CodecError error;
  if (!codec_->dispatch(data, error)) {
    stats_->downstream_cx_protocol_error.inc();
    if (!error.stream_reset && !error.details.empty() && !config().access_logs.empty()) {
      logCodecError(error);
    }
    // The codec answered (400/431) and asked to close after the answer.
    closeAfterFlush();
  }
}

// A request the codec refused before any stream began (a malformed head, a
// header block over max_request_headers_kb): Envoy's codec makes a stream
// for it, answers it, and logs it with DPE and the codec's details; the
// request's fields never reached the connection manager, so they print "-".
void HttpConnectionManager::logCodecError(const http::CodecError& error) {
  access_log::StreamRecord record;
  stampStart(record);
  record.response_code_details = error.details;
  if (error.http_status != 0) {
    record.bytes_sent = http::codecErrorBody(error.http_status).size();  // The answer's body.
    record.response_end_ns = record.start_ns;
  }
  access_log::LogContext c;
  c.record = &record;
  c.end_ns = record.start_ns;
  c.response_code = static_cast<uint32_t>(error.http_status);
  c.response_flags = "DPE";
  writeAccessLogs(c);
}

void HttpConnectionManager::writeAccessLogs(access_log::LogContext& c) {
  c.protocol = protocolName(protocol());
  c.downstream_remote_address = conn_.peerAddress();
  std::string local;  // Lives until the logs have formatted it.
  if (config().access_log_downstream_local) {
    local = localAddress();
    c.downstream_local_address = local;
  }
  if (tls::TlsTransport* t = conn_.tls()) c.requested_server_name = t->sni();
  for (const auto& log : config().access_logs) log->log(c, worker().loop());
}

const filters::DownstreamConnectionInfo& HttpConnectionManager::connectionInfo() {
  if (info_) return *info_;
  info_ = std::make_unique<filters::DownstreamConnectionInfo>();
  filters::DownstreamConnectionInfo& info = *info_;
  if (auto ip = http::parseIp(ipOf(conn_.peerAddress()))) info.peer_ip = *ip;
  // "ip:port" or "[ip6]:port": one getsockname for the connection's life.
  const std::string local = localAddress();
  const size_t colon = local.rfind(':');
  if (colon != std::string::npos) {
    std::optional<http::IpAddress> ip = http::parseIp(ipOf(local));
    uint32_t port = 0;
    const char* end = local.data() + local.size();
    auto [at, ec] = std::from_chars(local.data() + colon + 1, end, port);
    if (ip && ec == std::errc() && at == end && port <= 65535) {
      info.local_ip = *ip;
      info.local_port = port;
      info.has_local = true;
    }
  }
  if (tls::TlsTransport* t = conn_.tls()) {
    info.tls = true;
    info.sni = std::string(t->sni());
    info.peer_uri_sans = t->peerUriSans();
    info.peer_dns_sans = t->peerDnsSans();
    info.peer_subject = t->peerSubject();
  }
  return info;
}

std::string HttpConnectionManager::localAddress() const {
  if (has_restored_local_) return formatAddress(restoredLocalAddress());
  return conn_.localAddress();
}

// Every close skiff starts on a downstream connection (an answer that ends
// it, a protocol error, a drain, an idle timeout) is graceful: what was
// written goes out, then a FIN, and the client has delayed_close_timeout to
// close its side while skiff reads and drops whatever it still sends (the
// rest of a request body), so that it reads the answer instead of a reset.
void HttpConnectionManager::closeAfterFlush() {
  uint64_t linger_ms = chain_ ? static_cast<uint64_t>(config().delayed_close_timeout.count()) : 0;
  conn_.closeAfterFlush(TcpConnection::CloseReason::kLocal, linger_ms);
}

void HttpConnectionManager::scheduleDispatch() {
  if (dispatch_scheduled_) return;
  dispatch_scheduled_ = true;
  worker().schedule(this);
}

void HttpConnectionManager::onScheduled() {
  dispatch_scheduled_ = false;
  if (conn_.closing()) return;
  BufferChain none;
  dispatch(none);
  if (remote_closed_ && !hasStreams()) closeAfterFlush();
}

void HttpConnectionManager::onEof() {
  // A tunnel passes the FIN on as the end of its data; the connection stays
  // open for the other direction and closes when its stream ends.
  if (codec_ && codec_->onRemoteEof()) {
    remote_closed_ = true;
    return;
  }
  if (codec_ && codec_->protocol() == http::Protocol::kHttp2) {
    // An HTTP/2 client that closes its side is gone (as Envoy treats it): its
    // streams reset, and the upstream streams they hold with them. A gRPC
    // client that gives up at its deadline often sends only the FIN.
    conn_.close(TcpConnection::CloseReason::kRemote);
    return;
  }
  // HTTP/1: the downstream half-closed. Answer what is in flight, then close.
  remote_closed_ = true;
  if (!hasStreams()) closeAfterFlush();
}

void HttpConnectionManager::countCodecStats() {
  auto* h2 = dynamic_cast<http::Http2ServerCodec*>(codec_.get());
  if (!h2) return;
  // Envoy roots the HTTP/2 codec's stats at http2.*.
  const http::Http2Stats& st = h2->stats();
  stats::Store& store = worker().stats();
  st.forEach([&](const char* name, uint64_t v) {
    if (v) store.counter(std::string("http2.") + name).inc(v);
  });
}

void HttpConnectionManager::onClosed(TcpConnection::CloseReason reason) {
  if (reason == TcpConnection::CloseReason::kTlsError && conn_.tls()) {
    const char* why = conn_.tls()->failureReason();
    std::string name = why ? why : "connection_error";
    listener_stats_->store.counter(listener_stats_->prefix + "ssl." + name).inc();
    SKIFF_LOG(kDebug, "downstream TLS from " + conn_.peerAddress() + " failed: " + name + ": " +
                          conn_.tls()->failureDetail());
  }
  if (codec_) {
    codec_->onTransportClosed(http::ResetReason::kConnectionTermination);
    countCodecStats();
  }
  // Streams still here were not reset by the codec (none should be).
  while (ActiveStream* s = first_stream_) {
    unlinkStream(*s);
    worker().deferDelete(std::unique_ptr<Deletable>(s));
  }
  clearIdleTimer();
  if (stats_) stats_->downstream_cx_active.dec();
  listener_stats_->downstream_cx_active.dec();
  worker().removeDownstream();
  worker().deferDelete(std::unique_ptr<Deletable>(this));
}

void HttpConnectionManager::onAboveWriteBufferHighWatermark() {
  if (codec_) codec_->onAboveWriteBufferHighWatermark();
}

void HttpConnectionManager::onBelowWriteBufferLowWatermark() {
  if (codec_) codec_->onBelowWriteBufferLowWatermark();
}

http::StreamDecoder& HttpConnectionManager::newStream(http::ResponseEncoder& encoder) {
  head_pending_ = false;
  clearIdleTimer();
  auto* stream = new ActiveStream(*this, encoder);  // Owned by the list.
  stream->prev = last_stream_;
  (last_stream_ ? last_stream_->next : first_stream_) = stream;
  last_stream_ = stream;
  if (draining_ && !drain_notice_) codec_->goAway();
  return *stream;
}

void HttpConnectionManager::unlinkStream(ActiveStream& stream) {
  (stream.prev ? stream.prev->next : first_stream_) = stream.next;
  (stream.next ? stream.next->prev : last_stream_) = stream.prev;
  stream.prev = stream.next = nullptr;
}

void HttpConnectionManager::removeStream(ActiveStream& stream) {
  unlinkStream(stream);
  worker().deferDelete(std::unique_ptr<Deletable>(&stream));
  if (!hasStreams()) {
    if ((draining_ && !drain_notice_) || remote_closed_) {
      closeAfterFlush();
    } else {
      armIdleTimer();
    }
  }
}

void HttpConnectionManager::drain() {
  if (tcp_proxy_) {
    static_cast<tcp_proxy::TcpProxySession&>(*codec_).drain();
    return;
  }
  if (drain_notice_) return;  // The final GOAWAY is on its way.
  draining_ = true;
  // Envoy's HTTP/2 drain: a shutdown notice, then the final GOAWAY after
  // drain_timeout (0: on the next loop turn), so that requests the client
  // sent meanwhile are served, not refused. The wait holds the connection's
  // one deadline.
  if (codec_ && chain_ && codec_->protocol() == http::Protocol::kHttp2 && !conn_.closing()) {
    codec_->shutdownNotice();
    drain_notice_ = true;
    worker().deadlines().arm(idle_deadline_, static_cast<uint64_t>(config().drain_timeout.count()));
    return;
  }
  if (codec_) codec_->goAway();
  if (!hasStreams()) closeAfterFlush();
}

void HttpConnectionManager::armIdleTimer() {
  // Before a TLS handshake picks the chain, the first chain's idle timeout
  // bounds a connection that never completes it.
  const config::HttpConnectionManagerConfig& cfg =
      chain_ ? config()
             : (listener_->filter_chains.empty() ? listener_->default_filter_chain->http
                                                 : listener_->filter_chains.front()->http);
  uint64_t ms = static_cast<uint64_t>(cfg.idle_timeout.count());
  if (ms == 0) {
    clearIdleTimer();
    return;
  }
  startIdleTimer(ms);
}

// The connection's deadline: moving it is a list operation on the worker's
// DeadlineQueue, so the head / idle / stream cycle of a keep-alive request
// costs no timer operation (they showed up at 3% of CPU when each read
// re-armed a uv timer), and an idle connection holds no timer handle.
void HttpConnectionManager::startIdleTimer(uint64_t ms) {
  if (conn_.closing() || drain_notice_) return;
  worker().deadlines().arm(idle_deadline_, ms);
}

void HttpConnectionManager::clearIdleTimer() {
  if (!drain_notice_) [[likely]]
    idle_deadline_.cancel();
}

void HttpConnectionManager::onIdleTimer() {
  if (conn_.closing()) return;
  if (drain_notice_) {
    // drain_timeout is over: the final GOAWAY, then close once the streams end.
    drain_notice_ = false;
    codec_->goAway();
  }
  if (!hasStreams()) closeAfterFlush();
}

}  // namespace skiff
