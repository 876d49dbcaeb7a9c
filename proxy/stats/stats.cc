#include "proxy/stats/stats.h"

#include <cctype>

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

// Envoy's Prometheus names: "envoy_" + the stat name with every character
// outside [a-zA-Z0-9_] replaced by '_'. (Envoy also pulls tags such as
// cluster names out into labels; skiff does not yet.)
std::string promName(std::string_view name) {
  std::string out = "envoy_";
  for (char c : name) out.push_back(std::isalnum(static_cast<unsigned char>(c)) ? c : '_');
  return out;
}

}  // namespace

std::string renderPrometheus(const std::map<std::string, uint64_t>& counters,
                             const std::map<std::string, int64_t>& gauges) {
  std::string out;
  for (const auto& [n, v] : counters) {
    std::string p = promName(n);
    out.append("# TYPE ").append(p).append(" counter\n");
    out.append(p).append(" ").append(std::to_string(v)).append("\n");
  }
  for (const auto& [n, v] : gauges) {
    std::string p = promName(n);
    out.append("# TYPE ").append(p).append(" gauge\n");
    out.append(p).append(" ").append(std::to_string(v)).append("\n");
  }
  return out;
}

}  // namespace skiff::stats
