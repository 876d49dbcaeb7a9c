#include "filters/fault/fault.h"

#include <google/protobuf/any.pb.h>

#include <climits>

#include "envoy/extensions/filters/http/fault/v3/fault.pb.h"
#include "filters/common/grpc_reply.h"
#include "filters/per_worker.h"
#include "proxy/access_log/response_code_details.h"
#include "proxy/buffer/object_pool.h"
#include "proxy/net/deadline_queue.h"
#include "proxy/router/duration.h"
#include "proxy/stats/stats.h"
#include "proxy/worker/worker.h"

namespace skiff::filters {
namespace {

namespace fault_v3 = envoy::extensions::filters::http::fault::v3;

// Envoy's header controls (config_http_filters_fault_injection_http_header).
constexpr std::string_view kDelayRequest = "x-envoy-fault-delay-request";
constexpr std::string_view kDelayPercentage = "x-envoy-fault-delay-request-percentage";
constexpr std::string_view kAbortRequest = "x-envoy-fault-abort-request";
constexpr std::string_view kAbortGrpcRequest = "x-envoy-fault-abort-grpc-request";
constexpr std::string_view kAbortPercentage = "x-envoy-fault-abort-request-percentage";
constexpr std::string_view kDownstreamNode = "x-envoy-downstream-service-node";
constexpr std::string_view kDownstreamCluster = "x-envoy-downstream-service-cluster";
constexpr std::string_view kAbortBody = "fault filter abort";

// Envoy's http.<stat_prefix>.fault.* stats, one block per factory per
// worker, made when the worker installs the config (filters/per_worker.h).
struct FaultStats {
  FaultStats(stats::Store& s, const std::string& p)
      : store(s),
        prefix(p),
        aborts_injected(s.counter(p + "aborts_injected")),
        delays_injected(s.counter(p + "delays_injected")),
        faults_overflow(s.counter(p + "faults_overflow")),
        response_rl_injected(s.counter(p + "response_rl_injected")),
        active_faults(s.gauge(p + "active_faults")) {}
  stats::Store& store;
  std::string prefix;  // "http.<stat_prefix>.fault."
  stats::Counter& aborts_injected;
  stats::Counter& delays_injected;
  stats::Counter& faults_overflow;
  stats::Counter& response_rl_injected;  // Always 0: response_rate_limit is refused.
  stats::Gauge& active_faults;
};

class FaultFilterFactory : public HttpFilterFactory {
 public:
  FaultFilterFactory(std::shared_ptr<const FaultSettings> settings, std::string name,
                     std::string stats_prefix)
      : settings_(std::move(settings)),
        name_(std::move(name)),
        stats_prefix_(std::move(stats_prefix)) {}
  std::unique_ptr<HttpFilter> create() const override;
  void installOn(Worker& worker) const override { statsOn(worker); }

  // This worker's stats: made at install, found by index after.
  FaultStats& statsOn(Worker& worker) const {
    return stats_.install(worker.index(), [&] {
      return std::make_unique<FaultStats>(worker.stats(), stats_prefix_);
    });
  }

  std::shared_ptr<const FaultSettings> settings_;
  std::string name_;          // In http_filters: the key of its per-route configs.
  std::string stats_prefix_;  // "http.<stat_prefix>.fault."
  // Faults in progress on every worker, for max_active_faults. Envoy checks
  // its (process-wide) active_faults gauge the same way: a fuzzy limit, read
  // and then raised without a compare-and-swap. Touched only by requests
  // that get a fault.
  mutable std::atomic<uint64_t> active_{0};
  PerWorker<FaultStats> stats_;
};

class FaultFilter : public HttpFilter {
 public:
  static void* operator new(size_t size) { return ObjectPool<FaultFilter, 1024>::take(size); }
  static void operator delete(void* p, size_t size) {
    ObjectPool<FaultFilter, 1024>::give(p, size);
  }

  explicit FaultFilter(const FaultFilterFactory& factory) : factory_(factory) {}

  void setCallbacks(FilterCallbacks& callbacks) override { cb_ = &callbacks; }

  FilterStatus decodeHeaders(HeaderMap& headers, bool) override {
    settings_ = factory_.settings_.get();
    if (const router::RouteEntry* route = cb_->route()) {
      // Envoy's most specific per-filter config; one of another filter's
      // type under this filter's name is ignored, as in Envoy.
      if (auto* own = dynamic_cast<const FaultSettings*>(route->perFilterConfig(factory_.name_))) {
        settings_ = own;
      }
    }
    const FaultSettings& s = *settings_;
    if (s.abort == FaultSettings::AbortKind::kNone && s.delay == FaultSettings::DelayKind::kNone) {
      return FilterStatus::kContinue;
    }
    if (!s.upstream_cluster.empty()) {
      const router::RouteEntry* route = cb_->route();
      if (route == nullptr || route->kind() != router::RouteEntry::Kind::kCluster ||
          route->clusterName(headers, cb_->worker().random()) != s.upstream_cluster) {
        return FilterStatus::kContinue;
      }
    }
    if (!s.downstream_nodes.empty()) {
      auto node = headers.get(kDownstreamNode);
      if (!node) return FilterStatus::kContinue;
      bool listed = false;
      for (const std::string& n : s.downstream_nodes) listed = listed || n == *node;
      if (!listed) return FilterStatus::kContinue;
    }
    for (const router::HeaderMatch& m : s.headers) {
      if (!m.matches(headers)) return FilterStatus::kContinue;
    }
    request_ = &headers;
    if (std::optional<std::chrono::milliseconds> delay = s.delayFor(headers, random())) {
      if (tryActivate()) {
        // A duration from configuration shares a list with its kind; one
        // from a header is placed by its due time (deadline_queue.h).
        DeadlineQueue& q = cb_->worker().deadlines();
        const auto ms = static_cast<uint64_t>(delay->count());
        if (s.delay == FaultSettings::DelayKind::kFixed) {
          q.arm(delay_, ms);
        } else {
          q.armComputed(delay_, ms);
        }
        stats_->delays_injected.inc();
        countForDownstreamCluster("delays_injected");
        cb_->setResponseFlag("DI");
        return FilterStatus::kStopIteration;
      }
    }
    if (std::optional<FaultSettings::Abort> a = s.abortFor(headers, random())) {
      if (tryActivate()) {
        abort(*a);
        return FilterStatus::kStopIteration;
      }
    }
    return FilterStatus::kContinue;
  }
  FilterStatus decodeData(BufferChain&, bool) override { return FilterStatus::kContinue; }
  FilterStatus decodeTrailers(HeaderMap&) override { return FilterStatus::kContinue; }
  FilterStatus encodeHeaders(HeaderMap&, bool) override { return FilterStatus::kContinue; }
  FilterStatus encodeData(BufferChain&, bool) override { return FilterStatus::kContinue; }
  FilterStatus encodeTrailers(HeaderMap&) override { return FilterStatus::kContinue; }

  // A stream reset during a delay: the deadline is cancelled here and
  // unlinked when the filter is destroyed, so it never fires into a dead
  // stream.
  void onDestroy() override {
    destroyed_ = true;
    delay_.cancel();
    if (active_) {
      active_ = false;
      factory_.active_.fetch_sub(1, std::memory_order_relaxed);
      stats_->active_faults.dec();
    }
  }

 private:
  uint64_t random() { return cb_->worker().random(); }

  // Envoy's tryIncActiveFaults: a request counts as one active fault however
  // many it gets; max_active_faults is checked only when a fault is about to
  // be injected.
  bool tryActivate() {
    if (active_) return true;
    if (stats_ == nullptr) stats_ = &factory_.statsOn(cb_->worker());
    const uint64_t max = settings_->max_active_faults.value_or(UINT64_MAX);
    if (factory_.active_.load(std::memory_order_relaxed) >= max) {
      stats_->faults_overflow.inc();
      return false;
    }
    factory_.active_.fetch_add(1, std::memory_order_relaxed);
    stats_->active_faults.inc();
    active_ = true;
    return true;
  }

  // Envoy's http.<stat_prefix>.fault.<downstream cluster>.<stat>, for a
  // request that names its x-envoy-downstream-service-cluster. Made on
  // demand (a lookup under the store's lock), only for injected faults.
  void countForDownstreamCluster(const char* stat) {
    if (settings_->disable_downstream_cluster_stats) return;
    auto cluster = request_->get(kDownstreamCluster);
    if (!cluster || cluster->empty()) return;
    stats_->store.counter(stats_->prefix + std::string(*cluster) + "." + stat).inc();
  }

  void abort(const FaultSettings::Abort& a) {
    stats_->aborts_injected.inc();
    countForDownstreamCluster("aborts_injected");
    if (a.grpc_status >= 0 && isGrpcRequest(*request_)) {
      // Envoy: the gRPC status itself, in a trailers-only reply.
      sendGrpcStatusReply(*cb_, a.grpc_status, kAbortBody, "FI",
                          access_log::details::kFaultFilterAbort);
      return;
    }
    // A gRPC request aborted with an HTTP status gets that status's gRPC
    // mapping; any other request the status (200 for a grpc_status abort).
    cb_->sendLocalReply(static_cast<int>(a.http_status), kAbortBody, "FI",
                        access_log::details::kFaultFilterAbort);
  }

  static void onDelayDone(void* self) { static_cast<FaultFilter*>(self)->delayDone(); }

  // Envoy: a delay may be followed by an abort, drawn again now.
  void delayDone() {
    if (destroyed_) return;
    if (std::optional<FaultSettings::Abort> a = settings_->abortFor(*request_, random())) {
      abort(*a);  // Active already: the delay counted.
      return;
    }
    cb_->continueDecoding();
  }

  const FaultFilterFactory& factory_;
  FilterCallbacks* cb_ = nullptr;
  const FaultSettings* settings_ = nullptr;  // The factory's or the route's (both outlive us).
  const HeaderMap* request_ = nullptr;       // The chain's, for the stream's life.
  FaultStats* stats_ = nullptr;              // Found on the first fault.
  Deadline delay_{&FaultFilter::onDelayDone, this};
  bool active_ = false;  // Counted in active_faults.
  bool destroyed_ = false;
};

std::unique_ptr<HttpFilter> FaultFilterFactory::create() const {
  return std::make_unique<FaultFilter>(*this);
}

}  // namespace

std::optional<std::chrono::milliseconds> FaultSettings::delayFor(const HeaderMap& request,
                                                                 uint64_t random) const {
  if (delay == DelayKind::kNone) return std::nullopt;
  const FractionalPercent p = delay == DelayKind::kHeader
                                  ? delay_percentage.cappedBy(request.get(kDelayPercentage))
                                  : delay_percentage;
  if (!p.sample(random)) return std::nullopt;
  std::chrono::milliseconds d = fixed_delay;
  if (delay == DelayKind::kHeader) {
    auto h = request.get(kDelayRequest);
    std::optional<uint64_t> ms = h ? parseDecimal(*h) : std::nullopt;
    if (!ms || *ms > UINT32_MAX) return std::nullopt;
    d = std::chrono::milliseconds(*ms);
  }
  if (d.count() <= 0) return std::nullopt;  // Envoy delays only for > 0 ms.
  return d;
}

std::optional<FaultSettings::Abort> FaultSettings::abortFor(const HeaderMap& request,
                                                            uint64_t random) const {
  if (abort == AbortKind::kNone) return std::nullopt;
  const FractionalPercent p = abort == AbortKind::kHeader
                                  ? abort_percentage.cappedBy(request.get(kAbortPercentage))
                                  : abort_percentage;
  if (!p.sample(random)) return std::nullopt;
  switch (abort) {
    case AbortKind::kHttp:
      return Abort{abort_http_status, -1};
    case AbortKind::kGrpc:
      return Abort{200, static_cast<int>(abort_grpc_status)};
    case AbortKind::kHeader: {
      // An HTTP status takes precedence; a gRPC one answers 200 with it.
      if (auto h = request.get(kAbortRequest)) {
        std::optional<uint64_t> code = parseDecimal(*h);
        if (code && *code >= 200 && *code < 600) return Abort{static_cast<uint32_t>(*code), -1};
      }
      if (auto h = request.get(kAbortGrpcRequest)) {
        std::optional<uint64_t> code = parseDecimal(*h);
        if (code && *code <= INT_MAX) return Abort{200, static_cast<int>(*code)};
      }
      return std::nullopt;
    }
    case AbortKind::kNone:
      break;
  }
  return std::nullopt;
}

Result<std::shared_ptr<const FaultSettings>> compileFaultSettings(const fault_v3::HTTPFault& proto,
                                                                  const std::string& path) {
  auto s = std::make_shared<FaultSettings>();
  if (proto.has_abort()) {
    const auto& a = proto.abort();
    const std::string at = path + ".abort";
    switch (a.error_type_case()) {
      case fault_v3::FaultAbort::kHttpStatus:
        if (a.http_status() < 200 || a.http_status() >= 600) {
          return configError(at + ".http_status: " + std::to_string(a.http_status()) +
                             " is not in [200, 600)");
        }
        s->abort = FaultSettings::AbortKind::kHttp;
        s->abort_http_status = a.http_status();
        break;
      case fault_v3::FaultAbort::kGrpcStatus:
        if (a.grpc_status() > INT_MAX) {
          return configError(at + ".grpc_status: " + std::to_string(a.grpc_status()) +
                             " is too large");
        }
        s->abort = FaultSettings::AbortKind::kGrpc;
        s->abort_grpc_status = a.grpc_status();
        break;
      case fault_v3::FaultAbort::kHeaderAbort:
        s->abort = FaultSettings::AbortKind::kHeader;
        break;
      default:
        return configError(at + ": one of http_status, grpc_status, header_abort is required");
    }
    s->abort_percentage = FractionalPercent::from(a.percentage());
  }
  if (proto.has_delay()) {
    const auto& d = proto.delay();
    const std::string at = path + ".delay";
    switch (d.fault_delay_secifier_case()) {
      case envoy::extensions::filters::common::fault::v3::FaultDelay::kFixedDelay: {
        auto ms = router::durationMs(d.fixed_delay(), at + ".fixed_delay");
        if (!ms) return ms.status();
        // Envoy's validation: greater than zero.
        if (d.fixed_delay().seconds() == 0 && d.fixed_delay().nanos() == 0) {
          return configError(at + ".fixed_delay: must be greater than 0");
        }
        s->delay = FaultSettings::DelayKind::kFixed;
        s->fixed_delay = *ms;
        break;
      }
      case envoy::extensions::filters::common::fault::v3::FaultDelay::kHeaderDelay:
        s->delay = FaultSettings::DelayKind::kHeader;
        break;
      default:
        return configError(at + ": one of fixed_delay, header_delay is required");
    }
    s->delay_percentage = FractionalPercent::from(d.percentage());
  }
  s->upstream_cluster = proto.upstream_cluster();
  for (int i = 0; i < proto.headers_size(); ++i) {
    auto m =
        router::compileHeaderMatch(proto.headers(i), path + ".headers[" + std::to_string(i) + "]");
    if (!m) return m.status();
    s->headers.push_back(std::move(*m));
  }
  s->downstream_nodes.assign(proto.downstream_nodes().begin(), proto.downstream_nodes().end());
  if (proto.has_max_active_faults()) s->max_active_faults = proto.max_active_faults().value();
  s->disable_downstream_cluster_stats = proto.disable_downstream_cluster_stats();
  return std::shared_ptr<const FaultSettings>(std::move(s));
}

Result<std::shared_ptr<const HttpFilterFactory>> createFaultFilterFactory(
    const google::protobuf::Any& typed_config, const FilterFactoryContext& context) {
  fault_v3::HTTPFault proto;
  if (!typed_config.UnpackTo(&proto)) {
    return configError(context.path + ": could not be decoded as " + proto.GetTypeName());
  }
  auto settings = compileFaultSettings(proto, context.path);
  if (!settings) return settings.status();
  return std::shared_ptr<const HttpFilterFactory>(std::make_shared<FaultFilterFactory>(
      std::move(*settings), context.filter_name, "http." + context.stat_prefix + ".fault."));
}

Result<std::shared_ptr<const router::PerFilterConfig>> createFaultPerRouteConfig(
    const google::protobuf::Any& config, const std::string& path) {
  fault_v3::HTTPFault proto;
  if (!config.UnpackTo(&proto)) {
    return configError(path + ": could not be decoded as " + proto.GetTypeName());
  }
  auto settings = compileFaultSettings(proto, path);
  if (!settings) return settings.status();
  return std::shared_ptr<const router::PerFilterConfig>(std::move(*settings));
}

}  // namespace skiff::filters
