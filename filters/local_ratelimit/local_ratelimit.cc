#include "filters/local_ratelimit/local_ratelimit.h"

#include <google/protobuf/any.pb.h>
#include <uv.h>

#include "envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit.pb.h"
#include "filters/common/grpc_reply.h"
#include "proxy/access_log/response_code_details.h"
#include "proxy/buffer/object_pool.h"
#include "proxy/router/duration.h"
#include "proxy/stats/stats.h"
#include "proxy/worker/worker.h"

namespace skiff::filters {
namespace {

namespace lrl_v3 = envoy::extensions::filters::http::local_ratelimit::v3;

constexpr std::string_view kBody = "local_rate_limited";
constexpr int kResourceExhausted = 8;  // gRPC's RESOURCE_EXHAUSTED.

double nowSeconds(Worker& worker) { return static_cast<double>(uv_now(worker.loop())) / 1e3; }

class LocalRateLimitFactory : public HttpFilterFactory {
 public:
  LocalRateLimitFactory(std::shared_ptr<const LocalRateLimitSettings> settings, std::string name)
      : settings_(std::move(settings)), name_(std::move(name)) {}
  std::unique_ptr<HttpFilter> create() const override;
  void installOn(Worker& worker) const override { settings_->installOn(worker); }

  std::shared_ptr<const LocalRateLimitSettings> settings_;
  std::string name_;  // In http_filters: the key of its per-route configs.
};

class LocalRateLimitFilter : public HttpFilter {
 public:
  static void* operator new(size_t size) {
    return ObjectPool<LocalRateLimitFilter, 1024>::take(size);
  }
  static void operator delete(void* p, size_t size) {
    ObjectPool<LocalRateLimitFilter, 1024>::give(p, size);
  }

  explicit LocalRateLimitFilter(const LocalRateLimitFactory& factory) : factory_(factory) {}

  void setCallbacks(FilterCallbacks& callbacks) override { cb_ = &callbacks; }

  FilterStatus decodeHeaders(HeaderMap& headers, bool) override {
    const LocalRateLimitSettings* s = factory_.settings_.get();
    if (const router::RouteEntry* route = cb_->route()) {
      if (auto* own =
              dynamic_cast<const LocalRateLimitSettings*>(route->perFilterConfig(factory_.name_))) {
        s = own;
      }
    }
    Worker& worker = cb_->worker();
    if (!s->filter_enabled || !s->filter_enabled->sample(worker.random())) {
      return FilterStatus::kContinue;
    }
    LocalRateLimitStats& stats = s->statsOn(worker);
    stats.enabled.inc();
    used_ = s;
    if (s->bucket == nullptr || s->bucket->consume(nowSeconds(worker))) {
      stats.ok.inc();
      return FilterStatus::kContinue;
    }
    stats.rate_limited.inc();
    if (!s->filter_enforced || !s->filter_enforced->sample(worker.random())) {
      s->request_headers_to_add_when_not_enforced.apply(headers);
      return FilterStatus::kContinue;
    }
    stats.enforced.inc();
    limited_ = true;
    if (s->rate_limited_as_resource_exhausted && isGrpcRequest(headers)) {
      sendGrpcStatusReply(*cb_, kResourceExhausted, kBody, "RL",
                          access_log::details::kLocalRateLimited);
    } else {
      cb_->sendLocalReply(static_cast<int>(s->status), kBody, "RL",
                          access_log::details::kLocalRateLimited);
    }
    return FilterStatus::kStopIteration;
  }
  FilterStatus decodeData(BufferChain&, bool) override { return FilterStatus::kContinue; }
  FilterStatus decodeTrailers(HeaderMap&) override { return FilterStatus::kContinue; }

  FilterStatus encodeHeaders(HeaderMap& headers, bool) override {
    if (used_ == nullptr) return FilterStatus::kContinue;
    if (limited_) used_->response_headers_to_add.apply(headers);
    if (used_->x_ratelimit_headers && used_->bucket != nullptr) {
      // RFC draft "RateLimit Header Fields for HTTP", version 03, as Envoy
      // writes it: the bucket's size, what is left, and when the next token
      // comes.
      const double now = nowSeconds(cb_->worker());
      headers.addCopy("x-ratelimit-limit", std::to_string(used_->bucket->maxTokens()));
      headers.addCopy("x-ratelimit-remaining", std::to_string(used_->bucket->remaining(now)));
      headers.addCopy("x-ratelimit-reset", std::to_string(used_->bucket->secondsToNextToken(now)));
    }
    return FilterStatus::kContinue;
  }
  FilterStatus encodeData(BufferChain&, bool) override { return FilterStatus::kContinue; }
  FilterStatus encodeTrailers(HeaderMap&) override { return FilterStatus::kContinue; }
  void onDestroy() override {}

 private:
  const LocalRateLimitFactory& factory_;
  FilterCallbacks* cb_ = nullptr;
  const LocalRateLimitSettings* used_ = nullptr;  // The config that judged this request.
  bool limited_ = false;                          // Refused here.
};

std::unique_ptr<HttpFilter> LocalRateLimitFactory::create() const {
  return std::make_unique<LocalRateLimitFilter>(*this);
}

}  // namespace

LocalRateLimitStats::LocalRateLimitStats(stats::Store& s, const std::string& p)
    : enabled(s.counter(p + "enabled")),
      enforced(s.counter(p + "enforced")),
      rate_limited(s.counter(p + "rate_limited")),
      ok(s.counter(p + "ok")) {}

LocalRateLimitStats& LocalRateLimitSettings::statsOn(Worker& worker) const {
  return worker_stats.install(worker.index(), [&] {
    return std::make_unique<LocalRateLimitStats>(worker.stats(), stats_prefix);
  });
}

Result<std::shared_ptr<const LocalRateLimitSettings>> compileLocalRateLimit(
    const lrl_v3::LocalRateLimit& proto, const std::string& path, bool per_route) {
  auto s = std::make_shared<LocalRateLimitSettings>();
  if (proto.stat_prefix().empty()) return configError(path + ".stat_prefix: is required");
  s->stats_prefix = proto.stat_prefix() + ".http_local_rate_limit.";
  if (proto.has_status()) {
    const int code = static_cast<int>(proto.status().code());
    if (code < 100 || code > 599) {
      return configError(path + ".status.code: " + std::to_string(code) + " is not an HTTP status");
    }
    // Envoy answers 429 for a status below 400.
    s->status = code >= 400 ? static_cast<uint32_t>(code) : 429;
  }
  if (proto.has_token_bucket()) {
    const auto& b = proto.token_bucket();
    const std::string at = path + ".token_bucket";
    if (b.max_tokens() == 0) return configError(at + ".max_tokens: must be greater than 0");
    uint32_t per_fill = 1;  // Envoy's default.
    if (b.has_tokens_per_fill()) {
      per_fill = b.tokens_per_fill().value();
      if (per_fill == 0) return configError(at + ".tokens_per_fill: must be greater than 0");
    }
    if (!b.has_fill_interval()) return configError(at + ".fill_interval: is required");
    auto interval = router::durationMs(b.fill_interval(), at + ".fill_interval");
    if (!interval) return interval.status();
    if (interval->count() <= 0) {
      return configError(at + ".fill_interval: must be at least 1ms");
    }
    s->bucket = std::make_unique<AtomicTokenBucket>(b.max_tokens(), per_fill, *interval,
                                                    static_cast<double>(uv_hrtime()) / 1e9);
  } else if (per_route) {
    // Envoy: a route's limit without a bucket would limit nothing.
    return configError(path + ".token_bucket: is required in typed_per_filter_config");
  }
  // skiff has no runtime: runtime_key is read and never used.
  if (proto.has_filter_enabled()) {
    s->filter_enabled = FractionalPercent::from(proto.filter_enabled().default_value());
  }
  if (proto.has_filter_enforced()) {
    s->filter_enforced = FractionalPercent::from(proto.filter_enforced().default_value());
  }
  Status st = router::compileHeaderAdds(proto.response_headers_to_add(), path,
                                        "response_headers_to_add", s->response_headers_to_add);
  if (!st) return st;
  st = router::compileHeaderAdds(proto.request_headers_to_add_when_not_enforced(), path,
                                 "request_headers_to_add_when_not_enforced",
                                 s->request_headers_to_add_when_not_enforced);
  if (!st) return st;
  s->x_ratelimit_headers = proto.enable_x_ratelimit_headers() ==
                           envoy::extensions::common::ratelimit::v3::DRAFT_VERSION_03;
  s->rate_limited_as_resource_exhausted = proto.rate_limited_as_resource_exhausted();
  return std::shared_ptr<const LocalRateLimitSettings>(std::move(s));
}

Result<std::shared_ptr<const HttpFilterFactory>> createLocalRateLimitFilterFactory(
    const google::protobuf::Any& typed_config, const FilterFactoryContext& context) {
  lrl_v3::LocalRateLimit proto;
  if (!typed_config.UnpackTo(&proto)) {
    return configError(context.path + ": could not be decoded as " + proto.GetTypeName());
  }
  auto settings = compileLocalRateLimit(proto, context.path, false);
  if (!settings) return settings.status();
  return std::shared_ptr<const HttpFilterFactory>(
      std::make_shared<LocalRateLimitFactory>(std::move(*settings), context.filter_name));
}

Result<std::shared_ptr<const router::PerFilterConfig>> createLocalRateLimitPerRouteConfig(
    const google::protobuf::Any& config, const std::string& path) {
  lrl_v3::LocalRateLimit proto;
  if (!config.UnpackTo(&proto)) {
    return configError(path + ": could not be decoded as " + proto.GetTypeName());
  }
  auto settings = compileLocalRateLimit(proto, path, true);
  if (!settings) return settings.status();
  return std::shared_ptr<const router::PerFilterConfig>(std::move(*settings));
}

}  // namespace skiff::filters
