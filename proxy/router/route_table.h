// A RouteConfiguration compiled into an immutable table (DESIGN.md: config is
// data, swapped whole). Matching is read-only and allocation-free, so every
// worker shares one table through a shared_ptr<const RouteTable>.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/common/status.h"
#include "proxy/http/header_map.h"
#include "proxy/router/hash_policy.h"
#include "proxy/router/retry_policy.h"

namespace envoy::config::route::v3 {
class RouteConfiguration;
}
namespace envoy::config::core::v3 {
class HeaderValueOption;
}
namespace google::protobuf {
class Any;
template <typename T>
class RepeatedPtrField;
}  // namespace google::protobuf

namespace skiff {
class Worker;
}

namespace skiff::router {

// Header edits from request_headers_to_add / _to_remove and the response
// counterparts, at one level (route, virtual host or route configuration).
struct HeaderEdits {
  enum class Append { kAppendIfExistsOrAdd, kAddIfAbsent, kOverwriteIfExistsOrAdd };
  struct Add {
    std::string name;   // lowercase
    std::string value;  // literal (no %VAR% substitution yet)
    Append append = Append::kAppendIfExistsOrAdd;
  };
  std::vector<Add> add;
  std::vector<std::string> remove;  // lowercase
  void apply(HeaderMap& headers) const;
};

// Compiles request_headers_to_add-style options (literal values only) into
// out.add; where and field name them in errors ("<where>.<field>[i]...").
Status compileHeaderAdds(
    const google::protobuf::RepeatedPtrField<envoy::config::core::v3::HeaderValueOption>& add,
    const std::string& where, const char* field, HeaderEdits& out);

// One HTTP filter's configuration for a route, a virtual host or a whole
// route configuration (typed_per_filter_config), made by that filter's own
// code. The route table keeps it and knows nothing else about it.
class PerFilterConfig {
 public:
  virtual ~PerFilterConfig() = default;
  // A worker installs the route table that holds this (HttpFilterFactory::
  // installOn's twin, for a config with per-worker state of its own).
  virtual void installOn(Worker& /*worker*/) const {}
};

// Makes a PerFilterConfig from one typed_per_filter_config entry: the filter
// name (the map's key), its config (a FilterConfig already unwrapped), and
// whether the entry is_optional. path names the entry in errors. A null
// config (no error) drops the entry: an optional one skiff cannot use.
using PerFilterConfigParser = std::function<Result<std::shared_ptr<const PerFilterConfig>>(
    const std::string& filter_name, const google::protobuf::Any& config, bool is_optional,
    const std::string& path)>;

// A route action's timeouts, as Envoy's RouteAction has them. The router
// filter turns them into one request's timers (filters/router/grpc_timeout.h).
struct RouteTimeouts {
  // `timeout`: from the end of the request to the end of the response.
  // Envoy's default is 15s; zero means none.
  std::chrono::milliseconds timeout{15000};
  // `timeout` in milliseconds as text, made once: the router sends it as
  // x-envoy-expected-rq-timeout-ms without formatting or copying it.
  std::string timeout_text = "15000";
  // `max_grpc_timeout` (deprecated in Envoy, still honoured): when set, a gRPC
  // request's grpc-timeout header (none: infinity) replaces `timeout`, capped
  // by this value (zero: no cap).
  std::optional<std::chrono::milliseconds> max_grpc_timeout;
  // `grpc_timeout_offset`: taken off the header's value when it is larger.
  std::optional<std::chrono::milliseconds> grpc_timeout_offset;
  // `max_stream_duration` is set: Envoy's newer timeouts. The three fields
  // above are then ignored, and the stream is bounded from its start instead.
  bool has_max_stream_duration = false;
  // `max_stream_duration.max_stream_duration` (zero: none).
  std::optional<std::chrono::milliseconds> max_stream_duration;
  // `max_stream_duration.grpc_timeout_header_max`: when set, a grpc-timeout
  // header bounds the stream, capped by this value (zero: no cap).
  std::optional<std::chrono::milliseconds> grpc_timeout_header_max;
  // `max_stream_duration.grpc_timeout_header_offset`: taken off that bound.
  std::optional<std::chrono::milliseconds> grpc_timeout_header_offset;
};

struct WeightedCluster {
  std::string name;
  uint32_t weight = 0;
};

class RouteEntry {
 public:
  enum class Kind { kCluster, kDirectResponse, kRedirect };

  Kind kind() const { return kind_; }
  const std::string& name() const { return name_; }

  // kCluster: the cluster for this request. Handles `cluster`,
  // `weighted_clusters` (random picks among weights) and `cluster_header`
  // (empty when the header is missing). Views live as long as the table or
  // the headers.
  std::string_view clusterName(const HeaderMap& request, uint64_t random) const;
  // The route's `timeout` (Envoy default 15s; zero means none).
  std::chrono::milliseconds timeout() const { return timeouts_.timeout; }
  // Every timeout of the route action, gRPC ones included.
  const RouteTimeouts& timeouts() const { return timeouts_; }
  // Applies prefix_rewrite / regex_rewrite to :path, host_rewrite_literal to
  // :authority, and the request header edits of route, virtual host and
  // config (Envoy's order: route, then virtual host, then config, unless
  // most_specific_header_mutations_wins). matched_prefix is what matched.
  // insert_original_path: a rewrite keeps the path it replaced in
  // x-envoy-original-path, as Envoy's router does unless its
  // suppress_envoy_headers is set.
  void finalizeRequestHeaders(HeaderMap& request, bool insert_original_path = false) const;
  void finalizeResponseHeaders(HeaderMap& response) const;
  // Whether :authority is replaced by the upstream host's address.
  bool autoHostRewrite() const { return auto_host_rewrite_; }
  // RouteAction.upgrade_configs: whether this route enables (true) or
  // disables (false) upgrade_type (case-insensitive), or nothing when it
  // does not name it (the connection manager's upgrade_configs decide).
  std::optional<bool> upgradeEnabled(std::string_view upgrade_type) const;
  // Its CONNECT upgrade has connect_config: skiff terminates the CONNECT and
  // the upstream gets the tunnel's bytes over plain TCP.
  bool terminatesConnect() const { return terminates_connect_; }
  // RouteAction.cluster_not_found_response_code: the status answered when
  // the cluster is not known to the workers (503 by default, or 404, 500).
  uint32_t clusterNotFoundStatus() const { return cluster_not_found_status_; }
  // The route's retry_policy, else its virtual host's (Envoy: the route's
  // replaces the virtual host's whole), or nullptr: no retries.
  const RetryPolicy* retryPolicy() const { return retry_policy_.get(); }
  // RouteAction.hash_policy, or nullptr when it has none: the key for
  // RING_HASH and MAGLEV clusters (others never compute it).
  const HashPolicy* hashPolicy() const { return hash_policy_.get(); }
  // typed_per_filter_config for the filter named filter_name (its name in
  // http_filters): the route's, else its virtual host's, else its route
  // configuration's (Envoy's "most specific wins"); nullptr when none has
  // one. A scan of a short list: only filters that read it pay for it.
  const PerFilterConfig* perFilterConfig(std::string_view filter_name) const;
  // Every level's typed_per_filter_config for the filter, most specific
  // first (route, virtual host, route configuration), into out: how many
  // there are, at most out.size(). For filters that merge the levels field
  // by field, as Envoy's CORS filter does.
  size_t perFilterConfigs(std::string_view filter_name,
                          std::span<const PerFilterConfig*> out) const;

  // kDirectResponse.
  uint32_t directStatus() const { return direct_status_; }
  const std::string& directBody() const { return direct_body_; }

  // kRedirect: the status (301 by default) and the Location for this request.
  uint32_t redirectStatus() const { return redirect_status_; }
  std::string redirectLocation(const HeaderMap& request) const;

  // Implementation detail made public for the compiler in route_table.cc.
  struct Data;
  explicit RouteEntry(std::unique_ptr<Data> data);
  ~RouteEntry();

 private:
  friend class RouteTable;
  Kind kind_ = Kind::kCluster;
  std::string name_;
  RouteTimeouts timeouts_;
  bool auto_host_rewrite_ = false;
  bool terminates_connect_ = false;
  uint16_t cluster_not_found_status_ = 503;
  std::shared_ptr<const RetryPolicy> retry_policy_;  // Shared with its virtual host's routes.
  std::unique_ptr<const HashPolicy> hash_policy_;
  uint32_t direct_status_ = 0;
  std::string direct_body_;
  uint32_t redirect_status_ = 301;
  std::unique_ptr<Data> data_;  // matchers, rewrites, edits: route_table.cc
};

class RouteTable {
 public:
  // Compiles config. path names it in errors, e.g.
  // "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config";
  // an error names the offending field under that path and why.
  // per_filter makes each typed_per_filter_config entry; without one, an
  // entry is refused.
  static Result<std::shared_ptr<const RouteTable>> compile(
      const envoy::config::route::v3::RouteConfiguration& config, const std::string& path,
      const PerFilterConfigParser& per_filter = {});

  // The route for a request, or nullptr (404, response flag NR). Uses
  // :authority (virtual host by domain: exact, *.suffix, prefix.*, *), :path
  // (with query), :method and the other headers. random is for runtime
  // fractions and weighted clusters.
  const RouteEntry* match(const HeaderMap& request, uint64_t random) const;

  const std::string& name() const;
  // Runs PerFilterConfig::installOn for each typed_per_filter_config of the
  // table, on a worker that installs it.
  void installOn(Worker& worker) const;
  // Every cluster a route can name statically (for config checks).
  std::vector<std::string> referencedClusters() const;

  struct Data;
  explicit RouteTable(std::unique_ptr<Data> data);
  ~RouteTable();

 private:
  std::unique_ptr<Data> data_;
};

}  // namespace skiff::router
