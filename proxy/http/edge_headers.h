// Envoy's header sanitizing at the edge (its "HTTP header sanitizing" page and
// ConnectionManagerUtility): whether a request is internal (it came from an
// address the connection manager's internal_address_config lists, with no
// proxy before it) or external, and the x-envoy-* request headers an external
// client may not set, since they steer the retries and timeouts of every
// Envoy-compatible proxy further on. Pure functions over a HeaderMap, so the
// rules are tested without sockets; the connection manager calls them once
// per request.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/http/header_map.h"

namespace skiff::http {

// An IP address as bytes (network order; IPv4 in the first 4).
struct IpAddress {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};
};
// An IP literal, without port or brackets ("10.0.0.1", "::1"); nullopt if it
// is not one. Whitespace is not allowed.
std::optional<IpAddress> parseIp(std::string_view text);

// Envoy's CidrRange: the addresses whose first prefix_len bits are those of
// address. A range of one family never contains an address of the other.
struct CidrRange {
  IpAddress address;
  uint32_t prefix_len = 0;
  bool contains(const IpAddress& ip) const;
};
// address_prefix/prefix_len as the config gives them; nullopt if the address
// is not an IP literal or the length is longer than the family's.
std::optional<CidrRange> parseCidrRange(std::string_view address_prefix, uint32_t prefix_len);

// Whether ip_text (an IP literal) is in one of ranges. Envoy (since 1.36)
// calls no address internal unless internal_address_config lists it, so an
// empty list answers false without parsing: the default costs nothing.
bool isInternalAddress(std::string_view ip_text, const std::vector<CidrRange>& ranges);

// Envoy's Utility::getLastAddressFromXFF: the address num_to_skip entries
// from the right of an x-forwarded-for value, with its whitespace trimmed
// (not checked to be an IP); nullopt when the list is shorter. single is true
// when the value is exactly one entry and none was skipped: only then may the
// address make a request internal.
struct XffAddress {
  std::string_view address;
  bool single = false;
};
std::optional<XffAddress> lastXffAddress(std::string_view xff, uint32_t num_to_skip);

// What the connection manager's rules make of one request.
struct RequestOrigin {
  // Internal: Envoy adds x-envoy-internal: true and keeps the x-envoy-*
  // headers a trusted caller may send.
  bool internal = false;
  // Edge: external and use_remote_address (skiff is the first trusted hop):
  // x-envoy-external-address is set to external_address, a fresh
  // x-request-id replaces the client's (unless preserve_external_request_id).
  bool edge = false;
  std::string_view external_address;  // A view into peer_ip or the request's x-forwarded-for.
};
struct OriginRules {
  bool use_remote_address = false;
  uint32_t xff_num_trusted_hops = 0;
  const std::vector<CidrRange>* internal_ranges = nullptr;  // Not null.
};
// Decides for a request whose x-forwarded-for is xff (nullopt: absent) as the
// client sent it, before skiff appends to it. peer_ip: the downstream
// connection's address, without port or brackets.
RequestOrigin classifyRequestSlow(const OriginRules& rules, std::optional<std::string_view> xff,
                                  std::string_view peer_ip);
// The same, for a request's headers.
inline RequestOrigin classifyRequest(const OriginRules& rules, const HeaderMap& request,
                                     std::string_view peer_ip) {
  // Without use_remote_address and with no internal address configured (the
  // defaults) every request is external and none is an edge request: no call.
  if (!rules.use_remote_address && rules.internal_ranges->empty()) return {};
  return classifyRequestSlow(rules, request.get(WellKnownHeader::kXForwardedFor), peer_ip);
}

// Applies Envoy's sanitizing: removes x-envoy-internal (a client may never
// send it), and for a request that is not internal the internal-only x-envoy-*
// headers (cleanInternalHeaders); for an edge request also the ones only the
// edge strips (x-envoy-decorator-operation, x-envoy-downstream-service-*) and
// any x-envoy-external-address. Then adds x-envoy-internal: true (internal) or
// x-envoy-external-address (edge, copied into the map). An internal request
// that keeps an x-envoy-* field the router consumes (retries, timeouts) is
// marked so (HeaderMap::markRouterOverrides): the router looks for them then
// only, and a request without them pays nothing for them.
void sanitizeRequestHeadersSlow(HeaderMap& headers, const RequestOrigin& origin);

// The shortest name sanitizing removes: x-envoy-ip-tags.
inline constexpr size_t kShortestSanitizedName = 15;
// Whether the 8 bytes at p are "x-envoy-" in any case: one 8-byte load and
// compare (0x20 or'ed into the letters' bytes folds their case).
inline bool hasEnvoyPrefix(const char* p) {
  constexpr HeaderName kPrefix{"x-envoy-"};
  return kPrefix.matchesSameSize(p);
}

inline void sanitizeRequestHeaders(HeaderMap& headers, const RequestOrigin& origin) {
  // Most requests carry no x-envoy-* field at all. This pass, inline, looks
  // at each name's length and only at a long name's first 8 bytes; a call
  // and the name lists cost about 60 instructions per request more.
  if (!origin.internal && !origin.edge) {
    bool any = false;
    for (const HeaderMap::Entry& e : headers.entries()) {
      if (e.name.size() >= kShortestSanitizedName && hasEnvoyPrefix(e.name.data())) {
        any = true;
        break;
      }
    }
    if (!any) return;
  }
  sanitizeRequestHeadersSlow(headers, origin);
}

}  // namespace skiff::http
