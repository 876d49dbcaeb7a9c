// The HTTP filter interface. A filter sees a request on its way upstream
// (decode*) and the response on its way downstream (encode*). Each call
// returns one of three states (STYLE.md: no more than three):
//   kContinue       pass to the next filter;
//   kStopIteration  hold here; the filter calls continueDecoding() /
//                   continueEncoding() later;
//   kStopAndBuffer  hold here and buffer the body, up to the connection's
//                   buffer limit (413 past it), until the filter continues.
// The router filter is always last in the decode direction and produces the
// response. Interfaces only, no code.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/buffer/buffer.h"
#include "proxy/http/edge_headers.h"
#include "proxy/http/header_map.h"

namespace skiff {
class Worker;
struct HttpConnectionManagerStats;
namespace http {
enum class Protocol : uint8_t;
}
namespace router {
class RouteEntry;
}
namespace access_log {
struct StreamRecord;
}
}  // namespace skiff

namespace skiff::filters {

enum class FilterStatus { kContinue, kStopIteration, kStopAndBuffer };

// What a filter may learn of the downstream connection beyond its peer's
// "ip:port" (RBAC's destination, SNI and peer certificate matchers). The
// connection manager makes it once per connection, when a filter first asks.
struct DownstreamConnectionInfo {
  http::IpAddress peer_ip;   // The direct peer.
  http::IpAddress local_ip;  // The local address (the original destination when restored).
  uint32_t local_port = 0;
  bool has_local = false;  // false: the local address could not be read.
  bool tls = false;
  std::string sni;  // requested_server_name; empty for none (and plaintext).
  // The peer certificate's URI and DNS SANs and RFC 2253 subject (empty
  // without one).
  std::vector<std::string> peer_uri_sans;
  std::vector<std::string> peer_dns_sans;
  std::string peer_subject;
};

// What a filter can ask of the stream it sits on.
class FilterCallbacks {
 public:
  virtual ~FilterCallbacks() = default;
  virtual Worker& worker() = 0;
  // The http.<stat_prefix>.* counters, the router's own among them.
  virtual HttpConnectionManagerStats& connectionManagerStats() = 0;
  // The route for this request (nullptr: none matched).
  virtual const router::RouteEntry* route() = 0;
  // Resumes a stream stopped by this filter.
  virtual void continueDecoding() = 0;
  virtual void continueEncoding() = 0;
  // Ends the stream with a locally made response. body is its text (gRPC:
  // grpc-message); an empty body sends none (and no grpc-message).
  // response_flag is Envoy's short flag (NR, UF, UH, UT, ...) or empty;
  // details is Envoy's response code details for the access log, one of
  // proxy/access_log/response_code_details.h's static strings.
  // Status 0 means no response can be sent any more (it already started):
  // the downstream stream is reset instead. overloaded: the reply carries
  // Envoy's `x-envoy-overloaded: true` (a request dropped by a circuit
  // breaker, unless the router suppresses Envoy's headers).
  virtual void sendLocalReply(int status, std::string_view body, std::string_view response_flag,
                              std::string_view details, bool overloaded = false) = 0;
  // Records an Envoy response flag on the stream (for logs and stats).
  virtual void setResponseFlag(std::string_view flag) = 0;
  // Records Envoy's response code details (a static string, kept as a view)
  // for the access log; one set later replaces it.
  virtual void setResponseCodeDetails(std::string_view details) = 0;
  // The response, produced by the last decoder filter (the router): it enters
  // the encode side of the chain.
  virtual void encode1xxHeaders(HeaderMapPtr headers) = 0;
  virtual void encodeHeaders(HeaderMapPtr headers, bool end_stream) = 0;
  virtual void encodeData(BufferChain& data, bool end_stream) = 0;
  virtual void encodeTrailers(HeaderMapPtr trailers) = 0;
  // Backpressure: stop / resume reading the downstream request body.
  virtual void readDisableDownstream(bool disable) = 0;
  // The downstream peer's address, "ip:port".
  virtual std::string_view downstreamAddress() const = 0;
  // The downstream connection's local address, "ip:port" (the original
  // destination when the listener restored one); a getsockname, so for
  // rare uses only (a hash policy's generated cookie).
  virtual std::string downstreamLocalAddress() const { return {}; }
  // The downstream connection's original destination, as the listener's
  // original_dst filter restored it; null when it did not (ORIGINAL_DST
  // clusters send the request there).
  virtual const sockaddr* originalDestination() const { return nullptr; }
  // The downstream connection's protocol (for use_downstream_protocol_config).
  virtual http::Protocol downstreamProtocol() const = 0;
  // The tunnel this request asks for and the configuration lets through:
  // "CONNECT", an HTTP/1.1 Upgrade type ("websocket"), or empty for a plain
  // request. Valid while the stream lives.
  virtual std::string_view upgradeType() const = 0;
  // What the stream records for its access logs (the router fills in the
  // upstream's cluster, host and local address); null when the connection
  // manager has no access log, so that a proxy without one pays nothing more.
  virtual access_log::StreamRecord* streamRecord() { return nullptr; }
  // The downstream connection, as DownstreamConnectionInfo describes it;
  // null when the stream has no connection to describe.
  virtual const DownstreamConnectionInfo* downstreamConnectionInfo() { return nullptr; }
  // Envoy's downstream remote address for this request: the address that
  // x-forwarded-for names under the connection manager's use_remote_address
  // and xff_num_trusted_hops, else the direct peer's. nullopt: unknown.
  virtual std::optional<http::IpAddress> downstreamRemoteIp() { return std::nullopt; }
};

class HttpFilter {
 public:
  virtual ~HttpFilter() = default;
  virtual void setCallbacks(FilterCallbacks& callbacks) = 0;
  virtual FilterStatus decodeHeaders(HeaderMap& headers, bool end_stream) = 0;
  virtual FilterStatus decodeData(BufferChain& data, bool end_stream) = 0;
  virtual FilterStatus decodeTrailers(HeaderMap& trailers) = 0;
  virtual FilterStatus encodeHeaders(HeaderMap& headers, bool end_stream) = 0;
  virtual FilterStatus encodeData(BufferChain& data, bool end_stream) = 0;
  virtual FilterStatus encodeTrailers(HeaderMap& trailers) = 0;
  // The downstream sent more than we can hold / can take more again: the
  // encode side's write queue crossed a watermark.
  virtual void onDownstreamAboveWriteBufferHighWatermark() {}
  virtual void onDownstreamBelowWriteBufferLowWatermark() {}
  // The stream is ending (complete or reset); release upstream resources.
  virtual void onDestroy() = 0;
};

// Made once per config from a typed_config; makes one filter per stream.
class HttpFilterFactory {
 public:
  virtual ~HttpFilterFactory() = default;
  virtual std::unique_ptr<HttpFilter> create() const = 0;
  virtual bool isTerminal() const { return false; }  // The router is.
  // A worker installs the configuration that holds this factory, before any
  // of its streams uses it there: per-worker state (filters/per_worker.h,
  // e.g. the filter's stats, which then exist at 0) is made here. On that
  // worker's thread; may run more than once for one worker.
  virtual void installOn(Worker& /*worker*/) const {}
};

}  // namespace skiff::filters
