// A route's hash_policy (config.route.v3.RouteAction.HashPolicy): the key by
// which a consistent hashing cluster (RING_HASH, MAGLEV) picks a host, so that
// requests with the same header, cookie, query parameter or source address
// reach the same host. Compiled once with the route table; a request's hash is
// computed only when its cluster's load balancer asks for it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/common/status.h"
#include "proxy/http/header_map.h"

namespace envoy::config::route::v3 {
class RouteAction_HashPolicy;
}
namespace google::protobuf {
template <typename T>
class RepeatedPtrField;
}
namespace re2 {
class RE2;
}

namespace skiff::router {

class HashPolicy {
 public:
  // One hash_policy entry.
  struct Method {
    enum class Kind { kHeader, kCookie, kSourceIp, kQueryParameter };
    Kind kind = Kind::kHeader;
    std::string name;  // kHeader (lowercase), kCookie, kQueryParameter.
    // kHeader: regex_rewrite applied to each value before it is hashed.
    std::shared_ptr<const re2::RE2> rewrite;
    std::string rewrite_substitution;
    bool terminal = false;  // A hash so far ends the list.
  };

  // Compiles RouteAction.hash_policy; where names it in errors
  // ("...routes[0].route.hash_policy").
  static Result<HashPolicy> compile(const google::protobuf::RepeatedPtrField<
                                        envoy::config::route::v3::RouteAction_HashPolicy>& policies,
                                    const std::string& where);

  // The request's hash, or nothing when no entry produced one (the load
  // balancer then picks a random host). As Envoy: each entry that yields a
  // value is XORed into the hash rotated left by one, and a terminal entry
  // that leaves a hash stops the list. downstream_address is the peer's
  // "ip:port" (IPv6 in brackets) for source_ip.
  std::optional<uint64_t> generate(const HeaderMap& request,
                                   std::string_view downstream_address) const;

  const std::vector<Method>& methods() const { return methods_; }

 private:
  std::vector<Method> methods_;
};

// The value of cookie name in the request's Cookie fields (the first one,
// without the quotes of a quoted value), or empty. Exposed for tests.
std::string_view cookieValue(const HeaderMap& request, std::string_view name);
// The first value of query parameter name in path ("" for "?name" or
// "?name="), not percent-decoded, as Envoy; nothing when it is absent.
std::optional<std::string_view> queryParameter(std::string_view path, std::string_view name);

}  // namespace skiff::router
