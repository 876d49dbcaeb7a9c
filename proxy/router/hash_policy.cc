#include "proxy/router/hash_policy.h"

#include <re2/re2.h>

#include <algorithm>
#include <cstdio>

#include "envoy/config/route/v3/route_components.pb.h"
#include "proxy/common/hash.h"
#include "proxy/router/header_matcher.h"

namespace skiff::router {

namespace rv3 = envoy::config::route::v3;

namespace {

std::string fieldAt(const std::string& where, int i) {
  return where + "[" + std::to_string(i) + "]";
}

std::string_view trimLeft(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  return s;
}

// The source_ip key: the address of "ip:port" without port or brackets, as
// Envoy's addressAsString gives it.
std::string_view ipOf(std::string_view address) {
  size_t colon = address.rfind(':');
  if (colon == std::string_view::npos) return address;
  address = address.substr(0, colon);
  if (address.size() >= 2 && address.front() == '[' && address.back() == ']') {
    address = address.substr(1, address.size() - 2);
  }
  return address;
}

}  // namespace

std::string_view cookieValue(const HeaderMap& request, std::string_view name) {
  for (const HeaderMap::Entry& e : request.entries()) {
    if (!equalsIgnoreCase(e.name, "cookie")) continue;
    std::string_view rest = e.value;
    while (!rest.empty()) {
      size_t semi = rest.find(';');
      std::string_view pair = trimLeft(rest.substr(0, semi));
      rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
      size_t eq = pair.find('=');
      if (eq == std::string_view::npos || pair.substr(0, eq) != name) continue;
      std::string_view value = pair.substr(eq + 1);
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
        value = value.substr(1, value.size() - 2);
      }
      return value;
    }
  }
  return {};
}

std::optional<std::string_view> queryParameter(std::string_view path, std::string_view name) {
  size_t q = path.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view rest = path.substr(q + 1);
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view param = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    size_t eq = param.find('=');
    if (param.substr(0, eq) != name) continue;
    return eq == std::string_view::npos ? std::string_view() : param.substr(eq + 1);
  }
  return std::nullopt;
}

Result<HashPolicy> HashPolicy::compile(
    const google::protobuf::RepeatedPtrField<rv3::RouteAction::HashPolicy>& policies,
    const std::string& where) {
  HashPolicy out;
  for (int i = 0; i < policies.size(); ++i) {
    const rv3::RouteAction::HashPolicy& p = policies.Get(i);
    const std::string at = fieldAt(where, i);
    Method m;
    m.terminal = p.terminal();
    switch (p.policy_specifier_case()) {
      case rv3::RouteAction::HashPolicy::kHeader: {
        const auto& h = p.header();
        if (h.header_name().empty()) {
          return configError(at + ".header.header_name: must not be empty");
        }
        m.kind = Method::Kind::kHeader;
        m.name = toLower(h.header_name());
        if (h.has_regex_rewrite()) {
          const std::string rat = at + ".header.regex_rewrite";
          auto re = compileRegex(h.regex_rewrite().pattern().regex(), rat + ".pattern.regex");
          if (!re) return re.status();
          std::string error;
          if (!(*re)->CheckRewriteString(h.regex_rewrite().substitution(), &error)) {
            return configError(rat + ".substitution: " + error);
          }
          m.rewrite = std::move(*re);
          m.rewrite_substitution = h.regex_rewrite().substitution();
        }
        break;
      }
      case rv3::RouteAction::HashPolicy::kCookie: {
        const auto& c = p.cookie();
        if (c.name().empty()) return configError(at + ".cookie.name: must not be empty");
        if (c.has_ttl()) {
          if (c.ttl().seconds() < 0) {
            return configError(at + ".cookie.ttl: must not be negative");
          }
          m.ttl = std::chrono::seconds(c.ttl().seconds());
        } else if (!c.path().empty() || c.attributes_size() > 0) {
          // Envoy uses them only to make a cookie, which needs a ttl.
          return configError(at + ".cookie" + (c.path().empty() ? ".attributes" : ".path") +
                             ": has no effect without ttl");
        }
        m.path = c.path();
        for (int j = 0; j < c.attributes_size(); ++j) {
          const auto& attribute = c.attributes(j);
          if (attribute.name().empty()) {
            return configError(at + ".cookie.attributes[" + std::to_string(j) +
                               "].name: must not be empty");
          }
          m.attributes.emplace_back(attribute.name(), attribute.value());
        }
        m.kind = Method::Kind::kCookie;
        m.name = c.name();
        break;
      }
      case rv3::RouteAction::HashPolicy::kConnectionProperties:
        // Envoy adds no entry for source_ip: false.
        if (!p.connection_properties().source_ip()) continue;
        m.kind = Method::Kind::kSourceIp;
        break;
      case rv3::RouteAction::HashPolicy::kQueryParameter:
        if (p.query_parameter().name().empty()) {
          return configError(at + ".query_parameter.name: must not be empty");
        }
        m.kind = Method::Kind::kQueryParameter;
        m.name = p.query_parameter().name();
        break;
      case rv3::RouteAction::HashPolicy::kFilterState:
        return configError(at + ".filter_state: is not supported");
      default:
        return configError(at +
                           ": one of header, cookie, connection_properties, query_parameter "
                           "is required");
    }
    out.methods_.push_back(std::move(m));
  }
  return out;
}

std::string setCookieValue(const HashPolicy::Method& cookie, std::string_view value) {
  std::string out = cookie.name;
  out += "=\"";
  out += value;
  out += '"';
  if (cookie.ttl && cookie.ttl->count() != 0) {
    out += "; Max-Age=";
    out += std::to_string(cookie.ttl->count());
  }
  if (!cookie.path.empty()) {
    out += "; Path=";
    out += cookie.path;
  }
  for (const auto& [name, attribute] : cookie.attributes) {
    out += "; ";
    out += name;
    if (!attribute.empty()) {
      out += '=';
      out += attribute;
    }
  }
  out += "; HttpOnly";
  return out;
}

std::optional<uint64_t> HashPolicy::generate(const HeaderMap& request,
                                             std::string_view downstream_address,
                                             CookieSink* cookies,
                                             std::string_view remote_ip) const {
  std::optional<uint64_t> hash;
  for (const Method& m : methods_) {
    std::optional<uint64_t> next;
    switch (m.kind) {
      case Method::Kind::kHeader: {
        // Every value of the field, sorted so that their order does not
        // matter, hashed one after the other. One value (the usual case)
        // without a rewrite is hashed where it lies, with no vector made.
        const HeaderMap::Entry* only = nullptr;
        size_t count = 0;
        for (const HeaderMap::Entry& e : request.entries()) {
          if (!equalsIgnoreCase(e.name, m.name)) continue;
          if (++count == 1) only = &e;
        }
        if (count == 0) break;
        if (count == 1 && !m.rewrite) {
          next = xxHash64(only->value);
          break;
        }
        std::vector<std::string_view> values;
        std::vector<std::string> rewritten;
        values.reserve(count);
        for (const HeaderMap::Entry& e : request.entries()) {
          if (equalsIgnoreCase(e.name, m.name)) values.push_back(e.value);
        }
        if (m.rewrite) {
          rewritten.reserve(values.size());
          for (std::string_view& v : values) {
            rewritten.emplace_back(v);
            re2::RE2::GlobalReplace(&rewritten.back(), *m.rewrite, m.rewrite_substitution);
            v = rewritten.back();
          }
        }
        std::sort(values.begin(), values.end());
        next = xxHash64(std::span<const std::string_view>(values));
        break;
      }
      case Method::Kind::kCookie: {
        std::string_view value = cookieValue(request, m.name);
        if (!value.empty()) {
          next = xxHash64(value);
        } else if (m.ttl && cookies) {
          // As Envoy: a cookie made from the connection's two addresses.
          std::string addresses(downstream_address);
          addresses += cookies->downstreamLocalAddress();
          char made[17];
          std::snprintf(made, sizeof(made), "%016llx",
                        static_cast<unsigned long long>(xxHash64(addresses)));
          cookies->setCookie(setCookieValue(m, made));
          next = xxHash64(made);
        }
        break;
      }
      case Method::Kind::kSourceIp: {
        std::string_view ip = remote_ip.empty() ? ipOf(downstream_address) : remote_ip;
        if (!ip.empty()) next = xxHash64(ip);
        break;
      }
      case Method::Kind::kQueryParameter: {
        std::optional<std::string_view> value = queryParameter(request.path(), m.name);
        if (value) next = xxHash64(*value);
        break;
      }
    }
    if (next) {
      // Rotating what came before keeps two equal entries from cancelling out.
      const uint64_t before = hash ? (*hash << 1) | (*hash >> 63) : 0;
      hash = before ^ *next;
    }
    if (m.terminal && hash) break;
  }
  return hash;
}

}  // namespace skiff::router
