#include "filters/health_check/health_check.h"

#include <google/protobuf/any.pb.h>

#include <algorithm>
#include <cmath>

#include "envoy/extensions/filters/http/health_check/v3/health_check.pb.h"
#include "proxy/access_log/formatter.h"
#include "proxy/access_log/response_code_details.h"
#include "proxy/buffer/object_pool.h"
#include "proxy/common/health_check_state.h"
#include "proxy/upstream/cluster_manager.h"
#include "proxy/worker/worker.h"

namespace skiff::filters {
namespace {

namespace hc_v3 = envoy::extensions::filters::http::health_check::v3;

constexpr std::string_view kHealthCheckedCluster = "x-envoy-upstream-healthchecked-cluster";
constexpr std::string_view kImmediateFail = "x-envoy-immediate-health-check-fail";

class HealthCheckFilterFactory : public HttpFilterFactory {
 public:
  explicit HealthCheckFilterFactory(HealthCheckSettings settings)
      : settings_(std::move(settings)) {}
  std::unique_ptr<HttpFilter> create() const override;

  HealthCheckSettings settings_;
};

class HealthCheckFilter : public HttpFilter {
 public:
  static void* operator new(size_t size) { return ObjectPool<HealthCheckFilter, 1024>::take(size); }
  static void operator delete(void* p, size_t size) {
    ObjectPool<HealthCheckFilter, 1024>::give(p, size);
  }

  explicit HealthCheckFilter(const HealthCheckSettings& settings) : settings_(settings) {}

  void setCallbacks(FilterCallbacks& callbacks) override { cb_ = &callbacks; }

  FilterStatus decodeHeaders(HeaderMap& headers, bool) override {
    for (const router::HeaderMatch& m : settings_.headers) {
      if (!m.matches(headers)) return FilterStatus::kContinue;
    }
    health_check_ = true;
    if (access_log::StreamRecord* record = cb_->streamRecord()) record->health_check = true;
    if (settings_.pass_through && !healthCheckFailed()) return FilterStatus::kContinue;
    answer();
    return FilterStatus::kStopIteration;
  }
  FilterStatus decodeData(BufferChain&, bool) override { return FilterStatus::kContinue; }
  FilterStatus decodeTrailers(HeaderMap&) override { return FilterStatus::kContinue; }

  FilterStatus encodeHeaders(HeaderMap& headers, bool) override {
    if (health_check_) {
      // A copy: the snapshot may be swapped before the response is written.
      headers.set(kHealthCheckedCluster, cb_->worker().snapshot()->node_cluster);
    } else if (healthCheckFailed()) {
      headers.set(kImmediateFail, "true");
    }
    return FilterStatus::kContinue;
  }
  FilterStatus encodeData(BufferChain&, bool) override { return FilterStatus::kContinue; }
  FilterStatus encodeTrailers(HeaderMap&) override { return FilterStatus::kContinue; }
  void onDestroy() override {}

 private:
  // Envoy's answer to a health check it handles. Envoy waits for the end of
  // the request first; skiff answers at its headers (health checks have no
  // body, and one that has is cut short as a local reply cuts it).
  void answer() {
    if (healthCheckFailed()) {
      cb_->sendLocalReply(503, "", "LH", access_log::details::kHealthCheckFailed);
      return;
    }
    Worker& worker = cb_->worker();
    const std::string_view details =
        judgeClusters(settings_, [&](const std::string& name) -> std::optional<ClusterMembership> {
          upstream::Cluster* cluster = worker.clusterManager().get(name);
          if (cluster == nullptr) return std::nullopt;
          // This worker's hosts: each worker holds the cluster's host set
          // and hears of every ejection.
          return ClusterMembership{cluster->hostCount(), cluster->healthyHostCount()};
        });
    const bool ok = details == access_log::details::kHealthCheckOk ||
                    details == access_log::details::kHealthCheckClusterHealthy;
    cb_->sendLocalReply(ok ? 200 : 503, "", ok ? "" : "LH", details);
  }

  const HealthCheckSettings& settings_;
  FilterCallbacks* cb_ = nullptr;
  bool health_check_ = false;  // The request matched: a health check.
};

std::unique_ptr<HttpFilter> HealthCheckFilterFactory::create() const {
  return std::make_unique<HealthCheckFilter>(settings_);
}

}  // namespace

Result<HealthCheckSettings> compileHealthCheckSettings(const hc_v3::HealthCheck& proto,
                                                       const std::string& path) {
  // Envoy's validation: pass_through_mode is required.
  if (!proto.has_pass_through_mode()) {
    return configError(path + ".pass_through_mode: is required");
  }
  HealthCheckSettings s;
  s.pass_through = proto.pass_through_mode().value();
  for (int i = 0; i < proto.headers_size(); ++i) {
    auto m =
        router::compileHeaderMatch(proto.headers(i), path + ".headers[" + std::to_string(i) + "]");
    if (!m) return m.status();
    s.headers.push_back(std::move(*m));
  }
  for (const auto& [name, percent] : proto.cluster_min_healthy_percentages()) {
    const double v = percent.value();
    // Envoy's validation of type.v3.Percent: within [0, 100].
    if (!(v >= 0 && v <= 100)) {
      return configError(path + ".cluster_min_healthy_percentages[\"" + name +
                         "\"].value: must be within [0, 100]");
    }
    s.cluster_min_healthy.emplace_back(name, static_cast<uint64_t>(std::trunc(v)));
  }
  // By name, so that which cluster an answer's details are about is stable.
  std::sort(s.cluster_min_healthy.begin(), s.cluster_min_healthy.end());
  return s;
}

Result<std::shared_ptr<const HttpFilterFactory>> createHealthCheckFilterFactory(
    const google::protobuf::Any& typed_config, const FilterFactoryContext& context) {
  hc_v3::HealthCheck proto;
  if (!typed_config.UnpackTo(&proto)) {
    return configError(context.path + ": could not be decoded as " + proto.GetTypeName());
  }
  auto settings = compileHealthCheckSettings(proto, context.path);
  if (!settings) return settings.status();
  return std::shared_ptr<const HttpFilterFactory>(
      std::make_shared<HealthCheckFilterFactory>(std::move(*settings)));
}

}  // namespace skiff::filters
