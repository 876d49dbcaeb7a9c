// Compiles an Envoy RouteConfiguration into a RouteTable and matches requests
// against it. Compile time does every allocation, lowercasing and regex
// compilation; match() only reads, and allocates nothing unless a matched
// header appears more than once (Envoy joins such values with ',').
#include "proxy/router/route_table.h"

#include <re2/re2.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "envoy/config/core/v3/base.pb.h"
#include "envoy/config/route/v3/route.pb.h"
#include "envoy/config/route/v3/route_components.pb.h"
#include "envoy/type/matcher/v3/regex.pb.h"
#include "envoy/type/matcher/v3/string.pb.h"
#include "proxy/router/duration.h"
#include "proxy/router/header_matcher.h"

// skiff reads deprecated fields (legacy header matchers, HeaderValueOption.append,
// total_weight) because Envoy still honours them and configs still use them.
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace skiff::router {
namespace {

namespace rv3 = envoy::config::route::v3;
namespace mv3 = envoy::type::matcher::v3;
namespace cv3 = envoy::config::core::v3;

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c | 0x20) : c; }

// Case-insensitive hashing with heterogeneous lookup, so a request's host is
// looked up as a string_view without lowercasing it into a copy.
struct CaseInsensitiveHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (char c : s) {
      h ^= static_cast<unsigned char>(lower(c));
      h *= 1099511628211ull;
    }
    return static_cast<size_t>(h);
  }
};
struct CaseInsensitiveEqual {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const { return equalsIgnoreCase(a, b); }
};
template <typename V>
using CaseInsensitiveMap =
    std::unordered_map<std::string, V, CaseInsensitiveHash, CaseInsensitiveEqual>;

// Splits :path into the path proper and the query (without '?'); a fragment
// is dropped, as Envoy's path matchers do.
struct SplitPath {
  std::string_view path;
  std::string_view query;
};
SplitPath splitPath(std::string_view full) {
  SplitPath out;
  // A plain loop: find_first_of("?#") calls memchr on the two-byte set for
  // every byte of the path (30 instructions per request for "/64").
  size_t end = 0;
  while (end < full.size() && full[end] != '?' && full[end] != '#') ++end;
  if (end == full.size()) end = std::string_view::npos;
  out.path = full.substr(0, end);
  if (end != std::string_view::npos && full[end] == '?') {
    std::string_view rest = full.substr(end + 1);
    out.query = rest.substr(0, rest.find('#'));
  }
  return out;
}

struct QueryMatch {
  std::string name;
  std::optional<StringMatch> value;  // none: presence is enough

  // Envoy looks at the first occurrence of the parameter, undecoded.
  bool matches(std::string_view query) const {
    while (!query.empty()) {
      size_t amp = query.find('&');
      std::string_view param = query.substr(0, amp);
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
      size_t eq = param.find('=');
      std::string_view key = param.substr(0, eq);
      if (key != name) continue;
      if (!value) return true;
      return value->matches(eq == std::string_view::npos ? std::string_view()
                                                         : param.substr(eq + 1));
    }
    return false;
  }
};

bool modifiableHeader(std::string_view name) {
  return !name.empty() && name[0] != ':' && name != "host";
}

}  // namespace

Status compileHeaderAdds(const google::protobuf::RepeatedPtrField<cv3::HeaderValueOption>& add,
                         const std::string& where, const char* add_field, HeaderEdits& out) {
  for (int i = 0; i < add.size(); ++i) {
    const auto& o = add[i];
    std::string at = where + "." + add_field + "[" + std::to_string(i) + "]";
    HeaderEdits::Add a;
    a.name = toLower(o.header().key());
    if (!modifiableHeader(a.name)) {
      return configError(at + ".header.key: \"" + o.header().key() +
                         "\" may not be modified (empty, pseudo-header or host)");
    }
    if (!o.header().raw_value().empty()) {
      return configError(at + ".header.raw_value: is not supported (use value)");
    }
    a.value = o.header().value();
    if (a.value.find('%') != std::string::npos) {
      return configError(at + ".header.value: %-substitution is not supported");
    }
    if (o.has_append()) {
      if (o.append_action() != cv3::HeaderValueOption::APPEND_IF_EXISTS_OR_ADD) {
        return configError(at + ": append and append_action are both set");
      }
      a.append = o.append().value() ? HeaderEdits::Append::kAppendIfExistsOrAdd
                                    : HeaderEdits::Append::kOverwriteIfExistsOrAdd;
    } else {
      switch (o.append_action()) {
        case cv3::HeaderValueOption::APPEND_IF_EXISTS_OR_ADD:
          a.append = HeaderEdits::Append::kAppendIfExistsOrAdd;
          break;
        case cv3::HeaderValueOption::ADD_IF_ABSENT:
          a.append = HeaderEdits::Append::kAddIfAbsent;
          break;
        case cv3::HeaderValueOption::OVERWRITE_IF_EXISTS_OR_ADD:
          a.append = HeaderEdits::Append::kOverwriteIfExistsOrAdd;
          break;
        default:
          return configError(at + ".append_action: " +
                             cv3::HeaderValueOption::HeaderAppendAction_Name(o.append_action()) +
                             " is not supported");
      }
    }
    // Envoy drops an empty value unless keep_empty_value; with literals that
    // is decided here once.
    if (a.value.empty() && !o.keep_empty_value()) continue;
    out.add.push_back(std::move(a));
  }
  return Status::ok();
}

namespace {

Status compileHeaderEdits(const google::protobuf::RepeatedPtrField<cv3::HeaderValueOption>& add,
                          const google::protobuf::RepeatedPtrField<std::string>& remove,
                          const std::string& where, const char* add_field, const char* remove_field,
                          HeaderEdits& out) {
  Status s = compileHeaderAdds(add, where, add_field, out);
  if (!s) return s;
  for (int i = 0; i < remove.size(); ++i) {
    std::string name = toLower(remove[i]);
    if (!modifiableHeader(name)) {
      return configError(where + "." + remove_field + "[" + std::to_string(i) + "]: \"" +
                         remove[i] + "\" may not be removed (empty, pseudo-header or host)");
    }
    out.remove.push_back(std::move(name));
  }
  return Status::ok();
}

using PerFilterList = std::vector<std::pair<std::string, std::shared_ptr<const PerFilterConfig>>>;

// One level's typed_per_filter_config, each entry made by parser. A
// FilterConfig wrapper is unwrapped here (is_optional); its `disabled`, which
// would take the filter out of the chain for the route, is refused.
Status compilePerFilter(const google::protobuf::Map<std::string, google::protobuf::Any>& map,
                        const std::string& where, const PerFilterConfigParser& parser,
                        PerFilterList& out) {
  std::vector<std::string> names;
  for (const auto& [name, any] : map) names.push_back(name);
  std::sort(names.begin(), names.end());  // Errors in a stable order.
  for (const std::string& name : names) {
    const google::protobuf::Any& any = map.at(name);
    std::string at = where + ".typed_per_filter_config[\"" + name + "\"]";
    if (!parser) return configError(at + ": not supported here");
    const google::protobuf::Any* config = &any;
    bool optional = false;
    rv3::FilterConfig wrapper;
    if (any.Is<rv3::FilterConfig>()) {
      if (!any.UnpackTo(&wrapper)) {
        return configError(at + ": could not be decoded as " + wrapper.GetTypeName());
      }
      if (wrapper.disabled()) return configError(at + ".disabled: not supported yet");
      if (!wrapper.has_config()) return configError(at + ".config: is required");
      optional = wrapper.is_optional();
      config = &wrapper.config();
      at += ".config";
    }
    auto made = parser(name, *config, optional, at);
    if (!made) return made.status();
    if (*made) out.emplace_back(name, std::move(*made));
  }
  return Status::ok();
}

std::string fieldIndex(const std::string& base, const char* field, int i) {
  return base + "." + field + "[" + std::to_string(i) + "]";
}

}  // namespace

void HeaderEdits::apply(HeaderMap& headers) const {
  // Envoy removes before it adds, so a level can replace a header it removes.
  for (const auto& name : remove) headers.remove(name);
  for (const auto& a : add) {
    switch (a.append) {
      case Append::kAppendIfExistsOrAdd:
        headers.addView(a.name, a.value);  // The table outlives the stream that holds it.
        break;
      case Append::kAddIfAbsent:
        if (!headers.has(a.name)) headers.addView(a.name, a.value);
        break;
      case Append::kOverwriteIfExistsOrAdd:
        headers.set(a.name, a.value);
        break;
    }
  }
}

struct StringViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
};
using IndexMap = std::unordered_map<std::string, uint32_t, StringViewHash, std::equal_to<>>;

// A run of consecutive routes that match on a case-sensitive prefix or path
// alone. Envoy tries routes in order; within such a run, the first route that
// matches is the one with the smallest index among those whose prefix is a
// prefix of the path (or whose path is the path), so a hash lookup per distinct
// prefix length finds it without scanning every route.
struct RouteRunIndex {
  IndexMap prefixes;                   // prefix -> smallest route index
  IndexMap paths;                      // path -> smallest route index
  std::vector<size_t> prefix_lengths;  // distinct, ascending

  uint32_t find(std::string_view path) const {
    uint32_t best = UINT32_MAX;
    if (auto it = paths.find(path); it != paths.end()) best = it->second;
    for (size_t len : prefix_lengths) {
      if (len > path.size()) break;
      if (auto it = prefixes.find(path.substr(0, len)); it != prefixes.end()) {
        best = std::min(best, it->second);
      }
    }
    return best;
  }
};

// Routes [begin, end) of a virtual host, scanned in order, or looked up
// through index when they form a long enough run of simple routes.
struct RouteSegment {
  uint32_t begin = 0;
  uint32_t end = 0;
  std::unique_ptr<RouteRunIndex> index;
};

// One virtual host: its routes and its header edits.
struct VirtualHost {
  std::string name;
  std::vector<std::unique_ptr<RouteEntry>> routes;
  std::vector<RouteSegment> segments;
  HeaderEdits request_edits;
  HeaderEdits response_edits;
  PerFilterList per_filter;  // typed_per_filter_config
};

struct RouteEntry::Data {
  // kConnect: match.connect_matcher, which takes CONNECT requests only.
  enum class PathKind { kPrefix, kPath, kRegex, kSeparatedPrefix, kConnect };
  PathKind path_kind = PathKind::kPrefix;
  std::string path_value;                // prefix, path or path_separated_prefix
  std::unique_ptr<re2::RE2> path_regex;  // safe_regex
  bool case_sensitive = true;
  bool grpc = false;  // match.grpc: only gRPC requests (content-type application/grpc*).
  std::vector<HeaderMatch> headers;
  std::vector<QueryMatch> query;

  // Route action.
  std::string cluster;
  // upgrade_configs: lowercase upgrade type, enabled.
  std::vector<std::pair<std::string, bool>> upgrades;
  bool terminates_connect = false;  // CONNECT's upgrade config has connect_config.
  std::string cluster_header;       // lowercase
  struct Weighted {
    std::string name;
    std::string header;  // ClusterWeight.cluster_header, lowercase
    uint32_t weight = 0;
  };
  std::vector<Weighted> weighted;
  uint64_t total_weight = 0;
  bool has_prefix_rewrite = false;
  std::string prefix_rewrite;
  std::unique_ptr<re2::RE2> regex_rewrite;
  std::string regex_substitution;
  bool has_host_rewrite = false;
  std::string host_rewrite;

  // Redirect.
  std::string scheme_redirect;  // empty: keep the request's (https_redirect sets "https")
  std::string host_redirect;
  std::string port_redirect;  // ":8443", or empty
  bool has_path_redirect = false;
  std::string path_redirect;
  bool path_redirect_has_query = false;
  bool has_redirect_prefix_rewrite = false;
  std::string redirect_prefix_rewrite;
  bool strip_query = false;

  HeaderEdits request_edits;
  HeaderEdits response_edits;
  // The levels in the order they apply; filled once the virtual host and
  // table exist (they own the other two, and outlive this entry).
  std::vector<const HeaderEdits*> request_order;
  std::vector<const HeaderEdits*> response_order;
  // typed_per_filter_config of the route, then of its virtual host, then of
  // its route configuration: a filter's first entry is its most specific
  // one, and a filter that merges the levels field by field (CORS) finds
  // them all, most specific first.
  PerFilterList per_filter;

  bool matches(const HeaderMap& request, const SplitPath& split) const {
    std::string_view p = split.path;
    // A CONNECT has no path (HTTP/1.1 authority-form, RFC 9113 8.5): only a
    // connect_matcher takes it, as in Envoy.
    if (p.empty() && path_kind != PathKind::kConnect && request.method() == "CONNECT") return false;
    switch (path_kind) {
      case PathKind::kConnect:
        if (request.method() != "CONNECT") return false;
        break;
      case PathKind::kPrefix:
        if (!startsWith(p, path_value, !case_sensitive)) return false;
        break;
      case PathKind::kPath:
        if (case_sensitive ? p != path_value : !equalsIgnoreCase(p, path_value)) return false;
        break;
      case PathKind::kSeparatedPrefix:
        if (!startsWith(p, path_value, !case_sensitive)) return false;
        if (p.size() != path_value.size() && p[path_value.size()] != '/') return false;
        break;
      case PathKind::kRegex:
        if (!re2::RE2::FullMatch(p, *path_regex)) return false;
        break;
    }
    if (grpc && !isGrpcRequest(request)) return false;
    for (const auto& h : headers) {
      if (!h.matches(request)) return false;
    }
    for (const auto& q : query) {
      if (!q.matches(split.query)) return false;
    }
    return true;
  }

  // The path (without query) after prefix_rewrite or regex_rewrite; the
  // prefix that is replaced is what this route matched: its prefix, or the
  // whole path for path and safe_regex routes.
  std::string rewritePath(std::string_view path, bool has_prefix, const std::string& prefix,
                          const re2::RE2* regex, const std::string& substitution) const {
    if (has_prefix) {
      size_t matched = (path_kind == PathKind::kPrefix || path_kind == PathKind::kSeparatedPrefix)
                           ? std::min(path_value.size(), path.size())
                           : path.size();
      std::string out = prefix;
      out.append(path.substr(matched));
      return out;
    }
    std::string out(path);
    if (regex) re2::RE2::GlobalReplace(&out, *regex, substitution);
    return out;
  }
};

RouteEntry::RouteEntry(std::unique_ptr<Data> data) : data_(std::move(data)) {}
RouteEntry::~RouteEntry() = default;

const PerFilterConfig* RouteEntry::perFilterConfig(std::string_view filter_name) const {
  for (const auto& [name, config] : data_->per_filter) {
    if (name == filter_name) return config.get();
  }
  return nullptr;
}

size_t RouteEntry::perFilterConfigs(std::string_view filter_name,
                                    std::span<const PerFilterConfig*> out) const {
  size_t n = 0;
  for (const auto& [name, config] : data_->per_filter) {
    if (n < out.size() && name == filter_name) out[n++] = config.get();
  }
  return n;
}

std::string_view RouteEntry::clusterName(const HeaderMap& request, uint64_t random) const {
  const Data& d = *data_;
  if (!d.weighted.empty()) {
    // Envoy: pick random % total, then the first cluster whose running sum exceeds it.
    uint64_t pick = random % d.total_weight;
    uint64_t sum = 0;
    for (const auto& w : d.weighted) {
      sum += w.weight;
      if (pick < sum) {
        if (!w.header.empty()) return request.get(w.header).value_or(std::string_view());
        return w.name;
      }
    }
    return d.weighted.back().name;
  }
  if (!d.cluster_header.empty()) return request.get(d.cluster_header).value_or(std::string_view());
  return d.cluster;
}

void RouteEntry::finalizeRequestHeaders(HeaderMap& request, bool insert_original_path) const {
  const Data& d = *data_;
  if (d.has_prefix_rewrite || d.regex_rewrite) {
    std::string_view full = request.path();
    size_t q = full.find('?');
    std::string_view path = full.substr(0, q);
    std::string rewritten = d.rewritePath(path, d.has_prefix_rewrite, d.prefix_rewrite,
                                          d.regex_rewrite.get(), d.regex_substitution);
    if (q != std::string_view::npos) rewritten.append(full.substr(q));
    // Envoy keeps the whole path it replaces, query included, whether or not
    // the rewrite changed it. The old value stays valid: set() adds the new
    // one to the map's arena.
    if (insert_original_path) request.set(WellKnownHeader::kXEnvoyOriginalPath, full);
    request.set(WellKnownHeader::kPath, rewritten);
  }
  if (d.has_host_rewrite) request.set(WellKnownHeader::kAuthority, d.host_rewrite);
  for (const HeaderEdits* edits : d.request_order) edits->apply(request);
}

void RouteEntry::finalizeResponseHeaders(HeaderMap& response) const {
  for (const HeaderEdits* edits : data_->response_order) edits->apply(response);
}

std::string RouteEntry::redirectLocation(const HeaderMap& request) const {
  const Data& d = *data_;
  std::string_view request_scheme = request.scheme();
  std::string_view scheme = d.scheme_redirect.empty() ? request_scheme : d.scheme_redirect;
  if (scheme.empty()) scheme = "http";

  // Envoy's processRequestHost: keep the request's host, but drop its port when
  // the redirect names a port, or when the scheme changes away from that
  // scheme's default port (http:80 -> https, https:443 -> http).
  std::string_view host = d.host_redirect;
  if (host.empty()) {
    host = request.authority();
    size_t port_start = std::string_view::npos;
    if (!host.empty() && host[0] == '[') {
      port_start = host.rfind("]:");
      if (port_start != std::string_view::npos) ++port_start;
    } else {
      port_start = host.rfind(':');
    }
    if (port_start != std::string_view::npos) {
      std::string_view port = host.substr(port_start);
      bool remove_port = !d.port_redirect.empty();
      if (scheme != request_scheme) {
        remove_port |= scheme == "https" && port == ":80";
        remove_port |= scheme == "http" && port == ":443";
      }
      if (remove_port) host = host.substr(0, port_start);
    }
  }

  std::string_view full = request.path();
  size_t q = full.find('?');
  std::string path;
  if (d.has_path_redirect) {
    path = d.path_redirect;
    // A query in path_redirect wins over the request's, and strip_query
    // does not remove it.
    if (!d.path_redirect_has_query && q != std::string_view::npos) path.append(full.substr(q));
  } else if (d.has_redirect_prefix_rewrite) {
    path = d.rewritePath(full.substr(0, q), true, d.redirect_prefix_rewrite, nullptr, {});
    if (q != std::string_view::npos) path.append(full.substr(q));
  } else {
    path = full;
  }
  if (d.strip_query && !d.path_redirect_has_query) path = path.substr(0, path.find('?'));

  std::string out;
  out.reserve(scheme.size() + 3 + host.size() + d.port_redirect.size() + path.size());
  out.append(scheme).append("://").append(host).append(d.port_redirect).append(path);
  return out;
}

struct RouteTable::Data {
  std::string name;
  std::vector<std::unique_ptr<VirtualHost>> vhosts;
  HeaderEdits request_edits;
  HeaderEdits response_edits;
  CaseInsensitiveMap<const VirtualHost*> exact;
  // Wildcard domains by the length of their fixed part, longest first.
  // Suffix keys are "*.foo.com" without '*'; prefix keys "foo.*" without '*'.
  std::vector<std::pair<size_t, CaseInsensitiveMap<const VirtualHost*>>> suffixes;
  std::vector<std::pair<size_t, CaseInsensitiveMap<const VirtualHost*>>> prefixes;
  const VirtualHost* catch_all = nullptr;
  // Every typed_per_filter_config of the table, at any level (installOn).
  std::vector<std::shared_ptr<const PerFilterConfig>> per_filter_configs;

  const VirtualHost* findHost(std::string_view host) const {
    if (!exact.empty()) {
      if (auto it = exact.find(host); it != exact.end()) return it->second;
    }
    // Envoy: a wildcard stands for at least one character.
    for (const auto& [len, map] : suffixes) {
      if (len >= host.size()) continue;
      if (auto it = map.find(host.substr(host.size() - len)); it != map.end()) return it->second;
    }
    for (const auto& [len, map] : prefixes) {
      if (len >= host.size()) continue;
      if (auto it = map.find(host.substr(0, len)); it != map.end()) return it->second;
    }
    return nullptr;
  }

  const VirtualHost* findVirtualHost(std::string_view authority) const {
    // A table whose only domain is "*" (the common sidecar and edge shape)
    // needs no hashing of the authority (490 instructions per request).
    if (exact.empty() && suffixes.empty() && prefixes.empty()) return catch_all;
    if (const VirtualHost* vh = findHost(authority)) return vh;
    // Then without the port: "host:port", "[v6]:port".
    size_t colon = authority.rfind(':');
    if (colon != std::string_view::npos && authority.find(']', colon) == std::string_view::npos &&
        (authority[0] == '[' ? authority[colon - 1] == ']' : authority.find(':') == colon)) {
      if (const VirtualHost* vh = findHost(authority.substr(0, colon))) return vh;
    }
    return catch_all;
  }
};

namespace {

Status compileRouteMatch(const rv3::RouteMatch& m, const std::string& where, RouteEntry::Data& d) {
  using PathKind = RouteEntry::Data::PathKind;
  d.case_sensitive = !m.has_case_sensitive() || m.case_sensitive().value();
  switch (m.path_specifier_case()) {
    case rv3::RouteMatch::kPrefix:
      d.path_kind = PathKind::kPrefix;
      d.path_value = m.prefix();
      break;
    case rv3::RouteMatch::kPath:
      d.path_kind = PathKind::kPath;
      d.path_value = m.path();
      break;
    case rv3::RouteMatch::kPathSeparatedPrefix: {
      d.path_kind = PathKind::kSeparatedPrefix;
      d.path_value = m.path_separated_prefix();
      const std::string& p = d.path_value;
      if (p.empty() || p.back() == '/' || p.find_first_of("?#") != std::string::npos) {
        return configError(where +
                           ".path_separated_prefix: must be non-empty, without ? or #, "
                           "and not end in /");
      }
      break;
    }
    case rv3::RouteMatch::kSafeRegex: {
      d.path_kind = PathKind::kRegex;
      auto re = compileRegex(m.safe_regex().regex(), where + ".safe_regex.regex");
      if (!re) return re.status();
      d.path_regex = std::move(*re);
      break;
    }
    case rv3::RouteMatch::kConnectMatcher:
      d.path_kind = PathKind::kConnect;
      break;
    case rv3::RouteMatch::kPathMatchPolicy:
      return configError(where + ".path_match_policy: is not supported");
    default:
      return configError(where +
                         ": one of prefix, path, safe_regex, path_separated_prefix is "
                         "required");
  }
  if (m.has_runtime_fraction()) return configError(where + ".runtime_fraction: is not supported");
  d.grpc = m.has_grpc();
  if (m.has_tls_context()) return configError(where + ".tls_context: is not supported");
  if (m.dynamic_metadata_size() > 0) {
    return configError(where + ".dynamic_metadata: is not supported");
  }
  for (int i = 0; i < m.headers_size(); ++i) {
    auto h = compileHeaderMatch(m.headers(i), fieldIndex(where, "headers", i));
    if (!h) return h.status();
    d.headers.push_back(std::move(*h));
  }
  for (int i = 0; i < m.query_parameters_size(); ++i) {
    const auto& q = m.query_parameters(i);
    std::string at = fieldIndex(where, "query_parameters", i);
    if (q.name().empty()) return configError(at + ".name: must not be empty");
    QueryMatch qm;
    qm.name = q.name();
    if (q.has_string_match()) {
      auto s = compileStringMatch(q.string_match(), at + ".string_match");
      if (!s) return s.status();
      qm.value = std::move(*s);
    }
    d.query.push_back(std::move(qm));
  }
  return Status::ok();
}

// RouteAction timeout, max_grpc_timeout, grpc_timeout_offset and
// max_stream_duration.
Status compileTimeouts(const rv3::RouteAction& a, const std::string& where,
                       RouteTimeouts& timeouts) {
  auto read = [&](bool has, const google::protobuf::Duration& d, const std::string& name,
                  std::optional<std::chrono::milliseconds>& out) -> Status {
    if (!has) return Status::ok();
    auto ms = durationMs(d, where + "." + name);
    if (!ms) return ms.status();
    out = *ms;
    return Status::ok();
  };
  std::optional<std::chrono::milliseconds> timeout;
  Status s = read(a.has_timeout(), a.timeout(), "timeout", timeout);
  if (!s) return s;
  if (timeout) timeouts.timeout = *timeout;
  s = read(a.has_max_grpc_timeout(), a.max_grpc_timeout(), "max_grpc_timeout",
           timeouts.max_grpc_timeout);
  if (!s) return s;
  s = read(a.has_grpc_timeout_offset(), a.grpc_timeout_offset(), "grpc_timeout_offset",
           timeouts.grpc_timeout_offset);
  if (!s) return s;
  if (a.has_max_stream_duration()) {
    const auto& m = a.max_stream_duration();
    timeouts.has_max_stream_duration = true;
    s = read(m.has_max_stream_duration(), m.max_stream_duration(),
             "max_stream_duration.max_stream_duration", timeouts.max_stream_duration);
    if (!s) return s;
    s = read(m.has_grpc_timeout_header_max(), m.grpc_timeout_header_max(),
             "max_stream_duration.grpc_timeout_header_max", timeouts.grpc_timeout_header_max);
    if (!s) return s;
    s = read(m.has_grpc_timeout_header_offset(), m.grpc_timeout_header_offset(),
             "max_stream_duration.grpc_timeout_header_offset", timeouts.grpc_timeout_header_offset);
    if (!s) return s;
  }
  timeouts.timeout_text = std::to_string(timeouts.timeout.count());
  return Status::ok();
}

Status compileRouteAction(const rv3::RouteAction& a, const std::string& where, RouteEntry::Data& d,
                          RouteTimeouts& timeouts, bool& auto_host_rewrite) {
  switch (a.cluster_specifier_case()) {
    case rv3::RouteAction::kCluster:
      if (a.cluster().empty()) return configError(where + ".cluster: must not be empty");
      d.cluster = a.cluster();
      break;
    case rv3::RouteAction::kClusterHeader:
      if (a.cluster_header().empty()) {
        return configError(where + ".cluster_header: must not be empty");
      }
      d.cluster_header = toLower(a.cluster_header());
      break;
    case rv3::RouteAction::kWeightedClusters: {
      const auto& wc = a.weighted_clusters();
      std::string at = where + ".weighted_clusters";
      if (wc.clusters_size() == 0) return configError(at + ".clusters: must not be empty");
      if (!wc.runtime_key_prefix().empty()) {
        return configError(at + ".runtime_key_prefix: is not supported");
      }
      if (wc.random_value_specifier_case() !=
          rv3::WeightedCluster::RANDOM_VALUE_SPECIFIER_NOT_SET) {
        return configError(at + ".header_name: is not supported");
      }
      uint64_t sum = 0;
      for (int i = 0; i < wc.clusters_size(); ++i) {
        const auto& c = wc.clusters(i);
        std::string cat = fieldIndex(at, "clusters", i);
        RouteEntry::Data::Weighted w;
        if (!c.cluster_header().empty()) {
          w.header = toLower(c.cluster_header());
        } else if (c.name().empty()) {
          return configError(cat + ": one of name, cluster_header is required");
        }
        w.name = c.name();
        w.weight = c.has_weight() ? c.weight().value() : 0;
        if (c.request_headers_to_add_size() || c.request_headers_to_remove_size() ||
            c.response_headers_to_add_size() || c.response_headers_to_remove_size()) {
          return configError(cat + ": per-cluster header edits are not supported");
        }
        if (c.host_rewrite_specifier_case() !=
            rv3::WeightedCluster::ClusterWeight::HOST_REWRITE_SPECIFIER_NOT_SET) {
          return configError(cat + ".host_rewrite_literal: is not supported");
        }
        if (c.has_metadata_match()) return configError(cat + ".metadata_match: is not supported");
        sum += w.weight;
        d.weighted.push_back(std::move(w));
      }
      if (sum == 0) return configError(at + ": weights sum to 0");
      if (sum > 0xffffffffull) return configError(at + ": weights sum to more than 2^32-1");
      if (wc.has_total_weight() && wc.total_weight().value() != sum) {
        return configError(at + ".total_weight: is " + std::to_string(wc.total_weight().value()) +
                           " but the weights sum to " + std::to_string(sum));
      }
      d.total_weight = sum;
      break;
    }
    case rv3::RouteAction::kClusterSpecifierPlugin:
      return configError(where + ".cluster_specifier_plugin: is not supported");
    case rv3::RouteAction::kInlineClusterSpecifierPlugin:
      return configError(where + ".inline_cluster_specifier_plugin: is not supported");
    default:
      return configError(where + ": one of cluster, cluster_header, weighted_clusters is required");
  }

  if (!a.prefix_rewrite().empty() && a.has_regex_rewrite()) {
    return configError(where + ": prefix_rewrite and regex_rewrite are both set");
  }
  if (!a.prefix_rewrite().empty()) {
    if (d.path_kind == RouteEntry::Data::PathKind::kRegex) {
      // Envoy replaces the whole matched path; allowed.
    }
    d.has_prefix_rewrite = true;
    d.prefix_rewrite = a.prefix_rewrite();
  }
  if (a.has_regex_rewrite()) {
    auto re =
        compileRegex(a.regex_rewrite().pattern().regex(), where + ".regex_rewrite.pattern.regex");
    if (!re) return re.status();
    std::string error;
    if (!(*re)->CheckRewriteString(a.regex_rewrite().substitution(), &error)) {
      return configError(where + ".regex_rewrite.substitution: " + error);
    }
    d.regex_rewrite = std::move(*re);
    d.regex_substitution = a.regex_rewrite().substitution();
  }
  if (a.has_path_rewrite_policy()) {
    return configError(where + ".path_rewrite_policy: is not supported");
  }
  switch (a.host_rewrite_specifier_case()) {
    case rv3::RouteAction::kHostRewriteLiteral:
      d.has_host_rewrite = true;
      d.host_rewrite = a.host_rewrite_literal();
      break;
    case rv3::RouteAction::kAutoHostRewrite:
      auto_host_rewrite = a.auto_host_rewrite().value();
      break;
    case rv3::RouteAction::kHostRewriteHeader:
      return configError(where + ".host_rewrite_header: is not supported");
    case rv3::RouteAction::kHostRewritePathRegex:
      return configError(where + ".host_rewrite_path_regex: is not supported");
    default:
      break;
  }
  if (a.append_x_forwarded_host()) {
    return configError(where + ".append_x_forwarded_host: is not supported");
  }
  for (int i = 0; i < a.upgrade_configs_size(); ++i) {
    const auto& u = a.upgrade_configs(i);
    std::string at = fieldIndex(where, "upgrade_configs", i);
    std::string type = toLower(u.upgrade_type());
    if (type.empty()) return configError(at + ".upgrade_type: must not be empty");
    for (const auto& [seen, enabled] : d.upgrades) {
      if (seen == type)
        return configError(at + ".upgrade_type: \"" + u.upgrade_type() + "\" twice");
    }
    bool enabled = u.has_enabled() ? u.enabled().value() : true;
    if (u.has_connect_config()) {
      if (type != "connect") {
        return configError(at + ".connect_config: only for upgrade_type CONNECT");
      }
      d.terminates_connect = enabled;
    }
    d.upgrades.emplace_back(std::move(type), enabled);
  }
  return compileTimeouts(a, where, timeouts);
}

Status compileRedirect(const rv3::RedirectAction& r, const std::string& where, RouteEntry::Data& d,
                       uint32_t& status) {
  if (r.scheme_rewrite_specifier_case() == rv3::RedirectAction::kHttpsRedirect) {
    if (r.https_redirect()) d.scheme_redirect = "https";
  } else if (r.scheme_rewrite_specifier_case() == rv3::RedirectAction::kSchemeRedirect) {
    d.scheme_redirect = toLower(r.scheme_redirect());
  }
  d.host_redirect = r.host_redirect();
  if (r.port_redirect() > 65535) {
    return configError(where + ".port_redirect: must be at most 65535");
  }
  if (r.port_redirect() != 0) d.port_redirect = ":" + std::to_string(r.port_redirect());
  switch (r.path_rewrite_specifier_case()) {
    case rv3::RedirectAction::kPathRedirect:
      d.has_path_redirect = true;
      d.path_redirect = r.path_redirect();
      d.path_redirect_has_query = d.path_redirect.find('?') != std::string::npos;
      break;
    case rv3::RedirectAction::kPrefixRewrite:
      d.has_redirect_prefix_rewrite = true;
      d.redirect_prefix_rewrite = r.prefix_rewrite();
      break;
    case rv3::RedirectAction::kRegexRewrite:
      return configError(where + ".regex_rewrite: is not supported");
    default:
      break;
  }
  d.strip_query = r.strip_query();
  switch (r.response_code()) {
    case rv3::RedirectAction::MOVED_PERMANENTLY:
      status = 301;
      break;
    case rv3::RedirectAction::FOUND:
      status = 302;
      break;
    case rv3::RedirectAction::SEE_OTHER:
      status = 303;
      break;
    case rv3::RedirectAction::TEMPORARY_REDIRECT:
      status = 307;
      break;
    case rv3::RedirectAction::PERMANENT_REDIRECT:
      status = 308;
      break;
    default:
      return configError(where + ".response_code: " + std::to_string(r.response_code()) +
                         " is not a known redirect code");
  }
  return Status::ok();
}

// RouteAction.cluster_not_found_response_code as a status.
Status clusterNotFoundStatus(const rv3::RouteAction& a, const std::string& where,
                             uint16_t& status) {
  switch (a.cluster_not_found_response_code()) {
    case rv3::RouteAction::SERVICE_UNAVAILABLE:
      status = 503;
      return Status::ok();
    case rv3::RouteAction::NOT_FOUND:
      status = 404;
      return Status::ok();
    case rv3::RouteAction::INTERNAL_SERVER_ERROR:
      status = 500;
      return Status::ok();
    default:
      return configError(where + ".cluster_not_found_response_code: unknown value " +
                         std::to_string(a.cluster_not_found_response_code()));
  }
}

}  // namespace

RouteTable::RouteTable(std::unique_ptr<Data> data) : data_(std::move(data)) {}
RouteTable::~RouteTable() = default;

Result<std::shared_ptr<const RouteTable>> RouteTable::compile(
    const envoy::config::route::v3::RouteConfiguration& config, const std::string& path,
    const PerFilterConfigParser& per_filter) {
  auto table = std::make_unique<RouteTable::Data>();
  table->name = config.name();
  if (config.has_vhds()) return configError(path + ".vhds: is not supported");
  if (config.ignore_path_parameters_in_path_matching()) {
    return configError(path + ".ignore_path_parameters_in_path_matching: is not supported");
  }
  if (config.ignore_port_in_host_matching()) {
    return configError(path + ".ignore_port_in_host_matching: is not supported");
  }
  Status s = compileHeaderEdits(config.request_headers_to_add(), config.request_headers_to_remove(),
                                path, "request_headers_to_add", "request_headers_to_remove",
                                table->request_edits);
  if (!s) return s;
  s = compileHeaderEdits(config.response_headers_to_add(), config.response_headers_to_remove(),
                         path, "response_headers_to_add", "response_headers_to_remove",
                         table->response_edits);
  if (!s) return s;
  PerFilterList table_per_filter;
  s = compilePerFilter(config.typed_per_filter_config(), path, per_filter, table_per_filter);
  if (!s) return s;
  for (const auto& entry : table_per_filter) table->per_filter_configs.push_back(entry.second);
  const uint32_t max_body = config.has_max_direct_response_body_size_bytes()
                                ? config.max_direct_response_body_size_bytes().value()
                                : 4096;  // Envoy's default

  // A lambda, so that it shares compile()'s access to RouteEntry::data_.
  auto indexRoutes = [](VirtualHost& host) {
    // Shorter runs are faster to scan than to hash into.
    constexpr uint32_t kMinIndexedRun = 16;
    using PathKind = RouteEntry::Data::PathKind;
    auto simple = [](const RouteEntry& r) {
      const RouteEntry::Data& d = *r.data_;
      return d.case_sensitive && !d.grpc && d.headers.empty() && d.query.empty() &&
             (d.path_kind == PathKind::kPrefix || d.path_kind == PathKind::kPath);
    };
    const uint32_t n = static_cast<uint32_t>(host.routes.size());
    uint32_t i = 0;
    while (i < n) {
      uint32_t j = i;
      while (j < n && simple(*host.routes[j])) ++j;
      if (j - i >= kMinIndexedRun) {
        auto index = std::make_unique<RouteRunIndex>();
        std::unordered_set<size_t> lengths;
        for (uint32_t k = i; k < j; ++k) {
          const RouteEntry::Data& d = *host.routes[k]->data_;
          if (d.path_kind == PathKind::kPrefix) {
            index->prefixes.emplace(d.path_value, k);  // emplace keeps the first (smallest) index
            lengths.insert(d.path_value.size());
          } else {
            index->paths.emplace(d.path_value, k);
          }
        }
        index->prefix_lengths.assign(lengths.begin(), lengths.end());
        std::sort(index->prefix_lengths.begin(), index->prefix_lengths.end());
        host.segments.push_back({i, j, std::move(index)});
        i = j;
        continue;
      }
      // A linear segment: up to the next long simple run.
      uint32_t begin = i;
      while (i < n) {
        uint32_t k = i;
        while (k < n && simple(*host.routes[k])) ++k;
        if (k - i >= kMinIndexedRun) break;
        i = k == i ? i + 1 : k;
      }
      host.segments.push_back({begin, i, nullptr});
    }
  };

  std::unordered_map<std::string, int> domain_owner;  // lowercase domain -> vhost index
  std::map<size_t, CaseInsensitiveMap<const VirtualHost*>, std::greater<>> suffixes, prefixes;

  for (int vi = 0; vi < config.virtual_hosts_size(); ++vi) {
    const auto& vh = config.virtual_hosts(vi);
    std::string vat = fieldIndex(path, "virtual_hosts", vi);
    auto host = std::make_unique<VirtualHost>();
    host->name = vh.name();
    if (vh.require_tls() != rv3::VirtualHost::NONE) {
      return configError(
          vat + ".require_tls: " + rv3::VirtualHost::TlsRequirementType_Name(vh.require_tls()) +
          " is not supported");
    }
    if (vh.domains_size() == 0) return configError(vat + ".domains: must not be empty");
    for (int di = 0; di < vh.domains_size(); ++di) {
      const std::string& domain = vh.domains(di);
      std::string dat = fieldIndex(vat, "domains", di);
      if (domain.empty()) return configError(dat + ": must not be empty");
      std::string lowered = toLower(domain);
      auto [it, inserted] = domain_owner.emplace(lowered, vi);
      if (!inserted) {
        return configError(dat + ": duplicate domain \"" + domain + "\" (also in virtual_hosts[" +
                           std::to_string(it->second) + "])");
      }
      const VirtualHost* h = host.get();
      if (lowered == "*") {
        table->catch_all = h;
      } else if (lowered.front() == '*') {
        suffixes[lowered.size() - 1].emplace(lowered.substr(1), h);
      } else if (lowered.back() == '*') {
        prefixes[lowered.size() - 1].emplace(lowered.substr(0, lowered.size() - 1), h);
      } else {
        table->exact.emplace(lowered, h);
      }
    }
    std::shared_ptr<const RetryPolicy> vhost_retry;
    if (vh.has_retry_policy()) {
      auto policy = RetryPolicy::compile(vh.retry_policy(), vat + ".retry_policy");
      if (!policy) return policy.status();
      vhost_retry = std::make_shared<const RetryPolicy>(std::move(*policy));
    }
    s = compileHeaderEdits(vh.request_headers_to_add(), vh.request_headers_to_remove(), vat,
                           "request_headers_to_add", "request_headers_to_remove",
                           host->request_edits);
    if (!s) return s;
    s = compileHeaderEdits(vh.response_headers_to_add(), vh.response_headers_to_remove(), vat,
                           "response_headers_to_add", "response_headers_to_remove",
                           host->response_edits);
    if (!s) return s;
    s = compilePerFilter(vh.typed_per_filter_config(), vat, per_filter, host->per_filter);
    if (!s) return s;
    for (const auto& entry : host->per_filter) table->per_filter_configs.push_back(entry.second);

    for (int ri = 0; ri < vh.routes_size(); ++ri) {
      const auto& r = vh.routes(ri);
      std::string rat = fieldIndex(vat, "routes", ri);
      auto d = std::make_unique<RouteEntry::Data>();
      RouteEntry::Kind kind = RouteEntry::Kind::kCluster;
      RouteTimeouts timeouts;
      bool auto_host = false;
      uint32_t direct_status = 0;
      std::string direct_body;
      uint32_t redirect_status = 301;
      uint16_t cluster_not_found_status = 503;
      std::shared_ptr<const RetryPolicy> retry = vhost_retry;
      std::unique_ptr<const HashPolicy> hash_policy;
      s = compileRouteMatch(r.match(), rat + ".match", *d);
      if (!s) return s;
      switch (r.action_case()) {
        case rv3::Route::kRoute:
          s = compileRouteAction(r.route(), rat + ".route", *d, timeouts, auto_host);
          if (s) s = clusterNotFoundStatus(r.route(), rat + ".route", cluster_not_found_status);
          if (s && r.route().has_retry_policy()) {
            auto policy =
                RetryPolicy::compile(r.route().retry_policy(), rat + ".route.retry_policy");
            if (!policy) return policy.status();
            retry = std::make_shared<const RetryPolicy>(std::move(*policy));
          }
          if (s && r.route().hash_policy_size() > 0) {
            auto policy = HashPolicy::compile(r.route().hash_policy(), rat + ".route.hash_policy");
            if (!policy) return policy.status();
            if (!policy->methods().empty()) {
              hash_policy = std::make_unique<const HashPolicy>(std::move(*policy));
            }
          }
          break;
        case rv3::Route::kRedirect:
          kind = RouteEntry::Kind::kRedirect;
          s = compileRedirect(r.redirect(), rat + ".redirect", *d, redirect_status);
          break;
        case rv3::Route::kDirectResponse: {
          kind = RouteEntry::Kind::kDirectResponse;
          const auto& dr = r.direct_response();
          direct_status = dr.status();
          if (direct_status < 200 || direct_status >= 600) {
            s = configError(rat + ".direct_response.status: " + std::to_string(direct_status) +
                            " is not in [200, 600)");
            break;
          }
          if (dr.has_body()) {
            const auto& body = dr.body();
            if (body.has_inline_string()) {
              direct_body = body.inline_string();
            } else if (body.has_inline_bytes()) {
              direct_body = body.inline_bytes();
            } else if (body.has_filename()) {
              s = configError(rat + ".direct_response.body.filename: is not supported");
              break;
            } else if (body.has_environment_variable()) {
              s = configError(rat + ".direct_response.body.environment_variable: is not supported");
              break;
            }
            if (direct_body.size() > max_body) {
              s = configError(rat + ".direct_response.body: " + std::to_string(direct_body.size()) +
                              " bytes is more than max_direct_response_body_size_bytes (" +
                              std::to_string(max_body) + ")");
              break;
            }
          }
          break;
        }
        case rv3::Route::kFilterAction:
          s = configError(rat + ".filter_action: is not supported");
          break;
        case rv3::Route::kNonForwardingAction:
          s = configError(rat + ".non_forwarding_action: is not supported");
          break;
        default:
          s = configError(rat + ": one of route, redirect, direct_response is required");
          break;
      }
      if (!s) return s;
      s = compileHeaderEdits(r.request_headers_to_add(), r.request_headers_to_remove(), rat,
                             "request_headers_to_add", "request_headers_to_remove",
                             d->request_edits);
      if (!s) return s;
      s = compileHeaderEdits(r.response_headers_to_add(), r.response_headers_to_remove(), rat,
                             "response_headers_to_add", "response_headers_to_remove",
                             d->response_edits);
      if (!s) return s;
      s = compilePerFilter(r.typed_per_filter_config(), rat, per_filter, d->per_filter);
      if (!s) return s;
      for (const auto& entry : d->per_filter) table->per_filter_configs.push_back(entry.second);
      for (const PerFilterList* level : {&host->per_filter, &table_per_filter}) {
        d->per_filter.insert(d->per_filter.end(), level->begin(), level->end());
      }

      // Envoy applies the route's edits, then the virtual host's, then the
      // configuration's, so for an overwrite the most general level wins.
      // most_specific_header_mutations_wins reverses that order. skiff does the
      // same for requests and responses.
      const HeaderEdits* req[3] = {&d->request_edits, &host->request_edits, &table->request_edits};
      const HeaderEdits* resp[3] = {&d->response_edits, &host->response_edits,
                                    &table->response_edits};
      if (config.most_specific_header_mutations_wins()) {
        std::reverse(std::begin(req), std::end(req));
        std::reverse(std::begin(resp), std::end(resp));
      }
      for (const HeaderEdits* e : req) {
        if (!e->add.empty() || !e->remove.empty()) d->request_order.push_back(e);
      }
      for (const HeaderEdits* e : resp) {
        if (!e->add.empty() || !e->remove.empty()) d->response_order.push_back(e);
      }

      auto entry = std::make_unique<RouteEntry>(std::move(d));
      entry->kind_ = kind;
      entry->name_ = r.name();
      entry->timeouts_ = timeouts;
      entry->auto_host_rewrite_ = auto_host;
      entry->cluster_not_found_status_ = cluster_not_found_status;
      if (kind == RouteEntry::Kind::kCluster &&
          (vh.include_request_attempt_count() || vh.include_attempt_count_in_response())) {
        // The virtual host's attempt count headers ride on the route's policy
        // (a copy, at compile time), or on one that never retries.
        RetryPolicy with_counts = retry ? *retry : RetryPolicy{.retry_on = 0, .num_retries = 0};
        with_counts.attempt_count_in_request = vh.include_request_attempt_count();
        with_counts.attempt_count_in_response = vh.include_attempt_count_in_response();
        retry = std::make_shared<const RetryPolicy>(std::move(with_counts));
      }
      if (kind == RouteEntry::Kind::kCluster) entry->retry_policy_ = std::move(retry);
      entry->hash_policy_ = std::move(hash_policy);
      entry->terminates_connect_ = entry->data_->terminates_connect;
      entry->direct_status_ = direct_status;
      entry->direct_body_ = std::move(direct_body);
      entry->redirect_status_ = redirect_status;
      host->routes.push_back(std::move(entry));
    }
    indexRoutes(*host);
    table->vhosts.push_back(std::move(host));
  }
  for (auto& [len, map] : suffixes) table->suffixes.emplace_back(len, std::move(map));
  for (auto& [len, map] : prefixes) table->prefixes.emplace_back(len, std::move(map));
  return std::shared_ptr<const RouteTable>(std::make_shared<RouteTable>(std::move(table)));
}

const RouteEntry* RouteTable::match(const HeaderMap& request, uint64_t) const {
  const VirtualHost* vh = data_->findVirtualHost(request.authority());
  if (!vh) return nullptr;
  SplitPath split = splitPath(request.path());
  for (const RouteSegment& seg : vh->segments) {
    if (seg.index) {
      uint32_t k = seg.index->find(split.path);
      if (k != UINT32_MAX) return vh->routes[k].get();
      continue;
    }
    for (uint32_t k = seg.begin; k < seg.end; ++k) {
      if (vh->routes[k]->data_->matches(request, split)) return vh->routes[k].get();
    }
  }
  return nullptr;
}

std::optional<bool> RouteEntry::upgradeEnabled(std::string_view upgrade_type) const {
  for (const auto& [type, enabled] : data_->upgrades) {
    if (equalsIgnoreCase(type, upgrade_type)) return enabled;
  }
  return std::nullopt;
}

const std::string& RouteTable::name() const { return data_->name; }

void RouteTable::installOn(Worker& worker) const {
  for (const auto& config : data_->per_filter_configs) config->installOn(worker);
}

std::vector<std::string> RouteTable::referencedClusters() const {
  std::vector<std::string> out;
  std::unordered_set<std::string> seen;
  auto add = [&](const std::string& c) {
    if (!c.empty() && seen.insert(c).second) out.push_back(c);
  };
  for (const auto& vh : data_->vhosts) {
    for (const auto& r : vh->routes) {
      add(r->data_->cluster);
      for (const auto& w : r->data_->weighted) add(w.name);
    }
  }
  return out;
}

}  // namespace skiff::router
