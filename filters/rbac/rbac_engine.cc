#include "filters/rbac/rbac_engine.h"

#include <algorithm>

#include "envoy/config/rbac/v3/rbac.pb.h"

// skiff reads the deprecated Principal.source_ip because Envoy still honours
// it and configs still use it.
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace skiff::filters::rbac {
namespace {

namespace rbac_v3 = envoy::config::rbac::v3;

bool ipIn(const http::CidrRange& range, const http::IpAddress* ip) {
  return ip != nullptr && range.contains(*ip);
}

// Envoy's PathUtil::removeQueryAndFragment.
std::string_view pathWithoutQuery(std::string_view path) {
  size_t end = path.find_first_of("?#");
  return end == std::string_view::npos ? path : path.substr(0, end);
}

bool peerMatches(const router::StringMatch& m, const DownstreamConnectionInfo& c) {
  // Envoy's AuthenticatedMatcher: any URI SAN, then any DNS SAN, then the
  // subject.
  for (const std::string& uri : c.peer_uri_sans) {
    if (m.matches(uri)) return true;
  }
  for (const std::string& dns : c.peer_dns_sans) {
    if (m.matches(dns)) return true;
  }
  return m.matches(c.peer_subject);
}

// Compiles the shared kinds of Permission and Principal; the caller has
// named the field.
Result<RbacMatcher> cidrMatcher(RbacMatcher::Kind kind, const envoy::config::core::v3::CidrRange& c,
                                const std::string& at, uint8_t& needs) {
  RbacMatcher m;
  m.kind = kind;
  const uint32_t len = c.has_prefix_len() ? c.prefix_len().value() : 0;
  std::optional<http::CidrRange> range = http::parseCidrRange(c.address_prefix(), len);
  if (!range) {
    return configError(at + ": '" + c.address_prefix() + "/" + std::to_string(len) +
                       "' is not an IP range");
  }
  m.cidr = *range;
  needs |= kind == RbacMatcher::Kind::kRemoteIp ? RbacEngine::kNeedsRemoteIp
                                                : RbacEngine::kNeedsConnection;
  return m;
}

Result<RbacMatcher> stringMatcher(RbacMatcher::Kind kind,
                                  const envoy::type::matcher::v3::StringMatcher& s,
                                  const std::string& at) {
  RbacMatcher m;
  m.kind = kind;
  auto compiled = router::compileStringMatch(s, at);
  if (!compiled) return compiled.status();
  m.string = std::move(*compiled);
  m.has_string = true;
  return m;
}

Result<RbacMatcher> headerMatcher(const envoy::config::route::v3::HeaderMatcher& h,
                                  const std::string& at) {
  RbacMatcher m;
  m.kind = RbacMatcher::Kind::kHeader;
  auto compiled = router::compileHeaderMatch(h, at);
  if (!compiled) return compiled.status();
  m.header = std::move(*compiled);
  return m;
}

Result<RbacMatcher> pathMatcher(const envoy::type::matcher::v3::PathMatcher& p,
                                const std::string& at) {
  if (!p.has_path()) return configError(at + ".path: is required");
  return stringMatcher(RbacMatcher::Kind::kUrlPath, p.path(), at + ".path");
}

template <class Proto, class Compile>
Result<RbacMatcher> setOf(RbacMatcher::Kind kind,
                          const google::protobuf::RepeatedPtrField<Proto>& items,
                          const std::string& at, Compile&& compile) {
  // Envoy's validation: a set has at least one member.
  if (items.empty()) return configError(at + ": needs at least one entry");
  RbacMatcher m;
  m.kind = kind;
  for (int i = 0; i < items.size(); ++i) {
    auto child = compile(items[i], at + "[" + std::to_string(i) + "]");
    if (!child) return child.status();
    m.children.push_back(std::move(*child));
  }
  return m;
}

Result<RbacMatcher> compilePermission(const rbac_v3::Permission& p, const std::string& at,
                                      uint8_t& needs) {
  auto recurse = [&needs](const rbac_v3::Permission& child, const std::string& where) {
    return compilePermission(child, where, needs);
  };
  using K = RbacMatcher::Kind;
  switch (p.rule_case()) {
    case rbac_v3::Permission::kAndRules:
      return setOf(K::kAnd, p.and_rules().rules(), at + ".and_rules.rules", recurse);
    case rbac_v3::Permission::kOrRules:
      return setOf(K::kOr, p.or_rules().rules(), at + ".or_rules.rules", recurse);
    case rbac_v3::Permission::kAny:
      if (!p.any()) return configError(at + ".any: must be true");
      return RbacMatcher{};
    case rbac_v3::Permission::kHeader:
      return headerMatcher(p.header(), at + ".header");
    case rbac_v3::Permission::kUrlPath:
      return pathMatcher(p.url_path(), at + ".url_path");
    case rbac_v3::Permission::kDestinationIp:
      return cidrMatcher(K::kDestinationIp, p.destination_ip(), at + ".destination_ip", needs);
    case rbac_v3::Permission::kDestinationPort: {
      if (p.destination_port() > 65535) {
        return configError(at + ".destination_port: " + std::to_string(p.destination_port()) +
                           " is not a port");
      }
      RbacMatcher m;
      m.kind = K::kDestinationPort;
      m.port_start = p.destination_port();
      needs |= RbacEngine::kNeedsConnection;
      return m;
    }
    case rbac_v3::Permission::kDestinationPortRange: {
      const auto& r = p.destination_port_range();
      // Envoy's bounds: 0 <= start < end <= 65536.
      if (r.start() < 0 || r.end() > 65536 || r.start() >= r.end()) {
        return configError(at + ".destination_port_range: [" + std::to_string(r.start()) + ", " +
                           std::to_string(r.end()) + ") is not a range of ports");
      }
      RbacMatcher m;
      m.kind = K::kDestinationPortRange;
      m.port_start = r.start();
      m.port_end = r.end();
      needs |= RbacEngine::kNeedsConnection;
      return m;
    }
    case rbac_v3::Permission::kNotRule: {
      auto child = compilePermission(p.not_rule(), at + ".not_rule", needs);
      if (!child) return child.status();
      RbacMatcher m;
      m.kind = K::kNot;
      m.children.push_back(std::move(*child));
      return m;
    }
    case rbac_v3::Permission::kRequestedServerName:
      needs |= RbacEngine::kNeedsConnection;
      return stringMatcher(K::kRequestedServerName, p.requested_server_name(),
                           at + ".requested_server_name");
    case rbac_v3::Permission::RULE_NOT_SET:
      return configError(at + ": one of its rules is required");
    default:
      break;
  }
  const auto* field = p.GetDescriptor()->FindFieldByNumber(static_cast<int>(p.rule_case()));
  return configError(at + "." + (field != nullptr ? field->name() : "rule") +
                     ": not supported yet");
}

Result<RbacMatcher> compilePrincipal(const rbac_v3::Principal& p, const std::string& at,
                                     uint8_t& needs) {
  auto recurse = [&needs](const rbac_v3::Principal& child, const std::string& where) {
    return compilePrincipal(child, where, needs);
  };
  using K = RbacMatcher::Kind;
  switch (p.identifier_case()) {
    case rbac_v3::Principal::kAndIds:
      return setOf(K::kAnd, p.and_ids().ids(), at + ".and_ids.ids", recurse);
    case rbac_v3::Principal::kOrIds:
      return setOf(K::kOr, p.or_ids().ids(), at + ".or_ids.ids", recurse);
    case rbac_v3::Principal::kAny:
      if (!p.any()) return configError(at + ".any: must be true");
      return RbacMatcher{};
    case rbac_v3::Principal::kAuthenticated: {
      needs |= RbacEngine::kNeedsConnection;
      if (!p.authenticated().has_principal_name()) {
        RbacMatcher m;
        m.kind = K::kAuthenticated;
        return m;
      }
      return stringMatcher(K::kAuthenticated, p.authenticated().principal_name(),
                           at + ".authenticated.principal_name");
    }
    case rbac_v3::Principal::kSourceIp:
      // Deprecated in Envoy: the connection's peer, as direct_remote_ip.
      return cidrMatcher(K::kDirectRemoteIp, p.source_ip(), at + ".source_ip", needs);
    case rbac_v3::Principal::kDirectRemoteIp:
      return cidrMatcher(K::kDirectRemoteIp, p.direct_remote_ip(), at + ".direct_remote_ip", needs);
    case rbac_v3::Principal::kRemoteIp:
      return cidrMatcher(K::kRemoteIp, p.remote_ip(), at + ".remote_ip", needs);
    case rbac_v3::Principal::kHeader:
      return headerMatcher(p.header(), at + ".header");
    case rbac_v3::Principal::kUrlPath:
      return pathMatcher(p.url_path(), at + ".url_path");
    case rbac_v3::Principal::kNotId: {
      auto child = compilePrincipal(p.not_id(), at + ".not_id", needs);
      if (!child) return child.status();
      RbacMatcher m;
      m.kind = K::kNot;
      m.children.push_back(std::move(*child));
      return m;
    }
    case rbac_v3::Principal::IDENTIFIER_NOT_SET:
      return configError(at + ": one of its identifiers is required");
    default:
      break;
  }
  const auto* field = p.GetDescriptor()->FindFieldByNumber(static_cast<int>(p.identifier_case()));
  return configError(at + "." + (field != nullptr ? field->name() : "identifier") +
                     ": not supported yet");
}

}  // namespace

const std::string_view kDeniedNoPolicyDetails = "rbac_access_denied_matched_policy[none]";

bool RbacMatcher::matches(const RequestView& request) const {
  const DownstreamConnectionInfo* c = request.connection;
  switch (kind) {
    case Kind::kAny:
      return true;
    case Kind::kAnd:
      for (const RbacMatcher& child : children) {
        if (!child.matches(request)) return false;
      }
      return true;
    case Kind::kOr:
      for (const RbacMatcher& child : children) {
        if (child.matches(request)) return true;
      }
      return false;
    case Kind::kNot:
      return !children.front().matches(request);
    case Kind::kHeader:
      return header.matches(*request.headers);
    case Kind::kUrlPath: {
      auto path = request.headers->get(WellKnownHeader::kPath);
      return path && string.matches(pathWithoutQuery(*path));
    }
    case Kind::kDestinationIp:
      return c != nullptr && c->has_local && cidr.contains(c->local_ip);
    case Kind::kDestinationPort:
      return c != nullptr && c->has_local && c->local_port == port_start;
    case Kind::kDestinationPortRange:
      return c != nullptr && c->has_local && c->local_port >= port_start &&
             c->local_port < port_end;
    case Kind::kRequestedServerName:
      return string.matches(c != nullptr ? std::string_view(c->sni) : std::string_view());
    case Kind::kAuthenticated:
      if (c == nullptr || !c->tls) return false;
      return !has_string || peerMatches(string, *c);
    case Kind::kDirectRemoteIp:
      return c != nullptr && ipIn(cidr, &c->peer_ip);
    case Kind::kRemoteIp:
      return request.remote_ip && cidr.contains(*request.remote_ip);
  }
  return false;
}

RbacEngine::Decision RbacEngine::evaluate(const RequestView& request) const {
  const RbacPolicy* matched = nullptr;
  for (const RbacPolicy& p : policies) {
    if (p.permissions.matches(request) && p.principals.matches(request)) {
      matched = &p;
      break;
    }
  }
  switch (action) {
    case Action::kAllow:
      return {matched != nullptr, matched};
    case Action::kDeny:
      return {matched == nullptr, matched};
    case Action::kLog:
      break;
  }
  return {true, matched};
}

Result<RbacEngine> compileRbacEngine(const rbac_v3::RBAC& proto, const std::string& path) {
  RbacEngine engine;
  switch (proto.action()) {
    case rbac_v3::RBAC::ALLOW:
      engine.action = RbacEngine::Action::kAllow;
      break;
    case rbac_v3::RBAC::DENY:
      engine.action = RbacEngine::Action::kDeny;
      break;
    case rbac_v3::RBAC::LOG:
      engine.action = RbacEngine::Action::kLog;
      break;
    default:
      return configError(path + ".action: " + std::to_string(proto.action()) + " is not an action");
  }
  if (proto.has_audit_logging_options()) {
    return configError(path + ".audit_logging_options: not supported yet");
  }
  std::vector<std::string> names;
  for (const auto& [name, policy] : proto.policies()) names.push_back(name);
  std::sort(names.begin(), names.end());  // Envoy's order: its policies are a sorted map.
  for (const std::string& name : names) {
    const rbac_v3::Policy& policy = proto.policies().at(name);
    const std::string at = path + ".policies[\"" + name + "\"]";
    if (policy.has_condition()) return configError(at + ".condition: not supported yet");
    if (policy.has_checked_condition()) {
      return configError(at + ".checked_condition: not supported yet");
    }
    RbacPolicy p;
    p.name = name;
    // Envoy writes the name's whitespace as '_', so that a space-separated
    // access log keeps its fields.
    std::string logged = name;
    for (char& c : logged) {
      if (c == ' ' || c == '\t' || c == '\f' || c == '\v' || c == '\n' || c == '\r') c = '_';
    }
    p.denied_details = "rbac_access_denied_matched_policy[" + logged + "]";
    auto permissions = setOf(RbacMatcher::Kind::kOr, policy.permissions(), at + ".permissions",
                             [&engine](const rbac_v3::Permission& x, const std::string& where) {
                               return compilePermission(x, where, engine.needs);
                             });
    if (!permissions) return permissions.status();
    p.permissions = std::move(*permissions);
    auto principals = setOf(RbacMatcher::Kind::kOr, policy.principals(), at + ".principals",
                            [&engine](const rbac_v3::Principal& x, const std::string& where) {
                              return compilePrincipal(x, where, engine.needs);
                            });
    if (!principals) return principals.status();
    p.principals = std::move(*principals);
    engine.policies.push_back(std::move(p));
  }
  return engine;
}

}  // namespace skiff::filters::rbac
