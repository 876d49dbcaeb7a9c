#include "proxy/http/edge_headers.h"

#include <arpa/inet.h>

#include <cstring>

namespace skiff::http {

namespace {

// The x-envoy-* request headers Envoy removes from a request that is not
// internal (ConnectionManagerUtility::cleanInternalHeaders, and the
// "HTTP header sanitizing" page, which adds x-envoy-upstream-stream-duration-ms),
// without their "x-envoy-" prefix. First those the router consumes (its "HTTP
// headers consumed from downstreams"): an internal request that keeps one is
// marked for the router (HeaderMap::markRouterOverrides).
constexpr std::string_view kRouterOverrides[] = {
    "retriable-status-codes",
    "retriable-header-names",
    "retry-on",
    "retry-grpc-on",
    "max-retries",
    "upstream-rq-timeout-ms",
    "upstream-rq-per-try-timeout-ms",
    "upstream-rq-timeout-alt-response",
    "hedge-on-per-try-timeout",
    "upstream-stream-duration-ms",
};
constexpr std::string_view kInternalOnly[] = {
    "upstream-alt-stat-name", "expected-rq-timeout-ms", "force-trace", "ip-tags", "original-url",
};
// ... and from an edge request also these (an internal hop may pass them on);
// external-address because skiff sets its own.
constexpr std::string_view kEdgeOnly[] = {
    "decorator-operation",
    "downstream-service-cluster",
    "downstream-service-node",
    "external-address",
};
constexpr std::string_view kInternal = "internal";  // x-envoy-internal: never from a client.

bool listed(std::string_view rest, std::span<const std::string_view> names) {
  for (std::string_view n : names) {
    if (equalsIgnoreCase(rest, n)) return true;
  }
  return false;
}

// Whether sanitizing removes the x-envoy-* field name; an internal request
// that keeps one the router consumes is marked so.
bool removable(std::string_view name, const RequestOrigin& origin, HeaderMap& headers) {
  std::string_view rest = name.substr(8);
  if (equalsIgnoreCase(rest, kInternal)) return true;
  if (origin.internal) {
    if (listed(rest, kRouterOverrides)) headers.markRouterOverrides();
    return false;
  }
  return listed(rest, kRouterOverrides) || listed(rest, kInternalOnly) ||
         (origin.edge && listed(rest, kEdgeOnly));
}

}  // namespace

std::optional<IpAddress> parseIp(std::string_view text) {
  char buf[INET6_ADDRSTRLEN];
  if (text.empty() || text.size() >= sizeof(buf)) return std::nullopt;
  std::memcpy(buf, text.data(), text.size());  // Copy: inet_pton wants a C string.
  buf[text.size()] = '\0';
  IpAddress ip;
  if (inet_pton(AF_INET, buf, ip.bytes.data()) == 1) return ip;
  if (inet_pton(AF_INET6, buf, ip.bytes.data()) == 1) {
    ip.v6 = true;
    return ip;
  }
  return std::nullopt;
}

bool CidrRange::contains(const IpAddress& ip) const {
  if (ip.v6 != address.v6) return false;
  uint32_t full = prefix_len / 8;
  if (std::memcmp(ip.bytes.data(), address.bytes.data(), full) != 0) return false;
  uint32_t bits = prefix_len % 8;
  if (bits == 0) return true;
  auto mask = static_cast<uint8_t>(0xff << (8 - bits));
  return (ip.bytes[full] & mask) == (address.bytes[full] & mask);
}

std::optional<CidrRange> parseCidrRange(std::string_view address_prefix, uint32_t prefix_len) {
  std::optional<IpAddress> ip = parseIp(address_prefix);
  if (!ip || prefix_len > (ip->v6 ? 128u : 32u)) return std::nullopt;
  return CidrRange{*ip, prefix_len};
}

bool isInternalAddress(std::string_view ip_text, const std::vector<CidrRange>& ranges) {
  if (ranges.empty()) return false;
  std::optional<IpAddress> ip = parseIp(ip_text);
  if (!ip) return false;
  for (const CidrRange& r : ranges) {
    if (r.contains(*ip)) return true;
  }
  return false;
}

std::optional<XffAddress> lastXffAddress(std::string_view xff, uint32_t num_to_skip) {
  for (uint32_t i = 0; i < num_to_skip; ++i) {
    size_t comma = xff.rfind(',');
    if (comma == std::string_view::npos) return std::nullopt;
    xff = xff.substr(0, comma);
  }
  size_t comma = xff.rfind(',');
  std::string_view last = comma == std::string_view::npos ? xff : xff.substr(comma + 1);
  // HTTP lists allow whitespace around their elements (RFC 9110 §5.6.1).
  while (!last.empty() && (last.front() == ' ' || last.front() == '\t')) last.remove_prefix(1);
  while (!last.empty() && (last.back() == ' ' || last.back() == '\t')) last.remove_suffix(1);
  return XffAddress{last, comma == std::string_view::npos && num_to_skip == 0};
}

RequestOrigin classifyRequestSlow(const OriginRules& rules, std::optional<std::string_view> xff,
                                  std::string_view peer_ip) {
  const std::vector<CidrRange>& ranges = *rules.internal_ranges;
  RequestOrigin o;
  if (rules.use_remote_address) {
    // Envoy's rule: internal only when no proxy came before (no
    // x-forwarded-for) and the peer is internal. The client's address is the
    // peer's, or with xff_num_trusted_hops the one those trusted proxies
    // wrote, when it is an IP.
    o.internal = !xff && isInternalAddress(peer_ip, ranges);
    o.edge = !o.internal;
    o.external_address = peer_ip;
    if (o.edge && xff && rules.xff_num_trusted_hops > 0) {
      auto a = lastXffAddress(*xff, rules.xff_num_trusted_hops - 1);
      if (a && parseIp(a->address)) o.external_address = a->address;
    }
    return o;
  }
  // Not using the remote address: x-forwarded-for decides, and only a list of
  // exactly one internal address (with no trusted hops) makes the request
  // internal. It is never an edge request: a proxy before skiff was the edge.
  if (xff && !ranges.empty()) {
    auto a = lastXffAddress(*xff, rules.xff_num_trusted_hops);
    o.internal = a && a->single && isInternalAddress(a->address, ranges);
  }
  return o;
}

void sanitizeRequestHeadersSlow(HeaderMap& headers, const RequestOrigin& origin) {
  size_t i = 0;
  while (i < headers.size()) {
    std::string_view name = headers.entries()[i].name;
    if (name.size() >= kShortestSanitizedName && hasEnvoyPrefix(name.data()) &&
        removable(name, origin, headers)) {
      headers.removeAt(i);
    } else {
      ++i;
    }
  }
  if (origin.internal) {
    headers.addView("x-envoy-internal", "true");
  } else if (origin.edge) {
    headers.addCopy("x-envoy-external-address", origin.external_address);
  }
}

}  // namespace skiff::http
