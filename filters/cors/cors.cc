#include "filters/cors/cors.h"

#include <google/protobuf/any.pb.h>

#include <array>

#include "envoy/extensions/filters/http/cors/v3/cors.pb.h"
#include "filters/per_worker.h"
#include "proxy/access_log/response_code_details.h"
#include "proxy/buffer/object_pool.h"
#include "proxy/stats/stats.h"
#include "proxy/worker/worker.h"

namespace skiff::filters {
namespace {

namespace cors_v3 = envoy::extensions::filters::http::cors::v3;

constexpr std::string_view kOrigin = "origin";
constexpr std::string_view kRequestMethod = "access-control-request-method";
constexpr std::string_view kRequestHeaders = "access-control-request-headers";
constexpr std::string_view kRequestPrivateNetwork = "access-control-request-private-network";
constexpr std::string_view kAllowOrigin = "access-control-allow-origin";
constexpr std::string_view kAllowCredentials = "access-control-allow-credentials";
constexpr std::string_view kAllowMethods = "access-control-allow-methods";
constexpr std::string_view kAllowHeaders = "access-control-allow-headers";
constexpr std::string_view kMaxAge = "access-control-max-age";
constexpr std::string_view kExposeHeaders = "access-control-expose-headers";
constexpr std::string_view kAllowPrivateNetwork = "access-control-allow-private-network";

// Envoy's http.<stat_prefix>.cors.* counters, one block per factory per
// worker, made when the worker installs the config (filters/per_worker.h).
struct CorsStats {
  CorsStats(stats::Store& s, const std::string& p)
      : origin_valid(s.counter(p + "origin_valid")),
        origin_invalid(s.counter(p + "origin_invalid")) {}
  stats::Counter& origin_valid;
  stats::Counter& origin_invalid;
};

class CorsFilterFactory : public HttpFilterFactory {
 public:
  CorsFilterFactory(std::string name, std::string stats_prefix)
      : name_(std::move(name)), stats_prefix_(std::move(stats_prefix)) {}
  std::unique_ptr<HttpFilter> create() const override;
  void installOn(Worker& worker) const override { statsOn(worker); }

  // This worker's stats: made at install, found by index after.
  CorsStats& statsOn(Worker& worker) const {
    return stats_.install(
        worker.index(), [&] { return std::make_unique<CorsStats>(worker.stats(), stats_prefix_); });
  }

  std::string name_;          // In http_filters: the key of its per-route policies.
  std::string stats_prefix_;  // "http.<stat_prefix>.cors."
  PerWorker<CorsStats> stats_;
};

class CorsFilter : public HttpFilter {
 public:
  static void* operator new(size_t size) { return ObjectPool<CorsFilter, 1024>::take(size); }
  static void operator delete(void* p, size_t size) { ObjectPool<CorsFilter, 1024>::give(p, size); }

  explicit CorsFilter(const CorsFilterFactory& factory) : factory_(factory) {}

  void setCallbacks(FilterCallbacks& callbacks) override { cb_ = &callbacks; }

  FilterStatus decodeHeaders(HeaderMap& headers, bool) override {
    // A request without an Origin is no CORS request, whatever the policy:
    // it pays for this lookup alone.
    auto origin = headers.get(kOrigin);
    if (!origin || origin->empty()) return FilterStatus::kContinue;
    // Envoy's CORS needs a route to a cluster: a direct response or a
    // redirect has no route entry there.
    const router::RouteEntry* route = cb_->route();
    if (route == nullptr || route->kind() != router::RouteEntry::Kind::kCluster) {
      return FilterStatus::kContinue;
    }
    std::array<const router::PerFilterConfig*, 3> levels{};
    const size_t found = route->perFilterConfigs(factory_.name_, levels);
    for (size_t i = 0; i < found; ++i) {
      // One of another filter's type under this filter's name is ignored.
      if (auto* p = dynamic_cast<const CorsPolicySettings*>(levels[i])) policies_[count_++] = p;
    }
    if (count_ == 0) return FilterStatus::kContinue;
    // Envoy: only the most specific policy's fractions count.
    const CorsPolicySettings& first = *policies_[0];
    const bool enabled = !first.filter_enabled || first.filter_enabled->sample(random());
    const bool shadow = first.shadow_enabled && first.shadow_enabled->sample(random());
    if (!enabled && !shadow) return FilterStatus::kContinue;

    const bool allowed = originAllowed(*origin);
    CorsStats& stats = factory_.statsOn(cb_->worker());
    (allowed ? stats.origin_valid : stats.origin_invalid).inc();
    if (!enabled) return FilterStatus::kContinue;  // Shadow: counted only.
    cors_request_ = true;
    if (allowed) origin_ = *origin;  // A view: the chain keeps the request's headers.

    // A preflight: OPTIONS with an Origin and an Access-Control-Request-Method.
    if (headers.method() != "OPTIONS") return FilterStatus::kContinue;
    auto request_method = headers.get(kRequestMethod);
    if (!request_method || request_method->empty()) return FilterStatus::kContinue;
    if (!allowed && forwardNotMatchingPreflights()) return FilterStatus::kContinue;
    answerPreflight(headers, *request_method);
    return FilterStatus::kStopIteration;
  }
  FilterStatus decodeData(BufferChain&, bool) override { return FilterStatus::kContinue; }
  FilterStatus decodeTrailers(HeaderMap&) override { return FilterStatus::kContinue; }

  // A CORS request from an allowed origin: the response says so.
  FilterStatus encodeHeaders(HeaderMap& headers, bool) override {
    if (!cors_request_ || origin_.empty()) return FilterStatus::kContinue;
    headers.set(kAllowOrigin, origin_);
    if (allowCredentials()) headers.set(kAllowCredentials, "true");
    if (std::string_view expose = exposeHeaders(); !expose.empty()) {
      headers.set(kExposeHeaders, expose);
    }
    return FilterStatus::kContinue;
  }
  FilterStatus encodeData(BufferChain&, bool) override { return FilterStatus::kContinue; }
  FilterStatus encodeTrailers(HeaderMap&) override { return FilterStatus::kContinue; }
  void onDestroy() override {}

 private:
  uint64_t random() { return cb_->worker().random(); }

  // Envoy's merge: a field comes from the most specific policy that sets it.
  const std::vector<router::StringMatch>& allowOrigins() const {
    for (size_t i = 0; i < count_; ++i) {
      if (!policies_[i]->allow_origins.empty()) return policies_[i]->allow_origins;
    }
    static const std::vector<router::StringMatch> kNone;
    return kNone;
  }
  template <class Field>
  std::string_view text(Field field) const {
    for (size_t i = 0; i < count_; ++i) {
      const std::string& v = policies_[i]->*field;
      if (!v.empty()) return v;
    }
    return {};
  }
  template <class Field>
  std::optional<bool> flag(Field field) const {
    for (size_t i = 0; i < count_; ++i) {
      if (const std::optional<bool>& v = policies_[i]->*field) return v;
    }
    return std::nullopt;
  }
  std::string_view allowMethods() const { return text(&CorsPolicySettings::allow_methods); }
  std::string_view allowHeaders() const { return text(&CorsPolicySettings::allow_headers); }
  std::string_view exposeHeaders() const { return text(&CorsPolicySettings::expose_headers); }
  std::string_view maxAge() const { return text(&CorsPolicySettings::max_age); }
  bool allowCredentials() const {
    return flag(&CorsPolicySettings::allow_credentials).value_or(false);
  }
  bool allowPrivateNetworkAccess() const {
    return flag(&CorsPolicySettings::allow_private_network_access).value_or(false);
  }
  bool forwardNotMatchingPreflights() const {
    return flag(&CorsPolicySettings::forward_not_matching_preflights).value_or(true);
  }

  // Envoy: a matcher that takes "*" itself allows every origin.
  bool originAllowed(std::string_view origin) const {
    for (const router::StringMatch& m : allowOrigins()) {
      if (m.matches("*") || m.matches(origin)) return true;
    }
    return false;
  }

  void answerPreflight(const HeaderMap& request, std::string_view request_method) {
    auto h = std::make_unique<HeaderMap>();
    h->addView(":status", "200");
    // Copies: the values live in the request's map and the route's policy.
    if (!origin_.empty()) h->set(kAllowOrigin, origin_);
    if (allowCredentials()) h->set(kAllowCredentials, "true");
    if (std::string_view methods = allowMethods(); !methods.empty()) {
      h->set(kAllowMethods, methods == "*" ? request_method : methods);
    }
    if (std::string_view allow = allowHeaders(); !allow.empty()) {
      h->set(kAllowHeaders, allow == "*" ? request.get(kRequestHeaders).value_or("") : allow);
    }
    if (std::string_view age = maxAge(); !age.empty()) h->set(kMaxAge, age);
    if (allowPrivateNetworkAccess() && request.get(kRequestPrivateNetwork) == "true") {
      h->set(kAllowPrivateNetwork, "true");
    }
    cb_->setResponseCodeDetails(access_log::details::kCorsResponse);
    cb_->encodeHeaders(std::move(h), true);
  }

  const CorsFilterFactory& factory_;
  FilterCallbacks* cb_ = nullptr;
  // The route's policies, most specific first (they outlive the stream's
  // use of them: the stream pins its route table).
  std::array<const CorsPolicySettings*, 3> policies_{};
  size_t count_ = 0;
  std::string_view origin_;    // The request's Origin, when allowed.
  bool cors_request_ = false;  // An enabled policy saw an Origin.
};

std::unique_ptr<HttpFilter> CorsFilterFactory::create() const {
  return std::make_unique<CorsFilter>(*this);
}

}  // namespace

Result<std::shared_ptr<const HttpFilterFactory>> createCorsFilterFactory(
    const google::protobuf::Any& typed_config, const FilterFactoryContext& context) {
  cors_v3::Cors proto;
  if (!typed_config.UnpackTo(&proto)) {
    return configError(context.path + ": could not be decoded as " + proto.GetTypeName());
  }
  return std::shared_ptr<const HttpFilterFactory>(std::make_shared<CorsFilterFactory>(
      context.filter_name, "http." + context.stat_prefix + ".cors."));
}

Result<std::shared_ptr<const router::PerFilterConfig>> createCorsPerRouteConfig(
    const google::protobuf::Any& config, const std::string& path) {
  cors_v3::CorsPolicy proto;
  if (!config.UnpackTo(&proto)) {
    return configError(path + ": could not be decoded as " + proto.GetTypeName());
  }
  auto s = std::make_shared<CorsPolicySettings>();
  for (int i = 0; i < proto.allow_origin_string_match_size(); ++i) {
    auto m =
        router::compileStringMatch(proto.allow_origin_string_match(i),
                                   path + ".allow_origin_string_match[" + std::to_string(i) + "]");
    if (!m) return m.status();
    s->allow_origins.push_back(std::move(*m));
  }
  s->allow_methods = proto.allow_methods();
  s->allow_headers = proto.allow_headers();
  s->expose_headers = proto.expose_headers();
  s->max_age = proto.max_age();
  if (proto.has_allow_credentials()) s->allow_credentials = proto.allow_credentials().value();
  if (proto.has_allow_private_network_access()) {
    s->allow_private_network_access = proto.allow_private_network_access().value();
  }
  if (proto.has_forward_not_matching_preflights()) {
    s->forward_not_matching_preflights = proto.forward_not_matching_preflights().value();
  }
  if (proto.has_filter_enabled()) {
    s->filter_enabled = FractionalPercent::from(proto.filter_enabled().default_value());
  }
  if (proto.has_shadow_enabled()) {
    s->shadow_enabled = FractionalPercent::from(proto.shadow_enabled().default_value());
  }
  return std::shared_ptr<const router::PerFilterConfig>(std::move(s));
}

}  // namespace skiff::filters
