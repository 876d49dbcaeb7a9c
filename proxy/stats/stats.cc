#include "proxy/stats/stats.h"

#include <cctype>
#include <vector>

namespace skiff::stats {

Counter& Store::counter(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = counters_.find(name);
  if (it != counters_.end()) return *it->second;
  Counter& c = counter_storage_.emplace_back();
  counters_.emplace(name, &c);
  return c;
}

Gauge& Store::gauge(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = gauges_.find(name);
  if (it != gauges_.end()) return *it->second;
  Gauge& g = gauge_storage_.emplace_back();
  gauges_.emplace(name, &g);
  return g;
}

void Store::collect(std::map<std::string, uint64_t>& counters,
                    std::map<std::string, int64_t>& gauges) const {
  std::lock_guard lock(mu_);
  for (const auto& [name, c] : counters_) counters[name] += c->value();
  for (const auto& [name, g] : gauges_) gauges[name] += g->value();
}

std::string renderText(const std::map<std::string, uint64_t>& counters,
                       const std::map<std::string, int64_t>& gauges) {
  std::map<std::string_view, std::string> all;
  for (const auto& [n, v] : counters) all[n] = std::to_string(v);
  for (const auto& [n, v] : gauges) all[n] = std::to_string(v);
  std::string out;
  for (const auto& [n, v] : all) {
    out.append(n).append(": ").append(v).append("\n");
  }
  return out;
}

namespace {

// Envoy's Prometheus output pulls the well-known name parts out as labels
// (its default tag extractors) and prefixes "envoy_":
//   http.<prefix>.X      -> envoy_http_X{envoy_http_conn_manager_prefix="<prefix>"}
//   cluster.<name>.X     -> envoy_cluster_X{envoy_cluster_name="<name>"}
//   listener.<addr>.X    -> envoy_listener_X{envoy_listener_address="<addr>"}
//   <prefix>.http_local_rate_limit.X
//                        ->
//                        envoy_http_local_rate_limit_X{envoy_local_http_ratelimit_prefix="<prefix>"}
// Anything else keeps its whole name. Characters outside [a-zA-Z0-9_]
// become '_'.
struct PromName {
  std::string name;
  std::string labels;
};

std::string sanitize(std::string_view name) {
  std::string out;
  for (char c : name) out.push_back(std::isalnum(static_cast<unsigned char>(c)) ? c : '_');
  return out;
}

PromName promName(std::string_view name) {
  struct Rule {
    std::string_view prefix;
    std::string_view label;
  };
  static constexpr Rule kRules[] = {
      {"http.", "envoy_http_conn_manager_prefix"},
      {"cluster.", "envoy_cluster_name"},
      {"listener.", "envoy_listener_address"},
  };
  for (const Rule& r : kRules) {
    if (!name.starts_with(r.prefix)) continue;
    std::string_view rest = name.substr(r.prefix.size());
    size_t dot = rest.rfind('.');
    if (dot == std::string_view::npos || dot == 0) break;
    // Listener addresses contain dots (listener.127.0.0.1_10000.x): the
    // stat is the last part, the tag everything before it.
    std::string_view tag = rest.substr(0, dot);
    std::string_view stat = rest.substr(dot + 1);
    if (r.prefix != "listener.") {
      size_t first = rest.find('.');
      tag = rest.substr(0, first);
      stat = rest.substr(first + 1);
    }
    std::string family = std::string(r.prefix.substr(0, r.prefix.size() - 1));
    return {"envoy_" + family + "_" + sanitize(stat),
            std::string(r.label) + "=\"" + std::string(tag) + "\""};
  }
  // The local rate limit filter's stats are named by its own stat_prefix.
  constexpr std::string_view kLocalRateLimit = ".http_local_rate_limit.";
  if (size_t at = name.find(kLocalRateLimit); at != std::string_view::npos && at > 0) {
    return {"envoy_http_local_rate_limit_" + sanitize(name.substr(at + kLocalRateLimit.size())),
            "envoy_local_http_ratelimit_prefix=\"" + std::string(name.substr(0, at)) + "\""};
  }
  return {"envoy_" + sanitize(name), ""};
}

template <typename Map>
void renderFamily(const Map& values, const char* type, std::string& out) {
  // Group by metric name so each family gets one TYPE line.
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> families;
  for (const auto& [n, v] : values) {
    PromName p = promName(n);
    families[p.name].emplace_back(p.labels, std::to_string(v));
  }
  for (const auto& [name, series] : families) {
    out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
    for (const auto& [labels, value] : series) {
      out.append(name);
      if (!labels.empty()) out.append("{").append(labels).append("}");
      out.append(" ").append(value).append("\n");
    }
  }
}

}  // namespace

std::string renderPrometheus(const std::map<std::string, uint64_t>& counters,
                             const std::map<std::string, int64_t>& gauges) {
  std::string out;
  renderFamily(counters, "counter", out);
  renderFamily(gauges, "gauge", out);
  return out;
}

}  // namespace skiff::stats
