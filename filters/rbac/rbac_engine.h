// Envoy's RBAC policies (envoy.config.rbac.v3.RBAC), compiled: an action and
// named policies, each a pair of matcher trees (permissions: what the request
// does; principals: who sends it). A policy matches when any of its
// permissions and any of its principals match. The engine tries its policies
// in name order (Envoy keeps them in a sorted map) and the first that
// matches decides: ALLOW lets a request through when one matches, DENY
// refuses it when one matches, LOG lets every request through.
//
// Matching reads the request's headers and what the connection manager knows
// of the connection (RequestView); it never allocates, except where a header
// matcher joins a header that appears more than once (as the route table's
// do).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "filters/filter.h"
#include "proxy/common/status.h"
#include "proxy/http/edge_headers.h"
#include "proxy/http/header_map.h"
#include "proxy/router/header_matcher.h"

namespace envoy::config::rbac::v3 {
class RBAC;
class Permission;
class Principal;
}  // namespace envoy::config::rbac::v3

namespace skiff::filters::rbac {

// What one request offers the matchers. The filter fills in only what its
// policies read (RbacEngine::needs).
struct RequestView {
  const HeaderMap* headers = nullptr;  // Not null.
  // The downstream connection; null when unknown (every matcher of it is
  // then false, as for a plaintext connection's authenticated).
  const DownstreamConnectionInfo* connection = nullptr;
  // Envoy's downstream remote address (x-forwarded-for under the connection
  // manager's rules), for remote_ip.
  std::optional<http::IpAddress> remote_ip;
};

// One node of a permission or principal tree.
struct RbacMatcher {
  enum class Kind : uint8_t {
    kAny,
    kAnd,
    kOr,
    kNot,
    kHeader,
    kUrlPath,               // :path without its query and fragment.
    kDestinationIp,         // The connection's local address.
    kDestinationPort,       // Its port: port_start.
    kDestinationPortRange,  // [port_start, port_end).
    kRequestedServerName,   // SNI ("" without one).
    kAuthenticated,         // A TLS peer: URI SANs, else DNS SANs, else the subject.
    kDirectRemoteIp,        // The connection's peer (also source_ip).
    kRemoteIp,              // RequestView::remote_ip.
  };
  Kind kind = Kind::kAny;
  std::vector<RbacMatcher> children;  // kAnd, kOr; kNot has one.
  router::HeaderMatch header;         // kHeader.
  router::StringMatch string;         // kUrlPath, kRequestedServerName, kAuthenticated.
  bool has_string = false;            // kAuthenticated without principal_name: any peer.
  http::CidrRange cidr;               // The *_ip kinds.
  int64_t port_start = 0;
  int64_t port_end = 0;

  bool matches(const RequestView& request) const;
};

struct RbacPolicy {
  std::string name;
  // Envoy's response code details for a request this policy denies:
  // "rbac_access_denied_matched_policy[<name>]" (whitespace in the name as
  // '_'), made once here so that the access log can keep a view of it.
  std::string denied_details;
  RbacMatcher permissions;  // kOr over the policy's permissions.
  RbacMatcher principals;   // kOr over its principals.
};

class RbacEngine {
 public:
  enum class Action : uint8_t { kAllow, kDeny, kLog };
  // What the policies read besides headers (RequestView's optional parts).
  static constexpr uint8_t kNeedsConnection = 1;
  static constexpr uint8_t kNeedsRemoteIp = 2;

  struct Decision {
    bool allowed = true;
    const RbacPolicy* policy = nullptr;  // The first that matched, if any.
  };
  Decision evaluate(const RequestView& request) const;

  Action action = Action::kAllow;
  std::vector<RbacPolicy> policies;  // In name order.
  uint8_t needs = 0;
};

// "rbac_access_denied_matched_policy[none]": a request denied with no policy
// matched (an ALLOW engine).
extern const std::string_view kDeniedNoPolicyDetails;

// Compiles an RBAC message; path names it in errors ("<path>.policies["p"]
// .permissions[0].header: ..."). Matchers skiff lacks (metadata, CEL
// conditions, filter_state, matcher and uri_template extensions, audit
// logging) are refused by path.
Result<RbacEngine> compileRbacEngine(const envoy::config::rbac::v3::RBAC& proto,
                                     const std::string& path);

}  // namespace skiff::filters::rbac
