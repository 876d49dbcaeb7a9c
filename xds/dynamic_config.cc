#include "xds/dynamic_config.h"

#include <google/protobuf/util/json_util.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>

#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/endpoint/v3/endpoint.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "envoy/config/route/v3/route.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"
#include "proxy/common/json.h"
#include "proxy/common/log.h"
#include "proxy/net/listener.h"
#include "xds/field_support.h"
#include "xds/translator.h"

namespace skiff::xds {
namespace {

namespace cluster_v3 = envoy::config::cluster::v3;
namespace endpoint_v3 = envoy::config::endpoint::v3;
namespace listener_v3 = envoy::config::listener::v3;
namespace route_v3 = envoy::config::route::v3;
namespace hcm_v3 = envoy::extensions::filters::network::http_connection_manager::v3;
namespace tls_v3 = envoy::extensions::transport_sockets::tls::v3;

// The rds_index_ holder (and address owner) named for a static listener:
// this, then the listener's name.
constexpr std::string_view kStaticListenerHolder = "static listener ";

std::string nowRfc3339() {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof(out), "%s.%03dZ", buf, static_cast<int>(ms.count()));
  return out;
}

std::string join(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) {
    if (!out.empty()) out += "\n";
    out += l;
  }
  return out;
}

// Of a resource's bytes as received, before anything decodes them.
uint64_t rawHash(const XdsResource& r) {
  return std::hash<std::string>{}(r.resource.value()) ^
         (std::hash<std::string>{}(r.resource.type_url()) * 0x9e3779b97f4a7c15ULL);
}

// Decodes one resource of type T, checks that skiff implements every field it
// sets, and names it. Errors go to errors with path as their root.
template <class T>
std::shared_ptr<T> decode(const XdsResource& r, const std::string& collection,
                          std::vector<std::string>& errors, std::string& path) {
  auto msg = std::make_shared<T>();
  path = collection + "[" + r.name + "]";
  if (!r.resource.UnpackTo(msg.get())) {
    errors.push_back(path + ": cannot be decoded as " + msg->GetTypeName() + " (type URL '" +
                     r.resource.type_url() + "')");
    return nullptr;
  }
  auto unsupported = findUnsupportedFields(*msg, path);
  if (!unsupported.empty()) {
    errors.insert(errors.end(), unsupported.begin(), unsupported.end());
    return nullptr;
  }
  return msg;
}

std::string toJson(const google::protobuf::Message& msg, std::string_view type_url) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(msg, &json, options).ok()) return "{}";
  // An Any's JSON form: "@type" first, then the message's fields.
  std::string head = "{\"@type\":\"" + std::string(type_url) + "\"";
  if (json.size() <= 2) return head + "}";
  return head + "," + json.substr(1);
}

// The route configurations a listener's chains name through rds.
std::vector<std::string> rdsNames(const config::ListenerConfig& listener) {
  std::vector<std::string> names;
  auto add = [&](const std::shared_ptr<const config::FilterChainConfig>& chain) {
    if (chain && !chain->http.rds_route_config_name.empty()) {
      names.push_back(chain->http.rds_route_config_name);
    }
  };
  for (const auto& c : listener.filter_chains) add(c);
  add(listener.default_filter_chain);
  return names;
}

// SDS: writes the secrets a CommonTlsContext names (over ADS) into it as
// inline certificates and validation context, the form the translator
// reads. Every name goes to names; a secret not received yet sets missing.
template <class Secrets>
void inlineSecrets(tls_v3::CommonTlsContext& common, const std::string& path,
                   const Secrets& secrets, std::set<std::string>& names, bool& missing,
                   std::vector<std::string>& errors) {
  auto find = [&](const tls_v3::SdsSecretConfig& ref,
                  const std::string& p) -> const tls_v3::Secret* {
    if (!ref.has_sds_config() || !ref.sds_config().has_ads()) {
      errors.push_back(p + ".sds_config: only ads: {} is supported (static secrets are not)");
      return nullptr;
    }
    if (ref.sds_config().resource_api_version() != envoy::config::core::v3::V3) {
      errors.push_back(p + ".sds_config.resource_api_version: only V3 is supported");
      return nullptr;
    }
    names.insert(ref.name());
    auto it = secrets.find(ref.name());
    if (it == secrets.end()) {
      missing = true;
      return nullptr;
    }
    return static_cast<const tls_v3::Secret*>(it->second.secret.get());
  };
  for (int i = 0; i < common.tls_certificate_sds_secret_configs_size(); ++i) {
    const std::string p = path + ".tls_certificate_sds_secret_configs[" + std::to_string(i) + "]";
    const auto& ref = common.tls_certificate_sds_secret_configs(i);
    const tls_v3::Secret* secret = find(ref, p);
    if (secret == nullptr) continue;
    if (!secret->has_tls_certificate()) {
      errors.push_back(p + ".name: secret '" + ref.name() + "' holds no tls_certificate");
      continue;
    }
    *common.add_tls_certificates() = secret->tls_certificate();
  }
  common.clear_tls_certificate_sds_secret_configs();
  const tls_v3::SdsSecretConfig* ref = nullptr;
  tls_v3::CertificateValidationContext defaults;
  std::string p = path + ".validation_context_sds_secret_config";
  if (common.has_validation_context_sds_secret_config()) {
    ref = &common.validation_context_sds_secret_config();
  } else if (common.has_combined_validation_context()) {
    // Envoy merges the static defaults into the secret's context.
    p = path + ".combined_validation_context.validation_context_sds_secret_config";
    ref = &common.combined_validation_context().validation_context_sds_secret_config();
    defaults = common.combined_validation_context().default_validation_context();
  }
  if (ref == nullptr) return;
  const tls_v3::Secret* secret = find(*ref, p);
  if (secret == nullptr) return;
  if (!secret->has_validation_context()) {
    errors.push_back(p + ".name: secret '" + ref->name() + "' holds no validation_context");
    return;
  }
  tls_v3::CertificateValidationContext merged = secret->validation_context();
  merged.MergeFrom(defaults);
  *common.mutable_validation_context() = std::move(merged);
}

// The same for the TLS context an Any holds (a transport socket's typed_config).
template <class Context, class Secrets>
void inlineSecretsInAny(google::protobuf::Any& any, const std::string& path, const Secrets& secrets,
                        std::set<std::string>& names, bool& missing,
                        std::vector<std::string>& errors) {
  if (!any.Is<Context>()) return;  // The translator says what is wrong with it.
  Context context;
  if (!any.UnpackTo(&context)) return;
  if (!context.has_common_tls_context()) return;
  inlineSecrets(*context.mutable_common_tls_context(), path + ".common_tls_context", secrets, names,
                missing, errors);
  any.PackFrom(context);
}

}  // namespace

DynamicConfig::UpdateStats::UpdateStats(stats::Store& store, const std::string& prefix)
    : update_attempt(store.counter(prefix + "update_attempt")),
      update_success(store.counter(prefix + "update_success")),
      update_rejected(store.counter(prefix + "update_rejected")),
      update_failure(store.counter(prefix + "update_failure")),
      version(store.gauge(prefix + "version")) {}

DynamicConfig::DynamicConfig(Worker& main, std::shared_ptr<const config::Snapshot> base,
                             stats::Store& stats, Callbacks& callbacks)
    : main_(main),
      base_(std::move(base)),
      stats_(stats),
      callbacks_(callbacks),
      initial_fetch_timeout_ms_(static_cast<uint64_t>(base_->ads.initial_fetch_timeout.count())),
      connected_state_(stats.gauge("control_plane.connected_state")),
      active_clusters_(stats.gauge("cluster_manager.active_clusters")),
      warming_clusters_(stats.gauge("cluster_manager.warming_clusters")),
      active_listeners_(stats.gauge("listener_manager.total_listeners_active")),
      warming_listeners_(stats.gauge("listener_manager.total_listeners_warming")) {
  current_ = base_;
  active_clusters_.set(static_cast<int64_t>(base_->clusters.size()));
  active_listeners_.set(static_cast<int64_t>(base_->listeners.size()));
  for (const auto& [name, l] : base_->listeners) {
    auto names = rdsNames(*l);
    rds_index_.set(std::string(kStaticListenerHolder) + name, {names.begin(), names.end()});
  }
}

DynamicConfig::~DynamicConfig() { stop(); }

void DynamicConfig::stop() {
  for (uv_timer_t** t : {&warm_timer_, &init_timer_}) {
    if (*t == nullptr) continue;
    uv_close(reinterpret_cast<uv_handle_t*>(*t),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    *t = nullptr;
  }
  for (auto& [name, l] : listeners_) {
    if (l.reservation_fd >= 0) ::close(l.reservation_fd);
    l.reservation_fd = -1;
  }
}

void DynamicConfig::start() {
  // As in Envoy, the cluster manager initializes first: listeners (and the
  // routes static listeners name) are asked for once the clusters of the
  // first CDS response are initialized, or once CDS's initial_fetch_timeout
  // passed with no response (startListeners).
  if (base_->ads.cds) {
    callbacks_.subscribe(std::string(kClusterType), {}, /*wildcard=*/true);
    armInitTimer();
  }
  checkInitialized(false, false);
}

void DynamicConfig::startListeners() {
  listeners_started_ = true;
  if (base_->ads.lds) callbacks_.subscribe(std::string(kListenerType), {}, /*wildcard=*/true);
  updateSubscriptions();  // Routes named by static listeners.
  armInitTimer();
}

// initial_fetch_timeout: before startListeners, for the first CDS response
// (disarmed when it comes, as Envoy's subscription timer is); after, for
// the rest of the first configuration.
void DynamicConfig::armInitTimer() {
  if (initial_fetch_timeout_ms_ == 0) return;
  if (init_timer_ == nullptr) {
    init_timer_ = new uv_timer_t;
    uv_timer_init(main_.loop(), init_timer_);
    init_timer_->data = this;
  }
  uv_timer_start(
      init_timer_,
      [](uv_timer_t* t) {
        auto* self = static_cast<DynamicConfig*>(t->data);
        if (self->initialized_) return;
        if (!self->listeners_started_) {
          SKIFF_LOG(kWarn, "xds: no clusters within initial_fetch_timeout; asking for listeners");
          self->cds_timed_out_ = true;
          self->checkInitialized(false, false);
          return;
        }
        // Envoy's LDS and RDS timers are disarmed by their first response:
        // once those came, what still warms is bounded by its own
        // initial_fetch_timeout (the warming timer), not by this one.
        if ((!self->base_->ads.lds || self->lds_received_) && self->staticRoutesIn()) return;
        SKIFF_LOG(kWarn, "xds: initial fetch timed out; serving what has arrived");
        self->initialized_ = true;
        self->callbacks_.onInitialized();
      },
      initial_fetch_timeout_ms_, 0);
}

std::string DynamicConfig::onResources(const std::string& type_url,
                                       const std::vector<XdsResource>& updated,
                                       const std::vector<std::string>& removed,
                                       const std::string& version_info) {
  std::string error;
  if (type_url == kClusterType) {
    error = applyClusters(updated, removed);
    if (!cds_received_ && !listeners_started_ && init_timer_ != nullptr) {
      uv_timer_stop(init_timer_);  // CDS answered: its clusters' own warming bounds the wait.
    }
    cds_received_ = true;
  } else if (type_url == kListenerType) {
    error = applyListeners(updated, removed);
    lds_received_ = true;
  } else if (type_url == kRouteConfigurationType) {
    error = applyRoutes(updated, removed);
  } else if (type_url == kClusterLoadAssignmentType) {
    error = applyEndpoints(updated, removed);
  } else if (type_url == kSecretType) {
    error = applySecrets(updated, removed);
  } else {
    error = "type " + type_url + " is not supported";
  }
  countUpdate(type_url, updated, version_info, error.empty());
  if (error.empty()) {
    versions_[type_url] = version_info;
  } else {
    SKIFF_LOG(kWarn, "xds: rejected " + type_url + " version '" + version_info + "': " + error);
  }
  // Resources that were good are applied even in a response that is
  // refused (NACKed) for others: one bad cluster does not hold back the
  // rest, as in Envoy. Those refused keep their last good version.
  rebuild();
  return error;
}

void DynamicConfig::onClusterInitialized(
    const std::string& name, const std::shared_ptr<const config::ClusterConfig>& cluster) {
  auto it = clusters_.find(name);
  if (it == clusters_.end() || it->second.dns_warming != cluster) return;  // Replaced since.
  it->second.dns_initialized = true;
  if (!rebuilding_) rebuild();
}

void DynamicConfig::onStreamStatus(bool connected) {
  connected_state_.set(connected ? 1 : 0);
  if (connected) return;
  // Envoy counts a lost stream as a failed fetch of each subscription.
  for (auto& [prefix, s] : update_stats_) s->update_failure.inc();
}

// ---- Clusters

std::string DynamicConfig::applyClusters(const std::vector<XdsResource>& updated,
                                         const std::vector<std::string>& removed) {
  std::vector<std::string> errors;
  std::map<std::string, ClusterEntry> next;
  std::set<std::string> seen;
  for (const XdsResource& r : updated) {
    if (!seen.insert(r.name).second) {
      errors.push_back("clusters[" + r.name + "]: sent twice in one response");
      continue;
    }
    const uint64_t raw = rawHash(r);
    auto it = clusters_.find(r.name);
    if (it != clusters_.end() && it->second.raw_hash == raw) continue;  // The same bytes again.
    std::string path;
    auto msg = decode<cluster_v3::Cluster>(r, "clusters", errors, path);
    if (!msg) continue;
    if (msg->name() != r.name) {
      errors.push_back(path + ".name: '" + msg->name() + "' differs from the resource name");
      continue;
    }
    if (base_->clusters.count(r.name) != 0) {
      errors.push_back(path + ": a static cluster has this name");
      continue;
    }
    uint64_t hash = hashResource(*msg);
    if (it != clusters_.end() && it->second.hash == hash) {
      // The same cluster again, encoded otherwise: no new translation, no new version.
      it->second.raw_hash = raw;
      continue;
    }
    ClusterEntry e;
    if (it != clusters_.end()) e = it->second;  // Keeps what is active while this one warms.
    e.proto = msg;
    if (!translateCluster(e, path, secrets_, errors)) continue;
    e.version = r.version;
    e.last_updated = nowRfc3339();
    e.hash = hash;
    e.raw_hash = raw;
    e.merged = nullptr;
    e.warming_since_ms = uv_now(main_.loop());
    next.emplace(r.name, std::move(e));
  }
  // Each good resource is applied even when others are refused (Envoy does the same).
  for (auto& [name, e] : next) {
    clusters_[name] = std::move(e);
    dirty_clusters_.insert(name);
  }
  for (const auto& name : removed) {
    if (clusters_.erase(name) != 0) dirty_clusters_.insert(name);
  }
  return join(errors);
}

bool DynamicConfig::translateCluster(ClusterEntry& e, const std::string& path,
                                     const Secrets& secrets,
                                     std::vector<std::string>& errors) const {
  cluster_v3::Cluster cluster = static_cast<const cluster_v3::Cluster&>(*e.proto);
  std::set<std::string> names;
  bool missing = false;
  size_t before = errors.size();
  if (cluster.has_transport_socket() && cluster.transport_socket().has_typed_config()) {
    inlineSecretsInAny<tls_v3::UpstreamTlsContext>(
        *cluster.mutable_transport_socket()->mutable_typed_config(),
        path + ".transport_socket.typed_config", secrets, names, missing, errors);
  }
  if (errors.size() != before) return false;
  e.secrets = std::move(names);
  e.config = nullptr;
  if (missing) return true;  // Warming until the secret arrives.
  auto translated = xds::translateCluster(cluster, path);
  if (!translated) {
    errors.push_back(translated.status().message());
    return false;
  }
  if (!e.secrets.empty()) {
    // The definition is the resource as sent: a rotated certificate is the
    // same cluster, whose pools stay.
    auto copy = std::make_shared<config::ClusterConfig>(**translated);
    cluster_v3::Cluster definition = static_cast<const cluster_v3::Cluster&>(*e.proto);
    definition.clear_load_assignment();
    copy->definition_hash = hashResource(definition);
    e.config = std::move(copy);
  } else {
    e.config = *translated;
  }
  return true;
}

bool DynamicConfig::clusterWarm(const ClusterEntry& e, uint64_t now) const {
  if (!e.config) return false;  // A secret is missing: no TLS context yet.
  // STRICT_DNS: no timeout but the resolver's own (Envoy's init ends with
  // the first round).
  if (e.config->type == config::ClusterConfig::Type::kStrictDns) return e.dns_initialized;
  if (e.config->type != config::ClusterConfig::Type::kEds) return true;
  if (endpoints_.count(e.config->eds_service_name) != 0) return true;
  return fetchTimedOut(e.warming_since_ms, now);
}

// ---- Endpoints

std::string DynamicConfig::applyEndpoints(const std::vector<XdsResource>& updated,
                                          const std::vector<std::string>& removed) {
  std::vector<std::string> errors;
  std::map<std::string, EndpointEntry> next;
  for (const XdsResource& r : updated) {
    const uint64_t raw = rawHash(r);
    auto it = endpoints_.find(r.name);
    if (it != endpoints_.end() && it->second.raw_hash == raw) continue;
    std::string path;
    auto msg =
        decode<endpoint_v3::ClusterLoadAssignment>(r, "cluster_load_assignments", errors, path);
    if (!msg) continue;
    if (msg->cluster_name() != r.name) {
      errors.push_back(path + ".cluster_name: '" + msg->cluster_name() +
                       "' differs from the resource name");
      continue;
    }
    uint64_t hash = hashResource(*msg);
    if (it != endpoints_.end() && it->second.hash == hash) {
      it->second.raw_hash = raw;
      continue;
    }
    auto translated = translateClusterLoadAssignment(*msg, path);
    if (!translated) {
      errors.push_back(translated.status().message());
      continue;
    }
    EndpointEntry e;
    e.version = r.version;
    e.last_updated = nowRfc3339();
    e.hash = hash;
    e.raw_hash = raw;
    e.proto = msg;
    e.endpoints = std::move(*translated);
    next[r.name] = std::move(e);
  }
  // Each good resource is applied even when others are refused (Envoy does the same).
  // The clusters these endpoints belong to merge them anew.
  auto touch = [&](const std::string& name) {
    const auto& holders = eds_index_.holdersOf(name);
    dirty_clusters_.insert(holders.begin(), holders.end());
  };
  for (auto& [name, e] : next) {
    endpoints_[name] = std::move(e);
    touch(name);
  }
  for (const auto& name : removed) {
    if (endpoints_.erase(name) != 0) touch(name);
  }
  return join(errors);
}

// ---- Secrets (SDS)

std::string DynamicConfig::applySecrets(const std::vector<XdsResource>& updated,
                                        const std::vector<std::string>& removed) {
  std::vector<std::string> errors;
  Secrets next = secrets_;
  std::set<std::string> changed;
  for (const XdsResource& r : updated) {
    const uint64_t raw = rawHash(r);
    auto found = next.find(r.name);
    if (found != next.end() && found->second.raw_hash == raw) continue;
    std::string path;
    auto msg = decode<tls_v3::Secret>(r, "secrets", errors, path);
    if (!msg) continue;
    if (msg->name() != r.name) {
      errors.push_back(path + ".name: '" + msg->name() + "' differs from the resource name");
      continue;
    }
    if (!msg->has_tls_certificate() && !msg->has_validation_context()) {
      errors.push_back(path + ": needs tls_certificate or validation_context");
      continue;
    }
    uint64_t hash = hashResource(*msg);
    auto it = next.find(r.name);
    if (it != next.end() && it->second.hash == hash) continue;
    SecretEntry& e = next[r.name];
    e.version = r.version;
    e.last_updated = nowRfc3339();
    e.hash = hash;
    e.raw_hash = raw;
    e.proto = msg;
    e.secret = msg;
    changed.insert(r.name);
  }
  for (const auto& name : removed) {
    if (next.erase(name) != 0) changed.insert(name);
  }
  if (!errors.empty()) return join(errors);
  // Everything that names a changed secret is translated again, into copies:
  // a certificate that does not load refuses the secret, not the listener.
  auto names_any = [&](const std::set<std::string>& secrets) {
    return std::any_of(secrets.begin(), secrets.end(),
                       [&](const std::string& n) { return changed.count(n) != 0; });
  };
  std::map<std::string, ClusterEntry> clusters;
  for (const auto& [name, e] : clusters_) {
    if (!names_any(e.secrets)) continue;
    ClusterEntry copy = e;
    if (translateCluster(copy, "clusters[" + name + "]", next, errors)) {
      copy.merged = nullptr;
      clusters.emplace(name, std::move(copy));
    }
  }
  std::map<std::string, ListenerEntry> listeners;
  std::set<std::string> known = knownClusters();
  for (const auto& [name, e] : listeners_) {
    if (!names_any(e.secrets)) continue;
    ListenerEntry copy = e;
    if (translateListener(copy, "listeners[" + name + "]", known, next, errors)) {
      listeners.emplace(name, std::move(copy));
    }
  }
  if (!errors.empty()) return join(errors);
  secrets_ = std::move(next);
  for (auto& [name, e] : clusters) {
    clusters_[name] = std::move(e);
    dirty_clusters_.insert(name);
  }
  for (auto& [name, e] : listeners) {
    listeners_[name] = std::move(e);
    dirty_listeners_.insert(name);
  }
  return "";
}

// ---- Listeners

std::string DynamicConfig::applyListeners(const std::vector<XdsResource>& updated,
                                          const std::vector<std::string>& removed) {
  std::vector<std::string> errors;
  std::map<std::string, ListenerEntry> next;
  std::set<std::string> known = knownClusters();
  // Addresses taken by static listeners and by dynamic ones that stay.
  std::map<std::string, std::string> addresses;
  auto key = [](const config::SocketAddress& a) {
    return a.address + ":" + std::to_string(a.port);
  };
  for (const auto& [n, l] : base_->listeners)
    addresses[key(l->address)] = std::string(kStaticListenerHolder) + l->name;
  std::set<std::string> replaced;
  for (const XdsResource& r : updated) replaced.insert(r.name);
  for (const auto& name : removed) replaced.insert(name);
  for (const auto& [name, e] : listeners_) {
    if (replaced.count(name) == 0) addresses[key(e.address)] = "listener " + name;
  }
  std::set<std::string> seen;
  for (const XdsResource& r : updated) {
    if (!seen.insert(r.name).second) {
      errors.push_back("listeners[" + r.name + "]: sent twice in one response");
      continue;
    }
    const uint64_t raw = rawHash(r);
    auto it = listeners_.find(r.name);
    // Unchanged: keeps its address.
    auto keep = [&] { addresses[key(it->second.address)] = "listener " + r.name; };
    if (it != listeners_.end() && it->second.raw_hash == raw) {
      keep();
      continue;
    }
    std::string path;
    auto msg = decode<listener_v3::Listener>(r, "listeners", errors, path);
    if (!msg) continue;
    if (msg->name() != r.name) {
      errors.push_back(path + ".name: '" + msg->name() + "' differs from the resource name");
      continue;
    }
    if (base_->listeners.count(r.name) != 0) {
      errors.push_back(path + ": a static listener has this name");
      continue;
    }
    uint64_t hash = hashResource(*msg);
    if (it != listeners_.end() && it->second.hash == hash) {
      it->second.raw_hash = raw;
      keep();
      continue;
    }
    ListenerEntry e;
    if (it != listeners_.end()) e = it->second;
    config::SocketAddress address{msg->address().socket_address().address(),
                                  msg->address().socket_address().port_value()};
    // The same address as before keeps its socket (and a port 0 pick).
    bool same_address = it != listeners_.end() && it->second.address.address == address.address &&
                        (address.port == 0 || address.port == it->second.address.port);
    if (same_address) {
      address.port = it->second.address.port;
    } else {
      e.reservation_fd = -1;  // Bound below, once the whole response is good.
    }
    e.address = address;
    e.proto = msg;
    if (!translateListener(e, path, known, secrets_, errors)) continue;
    if (address.port != 0) {
      auto [at, added] = addresses.emplace(key(address), "listener " + r.name);
      if (!added) {
        errors.push_back(path + ".address: " + key(address) + " is already used by " + at->second);
        continue;
      }
    }
    e.version = r.version;
    e.last_updated = nowRfc3339();
    e.hash = hash;
    e.raw_hash = raw;
    e.warming_since_ms = uv_now(main_.loop());
    next.emplace(r.name, std::move(e));
  }
  // Each good resource is applied even when others are refused (Envoy does the same).
  // Bind (or reserve, for port 0) every new address before the listener
  // changes, so a port in use refuses that listener, not breaks it.
  for (auto it = next.begin(); it != next.end();) {
    auto& [name, e] = *it;
    // bind_to_port false: no socket (its address, often a service's virtual
    // IP, need not be local); it takes only connections handed off to it.
    const auto& proto = static_cast<const listener_v3::Listener&>(*e.proto);
    const bool binds = !proto.has_bind_to_port() || proto.bind_to_port().value();
    if (e.reservation_fd >= 0 || !binds) {
      ++it;
      continue;
    }
    Result<int> fd = bindTcpSocket(e.address.address, e.address.port, /*reuse_port=*/true);
    if (!fd) {
      errors.push_back("listeners[" + name + "].address: " + fd.status().message());
      it = next.erase(it);
      continue;
    }
    ++it;
    e.reservation_fd = *fd;
    if (e.address.port == 0) {
      e.address.port = boundPort(*fd);
      if (e.config) {
        auto copy = std::make_shared<config::ListenerConfig>(*e.config);
        copy->address.port = e.address.port;
        e.config = std::move(copy);
      }
    }
  }
  for (auto& [name, e] : next) {
    auto it = listeners_.find(name);
    if (it != listeners_.end() && it->second.reservation_fd >= 0 &&
        it->second.reservation_fd != e.reservation_fd) {
      ::close(it->second.reservation_fd);
    }
    listeners_[name] = std::move(e);
    dirty_listeners_.insert(name);
  }
  for (const auto& name : removed) {
    auto it = listeners_.find(name);
    if (it == listeners_.end()) continue;
    if (it->second.reservation_fd >= 0) ::close(it->second.reservation_fd);
    listeners_.erase(it);
    dirty_listeners_.insert(name);
  }
  return join(errors);
}

bool DynamicConfig::translateListener(ListenerEntry& e, const std::string& path,
                                      const std::set<std::string>& known, const Secrets& secrets,
                                      std::vector<std::string>& errors) const {
  const auto& original = static_cast<const listener_v3::Listener&>(*e.proto);
  listener_v3::Listener listener = original;
  std::set<std::string> names;
  bool missing = false;
  size_t before = errors.size();
  auto inline_chain = [&](listener_v3::FilterChain& chain, const std::string& chain_path) {
    if (!chain.has_transport_socket() || !chain.transport_socket().has_typed_config()) return;
    inlineSecretsInAny<tls_v3::DownstreamTlsContext>(
        *chain.mutable_transport_socket()->mutable_typed_config(),
        chain_path + ".transport_socket.typed_config", secrets, names, missing, errors);
  };
  for (int i = 0; i < listener.filter_chains_size(); ++i) {
    inline_chain(*listener.mutable_filter_chains(i),
                 path + ".filter_chains[" + std::to_string(i) + "]");
  }
  if (listener.has_default_filter_chain()) {
    inline_chain(*listener.mutable_default_filter_chain(), path + ".default_filter_chain");
  }
  if (errors.size() != before) return false;
  e.secrets = std::move(names);
  e.config = nullptr;
  e.rds_names.clear();
  if (missing) return true;  // Warming until the secrets arrive.
  auto translated = xds::translateListener(listener, path, &known);
  if (!translated) {
    errors.push_back(translated.status().message());
    return false;
  }
  auto config = std::make_shared<config::ListenerConfig>(**translated);
  config->address.port = e.address.port;
  if (!e.secrets.empty()) {
    // A chain is what was sent, not the certificate written into it: a
    // rotated certificate does not drain the chain's connections.
    auto rehash = [](std::shared_ptr<const config::FilterChainConfig>& chain,
                     const listener_v3::FilterChain& sent) {
      auto copy = std::make_shared<config::FilterChainConfig>(*chain);
      copy->definition_hash = hashResource(sent);
      chain = std::move(copy);
    };
    for (size_t i = 0; i < config->filter_chains.size(); ++i) {
      rehash(config->filter_chains[i], original.filter_chains(static_cast<int>(i)));
    }
    if (config->default_filter_chain) {
      rehash(config->default_filter_chain, original.default_filter_chain());
    }
  }
  e.rds_names = rdsNames(*config);
  e.config = std::move(config);
  return true;
}

bool DynamicConfig::listenerWarm(const ListenerEntry& e, uint64_t now) const {
  if (!e.config) return false;  // A secret is missing: no TLS context yet.
  bool all = std::all_of(e.rds_names.begin(), e.rds_names.end(),
                         [&](const std::string& n) { return routes_.count(n) != 0; });
  if (all) return true;
  return fetchTimedOut(e.warming_since_ms, now);
}

// ---- Routes

std::string DynamicConfig::applyRoutes(const std::vector<XdsResource>& updated,
                                       const std::vector<std::string>& removed) {
  std::vector<std::string> errors;
  std::map<std::string, RouteEntry> next;
  std::set<std::string> known = knownClusters();
  for (const XdsResource& r : updated) {
    const uint64_t raw = rawHash(r);
    auto it = routes_.find(r.name);
    if (it != routes_.end() && it->second.raw_hash == raw) continue;
    std::string path;
    auto msg = decode<route_v3::RouteConfiguration>(r, "route_configs", errors, path);
    if (!msg) continue;
    if (msg->name() != r.name) {
      errors.push_back(path + ".name: '" + msg->name() + "' differs from the resource name");
      continue;
    }
    uint64_t hash = hashResource(*msg);
    if (it != routes_.end() && it->second.hash == hash) {
      it->second.raw_hash = raw;
      continue;
    }
    auto table = translateRouteConfiguration(*msg, path, known);
    if (!table) {
      errors.push_back(table.status().message());
      continue;
    }
    RouteEntry e;
    e.version = r.version;
    e.last_updated = nowRfc3339();
    e.hash = hash;
    e.raw_hash = raw;
    e.proto = msg;
    e.table = *table;
    next[r.name] = std::move(e);
  }
  // Each good resource is applied even when others are refused (Envoy does the same).
  for (auto& [name, e] : next) {
    routes_[name] = std::move(e);
    dirty_routes_.insert(name);
  }
  for (const auto& name : removed) {
    if (routes_.erase(name) != 0) dirty_routes_.insert(name);
  }
  return join(errors);
}

std::set<std::string> DynamicConfig::knownClusters() const {
  std::set<std::string> names;
  for (const auto& [name, c] : base_->clusters) names.insert(name);
  for (const auto& [name, c] : clusters_) names.insert(name);
  return names;
}

// ---- Subscriptions, snapshots, readiness

void DynamicConfig::NameIndex::set(const std::string& holder, std::set<std::string> names) {
  auto& held = names_[holder];
  for (const std::string& r : held) {
    if (names.count(r) != 0) continue;
    auto it = holders_.find(r);
    it->second.erase(holder);
    if (!it->second.empty()) continue;
    holders_.erase(it);
    if (added.erase(r) == 0) removed.insert(r);
  }
  for (const std::string& r : names) {
    if (held.count(r) != 0) continue;
    auto& holders = holders_[r];
    if (holders.empty() && removed.erase(r) == 0) added.insert(r);
    holders.insert(holder);
  }
  if (names.empty()) {
    names_.erase(holder);
  } else {
    held = std::move(names);
  }
}

const std::set<std::string>& DynamicConfig::NameIndex::holdersOf(
    const std::string& resource) const {
  static const std::set<std::string> kNone;
  auto it = holders_.find(resource);
  return it == holders_.end() ? kNone : it->second;
}

// EDS and SDS follow both the version of a cluster serving now and one
// still warming; so does RDS for listeners.
void DynamicConfig::indexCluster(const std::string& name) {
  std::set<std::string> eds;
  std::set<std::string> sds;
  auto it = clusters_.find(name);
  if (it != clusters_.end()) {
    const ClusterEntry& e = it->second;
    for (const auto* c : {e.config.get(), e.active.get()}) {
      if (c != nullptr && c->type == config::ClusterConfig::Type::kEds) {
        eds.insert(c->eds_service_name);
      }
    }
    sds = e.secrets;
  }
  eds_index_.set(name, std::move(eds));
  sds_index_.set("cluster " + name, std::move(sds));
}

void DynamicConfig::indexListener(const std::string& name) {
  std::set<std::string> rds;
  std::set<std::string> sds;
  auto it = listeners_.find(name);
  if (it != listeners_.end()) {
    const ListenerEntry& e = it->second;
    rds.insert(e.rds_names.begin(), e.rds_names.end());
    if (e.active) {
      for (auto& n : rdsNames(*e.active)) rds.insert(n);
    }
    sds = e.secrets;
  }
  rds_index_.set("listener " + name, std::move(rds));
  sds_index_.set("listener " + name, std::move(sds));
}

// Endpoints, route configurations and secrets nothing names any more are
// dropped (in state of the world a control plane never removes them
// itself). A TLS context, once built, holds its certificates, so a secret
// can go as soon as no version of anything names it.
void DynamicConfig::updateSubscriptions() {
  auto follow = [&](NameIndex& index, std::string_view type_url, auto&& drop) {
    if (index.added.empty() && index.removed.empty()) return;
    for (const std::string& name : index.removed) drop(name);
    callbacks_.updateSubscription(std::string(type_url), index.added, index.removed);
    index.added.clear();
    index.removed.clear();
  };
  follow(sds_index_, kSecretType, [&](const std::string& n) { secrets_.erase(n); });
  follow(eds_index_, kClusterLoadAssignmentType,
         [&](const std::string& n) { endpoints_.erase(n); });
  if (!listeners_started_) return;  // Routes are asked for with the listeners.
  follow(rds_index_, kRouteConfigurationType, [&](const std::string& n) {
    if (routes_.erase(n) != 0) dirty_routes_.insert(n);
  });
}

void DynamicConfig::rebuild() {
  rebuilding_ = true;
  const uint64_t now = uv_now(main_.loop());
  auto next = std::make_shared<config::Snapshot>(*current_);  // Persistent maps: O(1).
  next->changed_since = current_->generation;
  next->generation = current_->generation + 1;
  next->changed_clusters.clear();
  next->changed_listeners.clear();
  next->changed_route_tables.clear();
  // Sets one name of a snapshot map to what should serve (null: nothing).
  auto place = [](auto& map, std::vector<std::string>& changed, const std::string& name,
                  const auto& value) {
    const auto* current = map.get(name);
    if (value) {
      if (current != nullptr && *current == value) return;
      map.set(name, value);
    } else if (!map.erase(name)) {
      return;
    }
    changed.push_back(name);
  };

  // Clusters: the changed ones, and those still warming (their endpoints
  // may have come, or their time run out).
  std::set<std::string> names;
  names.swap(dirty_clusters_);
  names.insert(warming_cluster_names_.begin(), warming_cluster_names_.end());
  for (const std::string& name : names) {
    auto it = clusters_.find(name);
    if (it == clusters_.end()) {
      warming_cluster_names_.erase(name);
      callbacks_.warmCluster(name, nullptr);
      indexCluster(name);
      place(next->clusters, next->changed_clusters, name,
            std::shared_ptr<const config::ClusterConfig>());
      continue;
    }
    ClusterEntry& e = it->second;
    // A STRICT_DNS version starts resolving as it arrives; one that is
    // replaced before its round ends stops.
    const bool dns = e.config && e.config->type == config::ClusterConfig::Type::kStrictDns;
    if (dns ? e.dns_warming != e.config : e.dns_warming != nullptr) {
      e.dns_warming = dns ? e.config : nullptr;
      e.dns_initialized = false;
      callbacks_.warmCluster(name, e.dns_warming);
    }
    if (clusterWarm(e, now)) {
      const EndpointEntry* eds = nullptr;
      if (e.config->type == config::ClusterConfig::Type::kEds) {
        auto found = endpoints_.find(e.config->eds_service_name);
        if (found != endpoints_.end()) eds = &found->second;
      }
      uint64_t eds_hash = eds ? eds->hash : 0;
      if (!e.merged || e.merged_endpoints_hash != eds_hash) {
        if (eds) {
          auto merged = std::make_shared<config::ClusterConfig>(*e.config);
          merged->endpoints = eds->endpoints;
          e.merged = std::move(merged);
        } else {
          e.merged = e.config;
        }
        e.merged_endpoints_hash = eds_hash;
      }
      if (e.active_proto != e.proto) {
        e.active_version = e.version;
        e.active_last_updated = e.last_updated;
      }
      e.active = e.merged;
      e.active_proto = e.proto;
      warming_cluster_names_.erase(name);
    } else {
      warming_cluster_names_.insert(name);
    }
    indexCluster(name);
    place(next->clusters, next->changed_clusters, name, e.active);
  }

  names.clear();
  names.swap(dirty_listeners_);
  names.insert(warming_listener_names_.begin(), warming_listener_names_.end());
  for (const std::string& name : names) {
    auto it = listeners_.find(name);
    if (it == listeners_.end()) {
      warming_listener_names_.erase(name);
      indexListener(name);
      place(next->listeners, next->changed_listeners, name,
            std::shared_ptr<const config::ListenerConfig>());
      continue;
    }
    ListenerEntry& e = it->second;
    if (listenerWarm(e, now)) {
      if (e.active_proto != e.proto) {
        e.active_version = e.version;
        e.active_last_updated = e.last_updated;
      }
      e.active = e.config;
      e.active_proto = e.proto;
      warming_listener_names_.erase(name);
    } else {
      warming_listener_names_.insert(name);
    }
    indexListener(name);
    place(next->listeners, next->changed_listeners, name, e.active);
  }

  updateSubscriptions();  // May drop route configurations nothing names.
  for (const std::string& name : dirty_routes_) {
    auto it = routes_.find(name);
    place(next->route_tables, next->changed_route_tables, name,
          it == routes_.end() ? std::shared_ptr<const router::RouteTable>() : it->second.table);
  }
  dirty_routes_.clear();

  active_clusters_.set(static_cast<int64_t>(next->clusters.size()));
  warming_clusters_.set(static_cast<int64_t>(warming_cluster_names_.size()));
  active_listeners_.set(static_cast<int64_t>(next->listeners.size()));
  warming_listeners_.set(static_cast<int64_t>(warming_listener_names_.size()));
  if (!next->changed_clusters.empty() || !next->changed_listeners.empty() ||
      !next->changed_route_tables.empty()) {
    current_ = next;
    callbacks_.publish(std::move(next));
  }
  rebuilding_ = false;

  // The warming timer: the next deadline still ahead. What waits for a
  // secret stays warming after its timeout (there is no TLS context to
  // serve it with).
  uint64_t next_deadline = 0;
  auto note = [&](uint64_t since) {
    if (initial_fetch_timeout_ms_ == 0) return;
    uint64_t due = since + initial_fetch_timeout_ms_;
    if (due <= now) return;
    if (next_deadline == 0 || due < next_deadline) next_deadline = due;
  };
  // Something never served yet still warming holds initialization: a
  // cluster while its first DNS round runs (no timeout but the resolver's,
  // as in Envoy) or within initial_fetch_timeout (one waiting for a secret
  // past it no longer holds the listeners back), a listener until it warms.
  bool clusters_warming = false;
  bool listeners_warming = false;
  for (const auto& name : warming_cluster_names_) {
    const ClusterEntry& e = clusters_.at(name);
    note(e.warming_since_ms);
    if (!e.active &&
        ((e.dns_warming && !e.dns_initialized) || !fetchTimedOut(e.warming_since_ms, now))) {
      clusters_warming = true;
    }
  }
  for (const auto& name : warming_listener_names_) {
    const ListenerEntry& e = listeners_.at(name);
    note(e.warming_since_ms);
    if (!e.active && !fetchTimedOut(e.warming_since_ms, now)) {
      listeners_warming = true;  // Past it, one waiting for a secret holds nothing back.
    }
  }
  if (next_deadline != 0) {
    if (warm_timer_ == nullptr) {
      warm_timer_ = new uv_timer_t;
      uv_timer_init(main_.loop(), warm_timer_);
      warm_timer_->data = this;
    }
    uv_timer_start(
        warm_timer_, [](uv_timer_t* t) { static_cast<DynamicConfig*>(t->data)->rebuild(); },
        next_deadline - now, 0);
  } else if (warm_timer_ != nullptr) {
    uv_timer_stop(warm_timer_);
  }
  checkInitialized(clusters_warming, listeners_warming);
  // As Envoy does once its cluster manager is initialized, the CDS ACK (or
  // NACK) waits while any cluster warms: a control plane that waits for it
  // before it points routes at a new cluster sends no route to a cluster
  // workers do not know yet (503 NC).
  const bool hold = listeners_started_ && !warming_cluster_names_.empty();
  if (hold != cds_replies_held_) {
    cds_replies_held_ = hold;
    callbacks_.holdReplies(std::string(kClusterType), hold);
  }
}

bool DynamicConfig::staticRoutesIn() const {
  for (const auto& [name, holders] : rds_index_.resources()) {
    if (routes_.count(name) != 0) continue;
    for (const std::string& holder : holders) {
      if (holder.starts_with(kStaticListenerHolder)) return false;
    }
  }
  return true;
}

void DynamicConfig::checkInitialized(bool clusters_warming, bool listeners_warming) {
  if (initialized_) return;
  if (!listeners_started_) {
    if ((base_->ads.cds && !cds_received_ && !cds_timed_out_) || clusters_warming) return;
    startListeners();
  }
  if ((base_->ads.lds && !lds_received_) || listeners_warming || !staticRoutesIn()) return;
  initialized_ = true;
  if (init_timer_ != nullptr) uv_timer_stop(init_timer_);
  callbacks_.onInitialized();
}

// ---- Stats

DynamicConfig::UpdateStats& DynamicConfig::namedStats(const std::string& prefix) {
  auto& slot = update_stats_[prefix];
  if (!slot) slot = std::make_unique<UpdateStats>(stats_, prefix);
  return *slot;
}

// Envoy's names: cluster_manager.cds.*, listener_manager.lds.*,
// http.<stat_prefix>.rds.<route_config_name>.* and cluster.<name>.* (EDS).
std::vector<DynamicConfig::UpdateStats*> DynamicConfig::statsFor(
    const std::string& type_url, const std::vector<XdsResource>& updated) {
  std::vector<UpdateStats*> out;
  if (type_url == kClusterType) {
    out.push_back(&namedStats("cluster_manager.cds."));
  } else if (type_url == kListenerType) {
    out.push_back(&namedStats("listener_manager.lds."));
  } else if (type_url == kRouteConfigurationType) {
    std::set<std::string> names;
    for (const auto& r : updated) names.insert(r.name);
    auto add = [&](const config::ListenerConfig& l) {
      auto chains = l.filter_chains;
      if (l.default_filter_chain) chains.push_back(l.default_filter_chain);
      for (const auto& c : chains) {
        if (names.count(c->http.rds_route_config_name) != 0) {
          out.push_back(&namedStats("http." + c->http.stat_prefix + ".rds." +
                                    c->http.rds_route_config_name + "."));
        }
      }
    };
    for (const auto& [name, l] : base_->listeners) add(*l);
    for (const auto& [name, e] : listeners_) {
      if (e.config) add(*e.config);
    }
  } else if (type_url == kSecretType) {
    for (const auto& r : updated) out.push_back(&namedStats("sds." + r.name + "."));
  } else if (type_url == kClusterLoadAssignmentType) {
    for (const auto& r : updated) {
      for (const auto& cluster : eds_index_.holdersOf(r.name)) {
        out.push_back(&namedStats("cluster." + cluster + "."));
      }
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

void DynamicConfig::countUpdate(const std::string& type_url,
                                const std::vector<XdsResource>& updated,
                                const std::string& version_info, bool accepted) {
  for (UpdateStats* s : statsFor(type_url, updated)) {
    s->update_attempt.inc();
    if (accepted) {
      s->update_success.inc();
      s->version.set(static_cast<int64_t>(std::hash<std::string>{}(version_info) >> 1));
    } else {
      s->update_rejected.inc();
    }
  }
}

// ---- /config_dump

namespace {

// One entry of an Envoy admin dump: version, the resource, when it came.
std::string dumpEntry(const std::string& version, const std::string& last_updated,
                      std::string_view key, const google::protobuf::Message& proto,
                      std::string_view type_url) {
  return "{\"version_info\":" + jsonString(version) + ",\"" + std::string(key) +
         "\":" + toJson(proto, type_url) + ",\"last_updated\":" + jsonString(last_updated) + "}";
}

void appendItem(std::string& list, const std::string& item) {
  if (!list.empty()) list += ",";
  list += item;
}

}  // namespace

std::string DynamicConfig::configDumpJson() const {
  auto version = [&](std::string_view type) {
    auto it = versions_.find(std::string(type));
    return jsonString(it == versions_.end() ? "" : it->second);
  };
  std::string active;
  std::string warming;
  for (const auto& [name, e] : clusters_) {
    if (e.active) {
      appendItem(active, dumpEntry(e.active_version, e.active_last_updated, "cluster",
                                   *e.active_proto, kClusterType));
    }
    if (e.active_proto != e.proto) {
      appendItem(warming, dumpEntry(e.version, e.last_updated, "cluster", *e.proto, kClusterType));
    }
  }
  std::string clusters = R"({"@type":"type.googleapis.com/envoy.admin.v3.ClustersConfigDump",)"
                         "\"version_info\":" +
                         version(kClusterType) + ",\"dynamic_active_clusters\":[" + active +
                         "],\"dynamic_warming_clusters\":[" + warming + "]}";

  std::string dynamic_listeners;
  for (const auto& [name, e] : listeners_) {
    std::string item = "{\"name\":" + jsonString(name);
    if (e.active) {
      item += ",\"active_state\":" + dumpEntry(e.active_version, e.active_last_updated, "listener",
                                               *e.active_proto, kListenerType);
    }
    if (e.active_proto != e.proto) {
      item += ",\"warming_state\":" +
              dumpEntry(e.version, e.last_updated, "listener", *e.proto, kListenerType);
    }
    appendItem(dynamic_listeners, item + "}");
  }
  std::string listeners = R"({"@type":"type.googleapis.com/envoy.admin.v3.ListenersConfigDump",)"
                          "\"version_info\":" +
                          version(kListenerType) + ",\"dynamic_listeners\":[" + dynamic_listeners +
                          "]}";

  std::string route_configs;
  for (const auto& [name, e] : routes_) {
    appendItem(route_configs, dumpEntry(e.version, e.last_updated, "route_config", *e.proto,
                                        kRouteConfigurationType));
  }
  std::string endpoint_configs;
  for (const auto& [name, e] : endpoints_) {
    appendItem(endpoint_configs, dumpEntry(e.version, e.last_updated, "endpoint_config", *e.proto,
                                           kClusterLoadAssignmentType));
  }
  // Envoy shows secrets with their private keys and passwords replaced.
  std::string secrets;
  for (const auto& [name, e] : secrets_) {
    tls_v3::Secret shown = static_cast<const tls_v3::Secret&>(*e.secret);
    if (shown.has_tls_certificate()) {
      auto* cert = shown.mutable_tls_certificate();
      if (cert->has_private_key()) cert->mutable_private_key()->set_inline_string("[redacted]");
      if (cert->has_password()) cert->mutable_password()->set_inline_string("[redacted]");
    }
    appendItem(secrets, "{\"name\":" + jsonString(name) +
                            ",\"version_info\":" + jsonString(e.version) +
                            ",\"last_updated\":" + jsonString(e.last_updated) +
                            ",\"secret\":" + toJson(shown, kSecretType) + "}");
  }
  return clusters + "," + listeners +
         R"(,{"@type":"type.googleapis.com/envoy.admin.v3.RoutesConfigDump",)"
         "\"dynamic_route_configs\":[" +
         route_configs + "]}" +
         R"(,{"@type":"type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",)"
         "\"dynamic_endpoint_configs\":[" +
         endpoint_configs + "]}" +
         R"(,{"@type":"type.googleapis.com/envoy.admin.v3.SecretsConfigDump",)"
         "\"dynamic_active_secrets\":[" +
         secrets + "]}";
}

}  // namespace skiff::xds
