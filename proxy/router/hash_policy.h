// A route's hash_policy (config.route.v3.RouteAction.HashPolicy): the key by
// which a consistent hashing cluster (RING_HASH, MAGLEV) picks a host, so that
// requests with the same header, cookie, query parameter or source address
// reach the same host. Compiled once with the route table; a request's hash is
// computed only when its cluster's load balancer asks for it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
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

// Where a cookie entry with a ttl puts the cookie it makes when the request
// has none (the router filter, for the response).
class CookieSink {
 public:
  virtual ~CookieSink() = default;
  // The downstream connection's local address, "ip:port" (empty if unknown).
  virtual std::string downstreamLocalAddress() const = 0;
  // A Set-Cookie value for the upstream's response; a later one replaces it.
  virtual void setCookie(std::string value) = 0;
};

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
    // kCookie with a ttl: a request without the cookie gets one made, set
    // on the response with Max-Age=ttl (none when 0), Path and attributes.
    std::optional<std::chrono::seconds> ttl;
    std::string path;
    std::vector<std::pair<std::string, std::string>> attributes;
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
  // "ip:port" (IPv6 in brackets). source_ip hashes remote_ip, Envoy's
  // downstream remote address (what x-forwarded-for names under
  // use_remote_address and xff_num_trusted_hops), or when it is empty the
  // peer's IP. cookies (may be null)
  // receives the cookie a ttl entry makes, as Envoy's: the value is the hex
  // xxHash64 of the peer's and the local "ip:port", and it is hashed as a
  // cookie the request had would be, so the next request that carries it
  // reaches the same host.
  std::optional<uint64_t> generate(const HeaderMap& request, std::string_view downstream_address,
                                   CookieSink* cookies = nullptr,
                                   std::string_view remote_ip = {}) const;

  const std::vector<Method>& methods() const { return methods_; }
  // Whether an entry hashes the source IP (which then needs remote_ip).
  bool hashesSourceIp() const {
    for (const Method& m : methods_) {
      if (m.kind == Method::Kind::kSourceIp) return true;
    }
    return false;
  }

 private:
  std::vector<Method> methods_;
};

// The value of cookie name in the request's Cookie fields (the first one,
// without the quotes of a quoted value), or empty. Exposed for tests.
std::string_view cookieValue(const HeaderMap& request, std::string_view name);
// The first value of query parameter name in path ("" for "?name" or
// "?name="), not percent-decoded, as Envoy; nothing when it is absent.
std::optional<std::string_view> queryParameter(std::string_view path, std::string_view name);
// Envoy's Set-Cookie value: name="value"; Max-Age=ttl (unless 0); Path=path
// (unless empty); each attribute as "name" or "name=value"; HttpOnly.
std::string setCookieValue(const HashPolicy::Method& cookie, std::string_view value);

}  // namespace skiff::router
