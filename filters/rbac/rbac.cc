#include "filters/rbac/rbac.h"

#include <google/protobuf/any.pb.h>

#include "envoy/extensions/filters/http/rbac/v3/rbac.pb.h"
#include "filters/per_worker.h"
#include "proxy/buffer/object_pool.h"
#include "proxy/stats/stats.h"
#include "proxy/worker/worker.h"

namespace skiff::filters {
namespace {

namespace rbac_http_v3 = envoy::extensions::filters::http::rbac::v3;

constexpr std::string_view kDeniedBody = "RBAC: access denied";

struct RbacStats {
  RbacStats(stats::Store& s, const std::string& rules_prefix, const std::string& shadow_prefix)
      : allowed(s.counter(rbacStatName(rules_prefix, "allowed"))),
        denied(s.counter(rbacStatName(rules_prefix, "denied"))),
        shadow_allowed(s.counter(rbacStatName(shadow_prefix, "shadow_allowed"))),
        shadow_denied(s.counter(rbacStatName(shadow_prefix, "shadow_denied"))) {}
  stats::Counter& allowed;
  stats::Counter& denied;
  stats::Counter& shadow_allowed;
  stats::Counter& shadow_denied;
};

class RbacFilterFactory : public HttpFilterFactory {
 public:
  RbacFilterFactory(std::shared_ptr<const RbacRules> rules, std::string name,
                    std::string rules_prefix, std::string shadow_prefix)
      : rules_(std::move(rules)),
        name_(std::move(name)),
        rules_prefix_(std::move(rules_prefix)),
        shadow_prefix_(std::move(shadow_prefix)) {}
  std::unique_ptr<HttpFilter> create() const override;
  void installOn(Worker& worker) const override { statsOn(worker); }

  // This worker's stats: made at install, found by index after. A route's
  // rules count here too, as in Envoy.
  RbacStats& statsOn(Worker& worker) const {
    return stats_.install(worker.index(), [&] {
      return std::make_unique<RbacStats>(worker.stats(), rules_prefix_, shadow_prefix_);
    });
  }

  std::shared_ptr<const RbacRules> rules_;
  std::string name_;           // In http_filters: the key of its per-route configs.
  std::string rules_prefix_;   // "http.<stat_prefix>.rbac.<rules_stat_prefix>"
  std::string shadow_prefix_;  // "http.<stat_prefix>.rbac.<shadow_rules_stat_prefix>"
  PerWorker<RbacStats> stats_;
};

class RbacFilter : public HttpFilter {
 public:
  static void* operator new(size_t size) { return ObjectPool<RbacFilter, 1024>::take(size); }
  static void operator delete(void* p, size_t size) { ObjectPool<RbacFilter, 1024>::give(p, size); }

  explicit RbacFilter(const RbacFilterFactory& factory) : factory_(factory) {}

  void setCallbacks(FilterCallbacks& callbacks) override { cb_ = &callbacks; }

  FilterStatus decodeHeaders(HeaderMap& headers, bool) override {
    const RbacRules* rules = factory_.rules_.get();
    if (const router::RouteEntry* route = cb_->route()) {
      // Envoy's most specific per-filter config; one of another type under
      // this filter's name is ignored, as in Envoy.
      if (auto* own = dynamic_cast<const RbacRules*>(route->perFilterConfig(factory_.name_))) {
        rules = own;
      }
    }
    if (!rules->engine && !rules->shadow) return FilterStatus::kContinue;
    rbac::RequestView request;
    request.headers = &headers;
    // The connection's facts are made once per connection, on first use.
    if (rules->needs & rbac::RbacEngine::kNeedsConnection) {
      request.connection = cb_->downstreamConnectionInfo();
    }
    if (rules->needs & rbac::RbacEngine::kNeedsRemoteIp)
      request.remote_ip = cb_->downstreamRemoteIp();
    RbacStats& stats = factory_.statsOn(cb_->worker());
    if (rules->shadow) {
      if (rules->shadow->evaluate(request).allowed) {
        stats.shadow_allowed.inc();
      } else {
        stats.shadow_denied.inc();
      }
    }
    if (!rules->engine) return FilterStatus::kContinue;
    const rbac::RbacEngine::Decision d = rules->engine->evaluate(request);
    if (d.allowed) {
      stats.allowed.inc();
      return FilterStatus::kContinue;
    }
    stats.denied.inc();
    // Envoy's RBAC filter sets no response flag.
    cb_->sendLocalReply(403, kDeniedBody, "",
                        d.policy != nullptr ? std::string_view(d.policy->denied_details)
                                            : rbac::kDeniedNoPolicyDetails);
    return FilterStatus::kStopIteration;
  }
  FilterStatus decodeData(BufferChain&, bool) override { return FilterStatus::kContinue; }
  FilterStatus decodeTrailers(HeaderMap&) override { return FilterStatus::kContinue; }
  FilterStatus encodeHeaders(HeaderMap&, bool) override { return FilterStatus::kContinue; }
  FilterStatus encodeData(BufferChain&, bool) override { return FilterStatus::kContinue; }
  FilterStatus encodeTrailers(HeaderMap&) override { return FilterStatus::kContinue; }
  void onDestroy() override {}

 private:
  const RbacFilterFactory& factory_;
  FilterCallbacks* cb_ = nullptr;
};

std::unique_ptr<HttpFilter> RbacFilterFactory::create() const {
  return std::make_unique<RbacFilter>(*this);
}

}  // namespace

std::string rbacStatName(const std::string& prefix, const char* name) {
  if (prefix.empty() || prefix.back() == '.') return prefix + name;
  return prefix + "." + name;
}

Result<std::shared_ptr<const RbacRules>> compileRbacRules(const rbac_http_v3::RBAC& proto,
                                                          const std::string& path) {
  if (proto.has_matcher()) return configError(path + ".matcher: not supported yet");
  if (proto.has_shadow_matcher()) return configError(path + ".shadow_matcher: not supported yet");
  if (proto.track_per_rule_stats()) {
    return configError(path + ".track_per_rule_stats: not supported yet");
  }
  auto rules = std::make_shared<RbacRules>();
  if (proto.has_rules()) {
    auto engine = rbac::compileRbacEngine(proto.rules(), path + ".rules");
    if (!engine) return engine.status();
    rules->needs |= engine->needs;
    rules->engine = std::move(*engine);
  }
  if (proto.has_shadow_rules()) {
    auto engine = rbac::compileRbacEngine(proto.shadow_rules(), path + ".shadow_rules");
    if (!engine) return engine.status();
    rules->needs |= engine->needs;
    rules->shadow = std::move(*engine);
  }
  return std::shared_ptr<const RbacRules>(std::move(rules));
}

Result<std::shared_ptr<const HttpFilterFactory>> createRbacFilterFactory(
    const google::protobuf::Any& typed_config, const FilterFactoryContext& context) {
  rbac_http_v3::RBAC proto;
  if (!typed_config.UnpackTo(&proto)) {
    return configError(context.path + ": could not be decoded as " + proto.GetTypeName());
  }
  auto rules = compileRbacRules(proto, context.path);
  if (!rules) return rules.status();
  const std::string base = "http." + context.stat_prefix + ".rbac.";
  return std::shared_ptr<const HttpFilterFactory>(std::make_shared<RbacFilterFactory>(
      std::move(*rules), context.filter_name, base + proto.rules_stat_prefix(),
      base + proto.shadow_rules_stat_prefix()));
}

Result<std::shared_ptr<const router::PerFilterConfig>> createRbacPerRouteConfig(
    const google::protobuf::Any& config, const std::string& path) {
  rbac_http_v3::RBACPerRoute proto;
  if (!config.UnpackTo(&proto)) {
    return configError(path + ": could not be decoded as " + proto.GetTypeName());
  }
  if (!proto.has_rbac()) {
    // Envoy: no rbac turns the filter off for the route.
    return std::shared_ptr<const router::PerFilterConfig>(std::make_shared<RbacRules>());
  }
  const auto& rbac = proto.rbac();
  // Envoy counts a route's decisions in the filter's stats; a route's own
  // stat prefixes name only its dynamic metadata keys, which skiff does not
  // set.
  for (const char* field : {"rules_stat_prefix", "shadow_rules_stat_prefix"}) {
    const std::string& value = std::string_view(field) == "rules_stat_prefix"
                                   ? rbac.rules_stat_prefix()
                                   : rbac.shadow_rules_stat_prefix();
    if (!value.empty()) {
      return configError(path + ".rbac." + field +
                         ": not supported yet in RBACPerRoute (Envoy uses it only to name dynamic "
                         "metadata, which skiff does not set)");
    }
  }
  auto rules = compileRbacRules(rbac, path + ".rbac");
  if (!rules) return rules.status();
  return std::shared_ptr<const router::PerFilterConfig>(std::move(*rules));
}

}  // namespace skiff::filters
