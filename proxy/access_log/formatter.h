// Envoy's access log formats: a format string with command operators
// (`[%START_TIME%] "%REQ(:METHOD)% ..." %RESPONSE_CODE% %RESPONSE_FLAGS%`)
// or a JSON dictionary whose values are such strings. A format is parsed once,
// at configuration time, into a list of literal pieces and operators; a
// finished stream is rendered from a LogContext, which the connection manager
// fills at the stream's end. An operator skiff does not know is a
// configuration error, never printed as text.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/buffer/object_pool.h"
#include "proxy/common/status.h"
#include "proxy/http/header_map.h"

namespace google::protobuf {
class Struct;
}

namespace skiff::access_log {

// What a stream records for its access logs while it runs. Only a stream
// whose connection manager has access logs allocates one, so a proxy without
// them pays nothing but a null check.
struct StreamRecord {
  // One per request when logging: from a per-worker free list, as streams
  // are (a malloc and a free cost about 250 instructions).
  static void* operator new(size_t size) { return ObjectPool<StreamRecord, 8192>::take(size); }
  static void operator delete(void* p, size_t size) {
    ObjectPool<StreamRecord, 8192>::give(p, size);
  }

  int64_t start_unix_ns = 0;  // Wall clock at the stream's start (START_TIME).
  // Monotonic nanoseconds (uv_hrtime); 0: did not happen.
  uint64_t start_ns = 0;
  uint64_t request_end_ns = 0;          // The request's last byte arrived.
  uint64_t upstream_first_byte_ns = 0;  // The upstream's response started.
  uint64_t response_end_ns = 0;         // The response's last byte was sent.
  uint64_t bytes_received = 0;          // Request body bytes.
  uint64_t bytes_sent = 0;              // Response body bytes.
  // Set by the router. The host's address is a view: the router filter holds
  // the host, and outlives the log. A cluster's configuration may be swapped
  // under a stream, so its name is copied (short names need no allocation).
  std::string upstream_cluster;
  std::string_view upstream_host;
  // %RESPONSE_CODE_DETAILS%: one of response_code_details.h's static
  // strings; empty: none was set.
  std::string_view response_code_details;
  // %UPSTREAM_TRANSPORT_FAILURE_REASON%: why the upstream connection's
  // transport failed (a TLS handshake), in Envoy's words; set only then.
  std::string upstream_transport_failure_reason;
  // Asked for (one getsockname) only when a format uses UPSTREAM_LOCAL_ADDRESS.
  bool want_upstream_local_address = false;
  std::string upstream_local_address;
  HeaderMapPtr response_trailers;  // Kept for %TRAILER(...)%.
  // The status of an answer the codec sent itself (a 400 to a request whose
  // body it could not parse), when no response went through the stream.
  uint32_t codec_response_code = 0;
  // The request of a stream answered before its filter chain saw it (400
  // for a missing Host, 403 for a refused upgrade).
  HeaderMapPtr unfiltered_request_headers;
  // The health check filter took the request for a health check (Envoy's
  // StreamInfo::healthCheck(), which NotHealthCheckFilter reads).
  bool health_check = false;
};

// Everything a format can print about one finished stream.
struct LogContext {
  const StreamRecord* record = nullptr;
  uint64_t end_ns = 0;  // When the log is written (DURATION's end).
  const HeaderMap* request_headers = nullptr;
  const HeaderMap* response_headers = nullptr;
  uint32_t response_code = 0;                  // 0: no response was sent.
  std::string_view response_flags;             // Envoy's short codes, comma-separated.
  std::string_view protocol;                   // "HTTP/1.1", "HTTP/2"; empty: unknown.
  std::string_view downstream_remote_address;  // "ip:port"
  std::string_view downstream_local_address;   // Filled when a format asks.
  std::string_view requested_server_name;      // TLS SNI.
  std::string_view route_name;
};

class Formatter {
 public:
  // Envoy's default format, used when log_format is not set.
  static constexpr std::string_view kDefaultFormat =
      "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" "
      "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
      "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" "
      "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

  // A format string. omit_empty_values prints a missing value as nothing
  // instead of "-". The error names the operator and why.
  static Result<std::unique_ptr<Formatter>> text(std::string_view format, bool omit_empty_values);
  // A JSON dictionary (one object per line). String values are format
  // strings; a value that is exactly one operator keeps its type (a number
  // for RESPONSE_CODE, DURATION, BYTES_*, null when missing); numbers, bools
  // and nested objects and lists are kept. omit_empty_values drops keys whose
  // value is missing or empty. The error names the key.
  static Result<std::unique_ptr<Formatter>> json(const google::protobuf::Struct& format,
                                                 bool omit_empty_values);

  ~Formatter();
  Formatter(const Formatter&) = delete;
  Formatter& operator=(const Formatter&) = delete;

  // Appends the rendered line to out.
  void format(const LogContext& context, std::string& out) const;
  // Whether a format prints the addresses that cost a getsockname each.
  bool usesDownstreamLocalAddress() const { return uses_downstream_local_; }
  bool usesUpstreamLocalAddress() const { return uses_upstream_local_; }

  struct Node;  // formatter.cc

 private:
  Formatter();
  std::unique_ptr<Node> root_;
  bool json_ = false;
  bool omit_empty_ = false;
  bool uses_downstream_local_ = false;
  bool uses_upstream_local_ = false;
};

}  // namespace skiff::access_log
