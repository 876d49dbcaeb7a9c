#include "xds/translator.h"

#include <arpa/inet.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <utility>
#include <vector>

#include "envoy/config/core/v3/health_check.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"
#include "envoy/extensions/upstreams/http/v3/http_protocol_options.pb.h"
#include "proxy/net/connection.h"
#include "proxy/router/route_table.h"
#include "xds/access_log_translator.h"
#include "xds/field_support.h"
#include "xds/tls_translator.h"

namespace skiff::xds {
namespace {

namespace bootstrap_v3 = envoy::config::bootstrap::v3;
namespace cluster_v3 = envoy::config::cluster::v3;
namespace core_v3 = envoy::config::core::v3;
namespace listener_v3 = envoy::config::listener::v3;
namespace route_v3 = envoy::config::route::v3;
namespace hcm_v3 = envoy::extensions::filters::network::http_connection_manager::v3;
namespace tcp_proxy_v3 = envoy::extensions::filters::network::tcp_proxy::v3;
namespace upstreams_http_v3 = envoy::extensions::upstreams::http::v3;
namespace tls_v3 = envoy::extensions::transport_sockets::tls::v3;
using std::chrono::milliseconds;

constexpr const char* kHttpProtocolOptionsKey =
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

// Errors found so far, each "path: reason".
using Errors = std::vector<std::string>;

// A TCP port field: 1 to 65535, else an error at path. Returns the value.
uint32_t checkedPort(uint32_t port, const std::string& path, Errors& errors) {
  if (port == 0 || port > 65535) {
    errors.push_back(path + ": must be a port from 1 to 65535, got " + std::to_string(port));
  }
  return port;
}

std::string deterministicBytes(const google::protobuf::Message& message) {
  std::string bytes;
  google::protobuf::io::StringOutputStream stream(&bytes);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  message.SerializeToCodedStream(&coded);
  coded.Trim();
  return bytes;
}

// Re-encodes every google.protobuf.Any under message (at any depth) the same
// canonical way. Parsing puts fields in field order and deterministic
// serialization sorts map entries, but an Any's bytes are opaque: a control
// plane may encode one resource's typed_config differently each time (JSON
// key order, map order), and it must still hash the same.
void canonicalizeAnys(google::protobuf::Message& message) {
  using google::protobuf::FieldDescriptor;
  const google::protobuf::Descriptor* d = message.GetDescriptor();
  const google::protobuf::Reflection* r = message.GetReflection();
  if (d->full_name() == "google.protobuf.Any") {
    const FieldDescriptor* type_url = d->FindFieldByNumber(1);
    const FieldDescriptor* value = d->FindFieldByNumber(2);
    std::string url = r->GetString(message, type_url);
    const auto* inner = google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(
        url.substr(url.rfind('/') + 1));
    if (inner == nullptr) return;
    std::unique_ptr<google::protobuf::Message> unpacked(
        google::protobuf::MessageFactory::generated_factory()->GetPrototype(inner)->New());
    if (!unpacked->ParseFromString(r->GetString(message, value))) return;
    canonicalizeAnys(*unpacked);
    r->SetString(&message, value, deterministicBytes(*unpacked));
    return;
  }
  std::vector<const FieldDescriptor*> fields;
  r->ListFields(message, &fields);
  for (const FieldDescriptor* f : fields) {
    if (f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (f->is_repeated()) {
      for (int i = 0; i < r->FieldSize(message, f); ++i) {
        canonicalizeAnys(*r->MutableRepeatedMessage(&message, f, i));
      }
    } else {
      canonicalizeAnys(*r->MutableMessage(&message, f));
    }
  }
}

// A hash of a message's canonical encoding: equal for equal resources.
uint64_t hashMessage(const google::protobuf::Message& message) {
  std::unique_ptr<google::protobuf::Message> copy(message.New());
  copy->CopyFrom(message);
  canonicalizeAnys(*copy);
  return std::hash<std::string>{}(deterministicBytes(*copy));
}

// Only ADS is a config source skiff has: `ads: {}` (resource_api_version V3,
// initial_fetch_timeout).
void checkAdsSource(const core_v3::ConfigSource& source, const std::string& path, Errors& errors) {
  if (!source.has_ads()) {
    errors.push_back(path + ": only ads: {} is supported as a config source");
  }
  if (source.resource_api_version() != core_v3::V3) {
    errors.push_back(path + ".resource_api_version: only V3 is supported");
  }
}

std::string join(const Errors& errors) {
  std::string out;
  for (const auto& e : errors) {
    out += (out.empty() ? "" : "\n") + e;
  }
  return out;
}

// A Status message may hold several lines; each is one error.
void addStatus(const Status& status, Errors& errors) {
  size_t start = 0;
  const std::string& m = status.message();
  while (start <= m.size()) {
    size_t end = m.find('\n', start);
    if (end == std::string::npos) {
      end = m.size();
    }
    if (end > start) {
      errors.push_back(m.substr(start, end - start));
    }
    start = end + 1;
  }
}

// Durations in milliseconds. A positive duration under 1ms becomes 1ms, not
// zero, because zero often means "disabled".
bool toMillis(const google::protobuf::Duration& d, const std::string& path, Errors& errors,
              milliseconds& out) {
  if (d.seconds() < 0 || d.nanos() < 0) {
    errors.push_back(path + ": must not be negative");
    return false;
  }
  int64_t ms = d.seconds() * 1000 + d.nanos() / 1000000;
  if (ms == 0 && d.nanos() > 0) {
    ms = 1;
  }
  out = milliseconds(ms);
  return true;
}

bool isIpLiteral(const std::string& address) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, address.c_str(), buf) == 1 ||
         inet_pton(AF_INET6, address.c_str(), buf) == 1;
}

enum class AddressUse { kListen, kStaticEndpoint, kDnsEndpoint };

void translateAddress(const core_v3::Address& address, const std::string& path, AddressUse use,
                      Errors& errors, config::SocketAddress& out) {
  if (!address.has_socket_address()) {
    errors.push_back(path + ".socket_address: is required");
    return;
  }
  const core_v3::SocketAddress& sa = address.socket_address();
  const std::string sa_path = path + ".socket_address";
  out.address = sa.address();
  if (sa.address().empty()) {
    errors.push_back(sa_path + ".address: is required");
  } else if (use != AddressUse::kDnsEndpoint && !isIpLiteral(sa.address())) {
    errors.push_back(sa_path + ".address: '" + sa.address() + "' is not an IP address" +
                     (use == AddressUse::kStaticEndpoint
                          ? " (a STATIC cluster needs IP addresses; use STRICT_DNS for names)"
                          : ""));
  }
  out.port = sa.port_value();
  if (sa.port_value() > 65535) {
    errors.push_back(sa_path + ".port_value: " + std::to_string(sa.port_value()) +
                     " is not a valid port (0-65535)");
  } else if (sa.port_value() == 0 && use != AddressUse::kListen) {
    errors.push_back(sa_path + ".port_value: an upstream endpoint needs a port (1-65535)");
  }
}

// Http2ProtocolOptions (HCM, cluster, HttpProtocolOptions) -> Http2Settings.
// The ranges are Envoy's protoc-gen-validate rules, which skiff doesn't run.
// downstream: the HCM's options (a server codec), else a cluster's.
void translateHttp2Options(const core_v3::Http2ProtocolOptions& options, const std::string& path,
                           Errors& errors, http::Http2Settings& out, bool downstream = false) {
  constexpr uint32_t kAny = std::numeric_limits<uint32_t>::max();
  auto take = [&](const char* name, bool has, const google::protobuf::UInt32Value& value,
                  uint32_t min, uint32_t max, uint32_t& field) {
    if (!has) {
      return;
    }
    const uint32_t v = value.value();
    if (v < min || v > max) {
      errors.push_back(path + "." + name + ": must be " +
                       (max == kAny ? "at least " + std::to_string(min)
                                    : std::to_string(min) + "-" + std::to_string(max)) +
                       ", got " + std::to_string(v));
    }
    field = v;
  };
  take("hpack_table_size", options.has_hpack_table_size(), options.hpack_table_size(), 0, kAny,
       out.hpack_table_size);
  take("max_concurrent_streams", options.has_max_concurrent_streams(),
       options.max_concurrent_streams(), 1, 2147483647, out.max_concurrent_streams);
  // RFC 9113 6.9.2: 65535 is the initial window; Envoy allows no smaller.
  take("initial_stream_window_size", options.has_initial_stream_window_size(),
       options.initial_stream_window_size(), 65535, 2147483647, out.initial_stream_window_size);
  take("initial_connection_window_size", options.has_initial_connection_window_size(),
       options.initial_connection_window_size(), 65535, 2147483647,
       out.initial_connection_window_size);
  take("max_outbound_frames", options.has_max_outbound_frames(), options.max_outbound_frames(), 1,
       kAny, out.max_outbound_frames);
  take("max_outbound_control_frames", options.has_max_outbound_control_frames(),
       options.max_outbound_control_frames(), 1, kAny, out.max_outbound_control_frames);
  take("max_consecutive_inbound_frames_with_empty_payload",
       options.has_max_consecutive_inbound_frames_with_empty_payload(),
       options.max_consecutive_inbound_frames_with_empty_payload(), 0, kAny,
       out.max_consecutive_inbound_frames_with_empty_payload);
  take("max_inbound_priority_frames_per_stream",
       options.has_max_inbound_priority_frames_per_stream(),
       options.max_inbound_priority_frames_per_stream(), 0, kAny,
       out.max_inbound_priority_frames_per_stream);
  take("max_inbound_window_update_frames_per_data_frame_sent",
       options.has_max_inbound_window_update_frames_per_data_frame_sent(),
       options.max_inbound_window_update_frames_per_data_frame_sent(), 1, kAny,
       out.max_inbound_window_update_frames_per_data_frame_sent);
  if (options.allow_connect()) {
    if (downstream) {
      out.allow_connect = true;  // WebSocket over HTTP/2 from downstream (RFC 8441).
    } else {
      errors.push_back(path +
                       ".allow_connect: true on a cluster (extended CONNECT toward an HTTP/2 "
                       "upstream, RFC 8441) is not supported yet");
    }
  }
}

// --- Clusters ------------------------------------------------------------

// Sets out.upstream_protocol and out.http2 from one HttpProtocolOptions.
void translateUpstreamProtocol(const upstreams_http_v3::HttpProtocolOptions& http,
                               const cluster_v3::Cluster& cluster, const std::string& path,
                               Errors& errors, config::ClusterConfig& out) {
  using Protocol = config::ClusterConfig::UpstreamProtocol;
  using Options = upstreams_http_v3::HttpProtocolOptions;
  switch (http.upstream_protocol_options_case()) {
    case Options::kExplicitHttpConfig: {
      const auto& config = http.explicit_http_config();
      const std::string p = path + ".explicit_http_config";
      switch (config.protocol_config_case()) {
        case Options::ExplicitHttpConfig::kHttpProtocolOptions:
          out.upstream_protocol = Protocol::kHttp1;
          out.http1_enable_trailers = config.http_protocol_options().enable_trailers();
          break;
        case Options::ExplicitHttpConfig::kHttp2ProtocolOptions:
          out.upstream_protocol = Protocol::kHttp2;
          translateHttp2Options(config.http2_protocol_options(), p + ".http2_protocol_options",
                                errors, out.http2);
          break;
        case Options::ExplicitHttpConfig::kHttp3ProtocolOptions:
          errors.push_back(p + ".http3_protocol_options: not supported yet");
          break;
        default:
          errors.push_back(p + ": needs http_protocol_options or http2_protocol_options");
      }
      break;
    }
    case Options::kUseDownstreamProtocolConfig: {
      const auto& config = http.use_downstream_protocol_config();
      out.upstream_protocol = Protocol::kUseDownstream;
      out.http1_enable_trailers = config.http_protocol_options().enable_trailers();
      if (config.has_http2_protocol_options()) {
        translateHttp2Options(config.http2_protocol_options(),
                              path + ".use_downstream_protocol_config.http2_protocol_options",
                              errors, out.http2);
      }
      break;
    }
    case Options::kAutoConfig: {
      const auto& config = http.auto_config();
      out.upstream_protocol = Protocol::kAuto;
      out.http1_enable_trailers = config.http_protocol_options().enable_trailers();
      if (!cluster.has_transport_socket()) {
        // Envoy: auto_config picks the protocol by ALPN, so it needs TLS.
        errors.push_back(path +
                         ".auto_config: needs a TLS transport_socket on the cluster (ALPN "
                         "chooses between HTTP/2 and HTTP/1.1)");
      }
      if (config.has_http2_protocol_options()) {
        translateHttp2Options(config.http2_protocol_options(),
                              path + ".auto_config.http2_protocol_options", errors, out.http2);
      }
      break;
    }
    default:
      errors.push_back(path +
                       ": needs one of explicit_http_config, use_downstream_protocol_config, "
                       "auto_config");
  }
}

void translateProtocolOptions(const cluster_v3::Cluster& cluster, const std::string& path,
                              Errors& errors, config::ClusterConfig& out) {
  // Map order is unspecified; sort the keys so errors come out stably.
  std::map<std::string, const google::protobuf::Any*> options;
  for (const auto& [key, any] : cluster.typed_extension_protocol_options()) {
    options.emplace(key, &any);
  }
  for (const auto& [key, any] : options) {
    const std::string key_path = path + ".typed_extension_protocol_options[\"" + key + "\"]";
    upstreams_http_v3::HttpProtocolOptions http;
    if (key != kHttpProtocolOptionsKey) {
      errors.push_back(key_path + ": only " + std::string(kHttpProtocolOptionsKey) +
                       " is supported");
      continue;
    }
    if (!any->Is<upstreams_http_v3::HttpProtocolOptions>() || !any->UnpackTo(&http)) {
      errors.push_back(key_path + ": expected type URL type.googleapis.com/" +
                       std::string(kHttpProtocolOptionsKey) + ", got '" + any->type_url() + "'");
      continue;
    }
    if (http.has_common_http_protocol_options() &&
        http.common_http_protocol_options().has_idle_timeout()) {
      toMillis(http.common_http_protocol_options().idle_timeout(),
               key_path + ".common_http_protocol_options.idle_timeout", errors,
               out.upstream_idle_timeout);
    }
    translateUpstreamProtocol(http, cluster, key_path, errors, out);
  }
  // The deprecated cluster field, which Envoy still reads: HTTP/2 upstream.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  if (cluster.has_http2_protocol_options()) {
    const std::string p = path + ".http2_protocol_options";
    if (options.count(kHttpProtocolOptionsKey) != 0) {
      // Envoy refuses the same mix.
      errors.push_back(p + ": cannot be combined with typed_extension_protocol_options[\"" +
                       std::string(kHttpProtocolOptionsKey) +
                       "\"]; use its explicit_http_config.http2_protocol_options");
    } else {
      out.upstream_protocol = config::ClusterConfig::UpstreamProtocol::kHttp2;
      translateHttp2Options(cluster.http2_protocol_options(), p, errors, out.http2);
    }
  }
#pragma GCC diagnostic pop
}

// transport_socket: an UpstreamTlsContext. When it names no ALPN protocols,
// skiff offers what the upstream protocol needs, as Envoy's connection pools
// do (their ALPN fallback): h2, http/1.1, or both for auto_config.
void translateUpstreamTls(const cluster_v3::Cluster& cluster, const std::string& path,
                          Errors& errors, config::ClusterConfig& out) {
  if (!cluster.has_transport_socket()) {
    return;
  }
  const auto& socket = cluster.transport_socket();
  const std::string p = path + ".transport_socket.typed_config";
  tls_v3::UpstreamTlsContext context;
  if (!socket.has_typed_config()) {
    errors.push_back(p + ": is required (envoy.transport_sockets.tls with type.googleapis.com/" +
                     context.GetTypeName() + ")");
    return;
  }
  if (!socket.typed_config().Is<tls_v3::UpstreamTlsContext>()) {
    errors.push_back(p + ": a cluster's transport socket must be type.googleapis.com/" +
                     context.GetTypeName() + ", got '" + socket.typed_config().type_url() + "'");
    return;
  }
  if (!socket.typed_config().UnpackTo(&context)) {
    errors.push_back(p + ": could not be decoded as " + context.GetTypeName());
    return;
  }
  auto config = translateUpstreamTlsContext(context, p);
  if (!config) {
    addStatus(config.status(), errors);
    return;
  }
  if (config->alpn_protocols.empty()) {
    using Protocol = config::ClusterConfig::UpstreamProtocol;
    switch (out.upstream_protocol) {
      case Protocol::kHttp1:
        config->alpn_protocols = {"http/1.1"};
        break;
      case Protocol::kHttp2:
        config->alpn_protocols = {"h2"};
        break;
      case Protocol::kAuto:
        config->alpn_protocols = {"h2", "http/1.1"};
        break;
      case Protocol::kUseDownstream:
        break;  // Depends on each request; the connection pool decides.
    }
  }
  auto made = tls::TlsContext::create(*config);
  if (!made) {
    errors.push_back(p + ": " + made.status().message());
    return;
  }
  out.tls = *made;
}

// Envoy's limit is the number of priorities it keeps sets for (128); skiff
// keeps one per priority up to the largest used.
constexpr uint32_t kMaxPriority = 127;

void translateLoadAssignment(const envoy::config::endpoint::v3::ClusterLoadAssignment& cla,
                             const std::string& path, AddressUse use, Errors& errors,
                             std::vector<config::ClusterConfig::Endpoint>& out) {
  const auto& endpoints = cla.endpoints();
  for (int i = 0; i < endpoints.size(); ++i) {
    const auto& lb_endpoints = endpoints[i].lb_endpoints();
    const uint32_t priority = endpoints[i].priority();
    if (priority != 0 && use == AddressUse::kDnsEndpoint) {
      errors.push_back(path + ".endpoints[" + std::to_string(i) +
                       "].priority: is not supported on a STRICT_DNS cluster yet");
    } else if (priority > kMaxPriority) {
      errors.push_back(path + ".endpoints[" + std::to_string(i) + "].priority: must be at most " +
                       std::to_string(kMaxPriority));
    }
    for (int j = 0; j < lb_endpoints.size(); ++j) {
      const auto& lb = lb_endpoints[j];
      const std::string p =
          path + ".endpoints[" + std::to_string(i) + "].lb_endpoints[" + std::to_string(j) + "]";
      config::ClusterConfig::Endpoint endpoint;
      if (!lb.has_endpoint() || !lb.endpoint().has_address()) {
        errors.push_back(p + ".endpoint.address: is required");
        continue;
      }
      translateAddress(lb.endpoint().address(), p + ".endpoint.address", use, errors,
                       endpoint.address);
      if (lb.endpoint().has_health_check_config()) {
        const auto& hc = lb.endpoint().health_check_config();
        const std::string hp = p + ".endpoint.health_check_config";
        if (use == AddressUse::kDnsEndpoint) {
          errors.push_back(hp + ": is not supported on a STRICT_DNS cluster yet");
        } else if (hc.port_value() > 65535) {
          errors.push_back(hp + ".port_value: must be at most 65535");
        } else {
          endpoint.health_check_port = hc.port_value();
          endpoint.health_check_disabled = hc.disable_active_health_check();
        }
      }
      endpoint.priority = priority;
      if (lb.health_status() > envoy::config::core::v3::HEALTHY &&
          use == AddressUse::kDnsEndpoint) {
        errors.push_back(p + ".health_status: is not supported on a STRICT_DNS cluster yet");
      }
      switch (lb.health_status()) {
        case envoy::config::core::v3::UNHEALTHY:
        case envoy::config::core::v3::TIMEOUT:
          endpoint.eds_health = config::ClusterConfig::Endpoint::EdsHealth::kFailed;
          break;
        case envoy::config::core::v3::DEGRADED:
          endpoint.eds_health = config::ClusterConfig::Endpoint::EdsHealth::kDegraded;
          break;
        case envoy::config::core::v3::DRAINING:
          endpoint.eds_health = config::ClusterConfig::Endpoint::EdsHealth::kDraining;
          break;
        default:  // UNKNOWN, HEALTHY
          break;
      }
      if (lb.has_load_balancing_weight()) {
        endpoint.weight = lb.load_balancing_weight().value();
        if (endpoint.weight == 0) {
          errors.push_back(p + ".load_balancing_weight: must be at least 1");
        }
      }
      out.push_back(std::move(endpoint));
    }
  }
}

std::string lowerAscii(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

// cleanup_interval and original_dst_lb_config, which only ORIGINAL_DST
// clusters use (Envoy ignores them on others; skiff never ignores a field).
void translateOriginalDst(const cluster_v3::Cluster& cluster, const std::string& path,
                          bool original_dst, Errors& errors, config::ClusterConfig& out) {
  const char* only = ": only an ORIGINAL_DST cluster uses it";
  if (cluster.has_cleanup_interval()) {
    const std::string p = path + ".cleanup_interval";
    if (!original_dst) {
      errors.push_back(p + only);
    } else if (toMillis(cluster.cleanup_interval(), p, errors, out.cleanup_interval) &&
               out.cleanup_interval.count() < 1) {
      errors.push_back(p + ": must be at least 1ms");
    }
  }
  if (!cluster.has_original_dst_lb_config()) return;
  const std::string p = path + ".original_dst_lb_config";
  if (!original_dst) {
    errors.push_back(p + only);
    return;
  }
  const auto& lb = cluster.original_dst_lb_config();
  out.use_http_header = lb.use_http_header();
  if (!lb.http_header_name().empty()) {
    if (!lb.use_http_header()) {
      errors.push_back(p + ".http_header_name: has no effect without use_http_header: true");
    }
    out.http_header_name = lowerAscii(lb.http_header_name());
  }
  if (lb.has_upstream_port_override()) {
    out.upstream_port_override =
        checkedPort(lb.upstream_port_override().value(), p + ".upstream_port_override", errors);
  }
}

// outlier_detection: consecutive errors, success rate and failure
// percentage (proxy/upstream/outlier_detector.h).
void translateOutlierDetection(const cluster_v3::Cluster& cluster, const std::string& path,
                               Errors& errors, config::ClusterConfig& out) {
  if (!cluster.has_outlier_detection()) return;
  const std::string p = path + ".outlier_detection";
  if (cluster.type() == cluster_v3::Cluster::ORIGINAL_DST) {
    // Each worker makes its own hosts on demand; the main thread's detector
    // has no host list to count ejections against.
    errors.push_back(p + ": is not supported on an ORIGINAL_DST cluster yet");
    return;
  }
  const auto& od = cluster.outlier_detection();
  auto c = std::make_shared<config::OutlierDetectionConfig>();
  auto percent = [&](const google::protobuf::UInt32Value& v, const char* name, uint32_t& field) {
    if (v.value() > 100) {
      errors.push_back(p + "." + name + ": must be at most 100, got " + std::to_string(v.value()));
    }
    field = v.value();
  };
  auto positive = [&](const google::protobuf::Duration& d, const char* name, milliseconds& field) {
    const std::string fp = p + "." + name;
    if (toMillis(d, fp, errors, field) && field.count() == 0) {
      errors.push_back(fp + ": must be greater than zero");
    }
  };
  if (od.has_consecutive_5xx()) c->consecutive_5xx = od.consecutive_5xx().value();
  if (od.has_consecutive_gateway_failure()) {
    c->consecutive_gateway_failure = od.consecutive_gateway_failure().value();
  }
  if (od.has_consecutive_local_origin_failure()) {
    c->consecutive_local_origin_failure = od.consecutive_local_origin_failure().value();
  }
  if (od.has_enforcing_consecutive_5xx()) {
    percent(od.enforcing_consecutive_5xx(), "enforcing_consecutive_5xx",
            c->enforcing_consecutive_5xx);
  }
  if (od.has_enforcing_consecutive_gateway_failure()) {
    percent(od.enforcing_consecutive_gateway_failure(), "enforcing_consecutive_gateway_failure",
            c->enforcing_consecutive_gateway_failure);
  }
  if (od.has_enforcing_consecutive_local_origin_failure()) {
    percent(od.enforcing_consecutive_local_origin_failure(),
            "enforcing_consecutive_local_origin_failure",
            c->enforcing_consecutive_local_origin_failure);
  }
  if (od.has_max_ejection_percent()) {
    percent(od.max_ejection_percent(), "max_ejection_percent", c->max_ejection_percent);
  }
  if (od.has_interval()) positive(od.interval(), "interval", c->interval);
  if (od.has_base_ejection_time()) {
    positive(od.base_ejection_time(), "base_ejection_time", c->base_ejection_time);
  }
  // Envoy: max_ejection_time defaults to 300s, or base_ejection_time if larger.
  c->max_ejection_time = std::max(c->max_ejection_time, c->base_ejection_time);
  if (od.has_max_ejection_time()) {
    positive(od.max_ejection_time(), "max_ejection_time", c->max_ejection_time);
    if (c->max_ejection_time < c->base_ejection_time) {
      errors.push_back(p + ".max_ejection_time: cannot be smaller than base_ejection_time");
    }
  }
  if (od.has_max_ejection_time_jitter()) {
    toMillis(od.max_ejection_time_jitter(), p + ".max_ejection_time_jitter", errors,
             c->max_ejection_time_jitter);
  }
  c->split_external_local_origin_errors = od.split_external_local_origin_errors();
  if (od.has_always_eject_one_host()) c->always_eject_one_host = od.always_eject_one_host().value();
  if (od.has_successful_active_health_check_uneject_host()) {
    c->successful_active_health_check_uneject_host =
        od.successful_active_health_check_uneject_host().value();
  }
  if (od.has_success_rate_minimum_hosts()) {
    c->success_rate_minimum_hosts = od.success_rate_minimum_hosts().value();
  }
  if (od.has_success_rate_request_volume()) {
    c->success_rate_request_volume = od.success_rate_request_volume().value();
  }
  if (od.has_success_rate_stdev_factor()) {
    c->success_rate_stdev_factor = od.success_rate_stdev_factor().value();
  }
  if (od.has_enforcing_success_rate()) {
    percent(od.enforcing_success_rate(), "enforcing_success_rate", c->enforcing_success_rate);
  }
  if (od.has_enforcing_local_origin_success_rate()) {
    percent(od.enforcing_local_origin_success_rate(), "enforcing_local_origin_success_rate",
            c->enforcing_local_origin_success_rate);
  }
  if (od.has_failure_percentage_threshold()) {
    percent(od.failure_percentage_threshold(), "failure_percentage_threshold",
            c->failure_percentage_threshold);
  }
  if (od.has_failure_percentage_minimum_hosts()) {
    c->failure_percentage_minimum_hosts = od.failure_percentage_minimum_hosts().value();
  }
  if (od.has_failure_percentage_request_volume()) {
    c->failure_percentage_request_volume = od.failure_percentage_request_volume().value();
  }
  if (od.has_enforcing_failure_percentage()) {
    percent(od.enforcing_failure_percentage(), "enforcing_failure_percentage",
            c->enforcing_failure_percentage);
  }
  if (od.has_enforcing_failure_percentage_local_origin()) {
    percent(od.enforcing_failure_percentage_local_origin(),
            "enforcing_failure_percentage_local_origin",
            c->enforcing_failure_percentage_local_origin);
  }
  out.outlier_detection = std::move(c);
}

// Envoy's Payload: text is hex ("000000FF"), binary the bytes themselves.
bool payloadBytes(const core_v3::HealthCheck::Payload& payload, const std::string& path,
                  Errors& errors, std::string& out) {
  if (payload.has_binary()) {
    out = payload.binary();
    return true;
  }
  const std::string& hex = payload.text();
  if (hex.empty() || hex.size() % 2 != 0) {
    errors.push_back(path + ".text: must be an even, non-zero number of hex digits");
    return false;
  }
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  out.clear();
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = digit(hex[i]);
    const int lo = digit(hex[i + 1]);
    if (hi < 0 || lo < 0) {
      errors.push_back(path + ".text: '" + hex + "' is not hex");
      return false;
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return true;
}

// Status ranges [start, end) within [100, 600), as Envoy checks them.
void statusRanges(const google::protobuf::RepeatedPtrField<envoy::type::v3::Int64Range>& ranges,
                  const std::string& path, Errors& errors,
                  std::vector<std::pair<int64_t, int64_t>>& out) {
  out.clear();
  for (int i = 0; i < ranges.size(); ++i) {
    const auto& r = ranges[i];
    if (r.start() < 100 || r.end() > 600 || r.start() >= r.end()) {
      errors.push_back(path + "[" + std::to_string(i) + "]: [" + std::to_string(r.start()) + ", " +
                       std::to_string(r.end()) + ") is not a range of statuses within [100, 600)");
      continue;
    }
    out.emplace_back(r.start(), r.end());
  }
}

// health_checks: one HTTP or TCP checker (proxy/upstream/health_checker.h).
// It reads the deprecated HeaderValueOption.append, as route tables do.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
void translateHealthChecks(const cluster_v3::Cluster& cluster, const std::string& path,
                           Errors& errors, config::ClusterConfig& out) {
  if (cluster.health_checks().empty()) return;
  if (cluster.health_checks().size() > 1) {
    errors.push_back(path +
                     ".health_checks[1]: more than one health checker per cluster is not "
                     "supported yet");
    return;
  }
  const std::string p = path + ".health_checks[0]";
  if (cluster.type() == cluster_v3::Cluster::ORIGINAL_DST) {
    // Each worker makes its own hosts on demand; the main thread has no
    // host list to check.
    errors.push_back(p + ": is not supported on an ORIGINAL_DST cluster");
    return;
  }
  const core_v3::HealthCheck& hc = cluster.health_checks(0);
  auto c = std::make_shared<config::HealthCheckConfig>();
  auto required = [&](bool has, const google::protobuf::Duration& d, const char* name,
                      milliseconds& field) {
    const std::string fp = p + "." + name;
    if (!has) {
      errors.push_back(fp + ": is required");
    } else if (toMillis(d, fp, errors, field) && field.count() == 0) {
      errors.push_back(fp + ": must be greater than zero");
    }
  };
  auto optional = [&](bool has, const google::protobuf::Duration& d, const char* name,
                      milliseconds& field, milliseconds fallback) {
    field = fallback;
    if (!has) return;
    const std::string fp = p + "." + name;
    if (toMillis(d, fp, errors, field) && field.count() == 0) {
      errors.push_back(fp + ": must be greater than zero");
    }
  };
  required(hc.has_timeout(), hc.timeout(), "timeout", c->timeout);
  required(hc.has_interval(), hc.interval(), "interval", c->interval);
  if (hc.has_initial_jitter()) {
    toMillis(hc.initial_jitter(), p + ".initial_jitter", errors, c->initial_jitter);
  }
  if (hc.has_interval_jitter()) {
    toMillis(hc.interval_jitter(), p + ".interval_jitter", errors, c->interval_jitter);
  }
  c->interval_jitter_percent = hc.interval_jitter_percent();
  if (!hc.has_unhealthy_threshold()) {
    errors.push_back(p + ".unhealthy_threshold: is required");
  } else {
    c->unhealthy_threshold = std::max<uint32_t>(1, hc.unhealthy_threshold().value());
  }
  if (!hc.has_healthy_threshold()) {
    errors.push_back(p + ".healthy_threshold: is required");
  } else {
    c->healthy_threshold = std::max<uint32_t>(1, hc.healthy_threshold().value());
  }
  // Envoy's defaults: unhealthy_interval is interval, unhealthy_edge_interval
  // is unhealthy_interval, healthy_edge_interval is interval, and
  // no_traffic_healthy_interval is no_traffic_interval (60s).
  optional(hc.has_unhealthy_interval(), hc.unhealthy_interval(), "unhealthy_interval",
           c->unhealthy_interval, c->interval);
  optional(hc.has_unhealthy_edge_interval(), hc.unhealthy_edge_interval(),
           "unhealthy_edge_interval", c->unhealthy_edge_interval, c->unhealthy_interval);
  optional(hc.has_healthy_edge_interval(), hc.healthy_edge_interval(), "healthy_edge_interval",
           c->healthy_edge_interval, c->interval);
  optional(hc.has_no_traffic_interval(), hc.no_traffic_interval(), "no_traffic_interval",
           c->no_traffic_interval, milliseconds(60000));
  optional(hc.has_no_traffic_healthy_interval(), hc.no_traffic_healthy_interval(),
           "no_traffic_healthy_interval", c->no_traffic_healthy_interval, c->no_traffic_interval);
  if (hc.has_reuse_connection()) c->reuse_connection = hc.reuse_connection().value();
  c->always_log_failures = hc.always_log_health_check_failures();
  if (hc.has_http_health_check()) {
    const std::string hp = p + ".http_health_check";
    const auto& h = hc.http_health_check();
    c->kind = config::HealthCheckConfig::Kind::kHttp;
    c->path = h.path();
    if (c->path.empty()) errors.push_back(hp + ".path: is required");
    c->host = h.host();
    for (int i = 0; i < h.request_headers_to_add().size(); ++i) {
      const auto& o = h.request_headers_to_add(i);
      const std::string op = hp + ".request_headers_to_add[" + std::to_string(i) + "]";
      config::HealthCheckConfig::Header header;
      header.name = o.header().key();
      std::transform(header.name.begin(), header.name.end(), header.name.begin(),
                     [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
      header.value = o.header().value();
      if (header.name.empty() || header.name[0] == ':' || header.name == "host") {
        errors.push_back(op + ".header.key: '" + o.header().key() + "' may not be set");
        continue;
      }
      if (header.value.find('%') != std::string::npos) {
        errors.push_back(op + ".header.value: command operators (%...%) are not supported in " +
                         "health check headers yet");
        continue;
      }
      if (o.has_append()) {
        if (o.append_action() != core_v3::HeaderValueOption::APPEND_IF_EXISTS_OR_ADD) {
          errors.push_back(op + ": append and append_action are both set");
          continue;
        }
        header.action = o.append().value() ? config::HealthCheckConfig::Header::Action::kAppend
                                           : config::HealthCheckConfig::Header::Action::kOverwrite;
      } else if (o.append_action() == core_v3::HeaderValueOption::ADD_IF_ABSENT) {
        header.action = config::HealthCheckConfig::Header::Action::kAddIfAbsent;
      } else if (o.append_action() == core_v3::HeaderValueOption::OVERWRITE_IF_EXISTS_OR_ADD) {
        header.action = config::HealthCheckConfig::Header::Action::kOverwrite;
      }
      if (header.value.empty() && !o.keep_empty_value()) continue;  // As Envoy.
      c->headers_to_add.push_back(std::move(header));
    }
    for (const std::string& name : h.request_headers_to_remove()) {
      std::string lower = name;
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
      c->headers_to_remove.push_back(std::move(lower));
    }
    if (!h.expected_statuses().empty()) {
      statusRanges(h.expected_statuses(), hp + ".expected_statuses", errors, c->expected_statuses);
    }
    statusRanges(h.retriable_statuses(), hp + ".retriable_statuses", errors, c->retriable_statuses);
    c->http2 = h.codec_client_type() == envoy::type::v3::HTTP2;
  } else if (hc.has_tcp_health_check()) {
    const std::string tp = p + ".tcp_health_check";
    const auto& t = hc.tcp_health_check();
    c->kind = config::HealthCheckConfig::Kind::kTcp;
    if (t.has_send()) payloadBytes(t.send(), tp + ".send", errors, c->send);
    for (int i = 0; i < t.receive().size(); ++i) {
      std::string bytes;
      if (payloadBytes(t.receive(i), tp + ".receive[" + std::to_string(i) + "]", errors, bytes)) {
        c->receive.push_back(std::move(bytes));
      }
    }
  } else {
    // grpc_health_check and custom_health_check are refused by field_support.
    errors.push_back(p + ": one of http_health_check or tcp_health_check is required");
  }
  out.health_check = std::move(c);
}
#pragma GCC diagnostic pop

bool isPrime(uint64_t n) {
  if (n < 2) return false;
  for (uint64_t d = 2; d * d <= n; ++d) {
    if (n % d == 0) return false;
  }
  return true;
}

// ring_hash_lb_config and maglev_lb_config, each for its own lb_policy only
// (Envoy ignores them on other clusters; skiff never ignores a field). The
// limits are the protos' validation rules; Envoy also refuses a minimum above
// the maximum and a table size that is not prime.
void translateHashLb(const cluster_v3::Cluster& cluster, const std::string& path, Errors& errors,
                     config::ClusterConfig& out) {
  constexpr uint64_t kMaxRingSize = 8 * 1024 * 1024;
  if (cluster.has_ring_hash_lb_config()) {
    const std::string p = path + ".ring_hash_lb_config";
    const auto& c = cluster.ring_hash_lb_config();
    if (cluster.lb_policy() != cluster_v3::Cluster::RING_HASH) {
      errors.push_back(p + ": only a RING_HASH cluster uses it");
    }
    if (c.has_minimum_ring_size()) out.ring_hash_minimum_size = c.minimum_ring_size().value();
    if (c.has_maximum_ring_size()) out.ring_hash_maximum_size = c.maximum_ring_size().value();
    if (out.ring_hash_minimum_size < 1 || out.ring_hash_minimum_size > kMaxRingSize) {
      errors.push_back(p + ".minimum_ring_size: must be in [1, 8388608], got " +
                       std::to_string(out.ring_hash_minimum_size));
    }
    if (out.ring_hash_maximum_size < 1 || out.ring_hash_maximum_size > kMaxRingSize) {
      errors.push_back(p + ".maximum_ring_size: must be in [1, 8388608], got " +
                       std::to_string(out.ring_hash_maximum_size));
    }
    if (out.ring_hash_minimum_size > out.ring_hash_maximum_size) {
      errors.push_back(p + ".minimum_ring_size: " + std::to_string(out.ring_hash_minimum_size) +
                       " is more than maximum_ring_size " +
                       std::to_string(out.ring_hash_maximum_size));
    }
  }
  if (cluster.has_maglev_lb_config()) {
    const std::string p = path + ".maglev_lb_config";
    if (cluster.lb_policy() != cluster_v3::Cluster::MAGLEV) {
      errors.push_back(p + ": only a MAGLEV cluster uses it");
    }
    const auto& c = cluster.maglev_lb_config();
    if (c.has_table_size()) {
      out.maglev_table_size = c.table_size().value();
      if (out.maglev_table_size > 5000011 || !isPrime(out.maglev_table_size)) {
        errors.push_back(p + ".table_size: must be a prime number up to 5000011, got " +
                         std::to_string(out.maglev_table_size));
      }
    }
  }
}

void translateClusterInto(const cluster_v3::Cluster& cluster, const std::string& path,
                          Errors& errors, config::ClusterConfig& out) {
  out.name = cluster.name();
  if (cluster.name().empty()) {
    errors.push_back(path + ".name: is required");
  }
  switch (cluster.type()) {
    case cluster_v3::Cluster::STATIC:
      out.type = config::ClusterConfig::Type::kStatic;
      break;
    case cluster_v3::Cluster::STRICT_DNS:
      out.type = config::ClusterConfig::Type::kStrictDns;
      break;
    case cluster_v3::Cluster::EDS:
      out.type = config::ClusterConfig::Type::kEds;
      if (!cluster.has_eds_cluster_config() || !cluster.eds_cluster_config().has_eds_config()) {
        errors.push_back(path + ".eds_cluster_config.eds_config: is required for an EDS cluster");
      } else {
        checkAdsSource(cluster.eds_cluster_config().eds_config(),
                       path + ".eds_cluster_config.eds_config", errors);
      }
      out.eds_service_name = cluster.eds_cluster_config().service_name().empty()
                                 ? cluster.name()
                                 : cluster.eds_cluster_config().service_name();
      if (cluster.has_load_assignment()) {
        errors.push_back(
            path + ".load_assignment: an EDS cluster takes its endpoints from EDS; remove it");
      }
      break;
    case cluster_v3::Cluster::ORIGINAL_DST:
      out.type = config::ClusterConfig::Type::kOriginalDst;
      if (cluster.has_load_assignment()) {
        // Envoy: "ORIGINAL_DST clusters must have no load assignment configured".
        errors.push_back(path +
                         ".load_assignment: an ORIGINAL_DST cluster makes its hosts from the "
                         "original destinations of requests; remove it");
      }
      break;
    default:
      errors.push_back(path + ".type: " + cluster_v3::Cluster::DiscoveryType_Name(cluster.type()) +
                       " is not supported yet");
  }
  // As Envoy: CLUSTER_PROVIDED is the one policy of ORIGINAL_DST, and only
  // ORIGINAL_DST may use it.
  const bool original_dst = cluster.type() == cluster_v3::Cluster::ORIGINAL_DST;
  if (original_dst != (cluster.lb_policy() == cluster_v3::Cluster::CLUSTER_PROVIDED)) {
    errors.push_back(path +
                     ".lb_policy: " + cluster_v3::Cluster::LbPolicy_Name(cluster.lb_policy()) +
                     (original_dst ? " is not valid for an ORIGINAL_DST cluster; only "
                                     "CLUSTER_PROVIDED is"
                                   : " is valid only for an ORIGINAL_DST cluster"));
  }
  translateOriginalDst(cluster, path, original_dst, errors, out);
  if (cluster.has_upstream_bind_config()) {
    const auto& bind = cluster.upstream_bind_config();
    const std::string p = path + ".upstream_bind_config";
    if (!bind.has_source_address()) {
      errors.push_back(p + ".source_address: is required");
    } else {
      const core_v3::SocketAddress& sa = bind.source_address();
      auto made = std::make_shared<config::ClusterConfig::UpstreamBind>();
      if (sa.port_value() > 65535) {
        errors.push_back(p + ".source_address.port_value: " + std::to_string(sa.port_value()) +
                         " is not a valid port (0-65535)");
      } else if (!parseIpAddress(sa.address(), sa.port_value(), made->source)) {
        errors.push_back(p + ".source_address.address: '" + sa.address() +
                         "' is not an IP address");
      }
      made->freebind = bind.has_freebind() && bind.freebind().value();
      out.upstream_bind = std::move(made);
    }
  }
  switch (cluster.lb_policy()) {
    case cluster_v3::Cluster::CLUSTER_PROVIDED:
      out.lb_policy = config::ClusterConfig::LbPolicy::kClusterProvided;
      break;
    case cluster_v3::Cluster::ROUND_ROBIN:
      out.lb_policy = config::ClusterConfig::LbPolicy::kRoundRobin;
      break;
    case cluster_v3::Cluster::LEAST_REQUEST:
      out.lb_policy = config::ClusterConfig::LbPolicy::kLeastRequest;
      break;
    case cluster_v3::Cluster::RANDOM:
      out.lb_policy = config::ClusterConfig::LbPolicy::kRandom;
      break;
    case cluster_v3::Cluster::RING_HASH:
      out.lb_policy = config::ClusterConfig::LbPolicy::kRingHash;
      break;
    case cluster_v3::Cluster::MAGLEV:
      out.lb_policy = config::ClusterConfig::LbPolicy::kMaglev;
      break;
    default:
      errors.push_back(path +
                       ".lb_policy: " + cluster_v3::Cluster::LbPolicy_Name(cluster.lb_policy()) +
                       " is not supported yet");
  }
  if (cluster.has_least_request_lb_config() &&
      cluster.least_request_lb_config().has_choice_count()) {
    uint32_t n = cluster.least_request_lb_config().choice_count().value();
    if (n < 2) {
      errors.push_back(path + ".least_request_lb_config.choice_count: must be at least 2, got " +
                       std::to_string(n));
    }
    out.least_request_choice_count = n;
  }
  translateHashLb(cluster, path, errors, out);
  if (cluster.has_connect_timeout()) {
    const std::string p = path + ".connect_timeout";
    if (toMillis(cluster.connect_timeout(), p, errors, out.connect_timeout) &&
        out.connect_timeout.count() == 0) {
      errors.push_back(p + ": must be greater than zero");
    }
  }
  if (cluster.has_dns_refresh_rate()) {
    const std::string p = path + ".dns_refresh_rate";
    if (toMillis(cluster.dns_refresh_rate(), p, errors, out.dns_refresh_rate) &&
        out.dns_refresh_rate.count() < 1) {
      errors.push_back(p + ": must be at least 1ms");
    }
  }
  switch (cluster.dns_lookup_family()) {
    case cluster_v3::Cluster::AUTO:
      out.dns_lookup_family = config::ClusterConfig::DnsLookupFamily::kAuto;
      break;
    case cluster_v3::Cluster::V4_ONLY:
      out.dns_lookup_family = config::ClusterConfig::DnsLookupFamily::kV4Only;
      break;
    default:
      errors.push_back(path + ".dns_lookup_family: " +
                       cluster_v3::Cluster::DnsLookupFamily_Name(cluster.dns_lookup_family()) +
                       " is not supported yet");
  }
  translateLoadAssignment(cluster.load_assignment(), path + ".load_assignment",
                          out.type == config::ClusterConfig::Type::kStrictDns
                              ? AddressUse::kDnsEndpoint
                              : AddressUse::kStaticEndpoint,
                          errors, out.endpoints);
  bool have_default_thresholds = false;
  const auto& thresholds = cluster.circuit_breakers().thresholds();
  for (int i = 0; i < thresholds.size(); ++i) {
    const auto& t = thresholds[i];
    const std::string p = path + ".circuit_breakers.thresholds[" + std::to_string(i) + "]";
    if (t.priority() != core_v3::DEFAULT) {
      errors.push_back(p + ".priority: " + core_v3::RoutingPriority_Name(t.priority()) +
                       " is not supported yet");
      continue;
    }
    if (have_default_thresholds) {
      errors.push_back(p + ".priority: DEFAULT thresholds are given twice");
      continue;
    }
    have_default_thresholds = true;
    if (t.has_max_connections()) out.max_connections = t.max_connections().value();
    if (t.has_max_pending_requests()) out.max_pending_requests = t.max_pending_requests().value();
    if (t.has_max_requests()) out.max_requests = t.max_requests().value();
    if (t.has_max_retries()) out.max_retries = t.max_retries().value();
  }
  if (cluster.has_per_connection_buffer_limit_bytes()) {
    out.per_connection_buffer_limit_bytes = cluster.per_connection_buffer_limit_bytes().value();
  }
  if (cluster.has_eds_cluster_config() && cluster.type() != cluster_v3::Cluster::EDS) {
    errors.push_back(path + ".eds_cluster_config: only an EDS cluster may have it");
  }
  translateProtocolOptions(cluster, path, errors, out);
  translateUpstreamTls(cluster, path, errors, out);
  translateOutlierDetection(cluster, path, errors, out);
  translateHealthChecks(cluster, path, errors, out);
  if (cluster.common_lb_config().has_healthy_panic_threshold()) {
    const std::string p = path + ".common_lb_config.healthy_panic_threshold.value";
    const double v = cluster.common_lb_config().healthy_panic_threshold().value();
    if (!(v >= 0 && v <= 100)) {
      errors.push_back(p + ": must be between 0 and 100");
    } else {
      // Envoy rounds it to a whole percent.
      out.healthy_panic_threshold = static_cast<uint32_t>(std::lround(v));
    }
  }
  cluster_v3::Cluster definition = cluster;
  definition.clear_load_assignment();
  out.definition_hash = hashMessage(definition);
}

// --- Listeners -----------------------------------------------------------

void checkRouteClusters(const route_v3::RouteConfiguration& routes, const std::string& path,
                        const std::set<std::string>& known, Errors& errors) {
  if (routes.has_validate_clusters() && !routes.validate_clusters().value()) {
    return;
  }
  for (int i = 0; i < routes.virtual_hosts_size(); ++i) {
    const auto& vhost = routes.virtual_hosts(i);
    for (int j = 0; j < vhost.routes_size(); ++j) {
      const auto& route = vhost.routes(j);
      if (!route.has_route()) {
        continue;
      }
      const std::string p = path + ".virtual_hosts[" + std::to_string(i) + "].routes[" +
                            std::to_string(j) + "].route";
      const auto& action = route.route();
      if (action.cluster_specifier_case() == route_v3::RouteAction::kCluster &&
          known.count(action.cluster()) == 0) {
        errors.push_back(p + ".cluster: unknown cluster '" + action.cluster() + "'");
      }
      if (action.cluster_specifier_case() == route_v3::RouteAction::kWeightedClusters) {
        const auto& weighted = action.weighted_clusters().clusters();
        for (int k = 0; k < weighted.size(); ++k) {
          if (known.count(weighted[k].name()) == 0) {
            errors.push_back(p + ".weighted_clusters.clusters[" + std::to_string(k) +
                             "].name: unknown cluster '" + weighted[k].name() + "'");
          }
        }
      }
    }
  }
}

void translateHttpFilters(const hcm_v3::HttpConnectionManager& hcm, const std::string& path,
                          const filters::FilterRegistry& registry, Errors& errors,
                          config::HttpConnectionManagerConfig& out) {
  const auto& list = hcm.http_filters();
  if (list.empty()) {
    errors.push_back(path +
                     ".http_filters: must end with the router filter "
                     "(envoy.filters.http.router)");
    return;
  }
  for (int i = 0; i < list.size(); ++i) {
    const auto& filter = list[i];
    const std::string p = path + ".http_filters[" + std::to_string(i) + "]";
    if (filter.name().empty()) {
      errors.push_back(p + ".name: is required");
    }
    if (!filter.has_typed_config()) {
      errors.push_back(p + ".typed_config: is required (skiff finds a filter by its type URL)");
      continue;
    }
    const std::string& url = filter.typed_config().type_url();
    const std::string type_name = url.substr(url.rfind('/') + 1);
    const auto* create = registry.findHttpFilter("type.googleapis.com/" + type_name);
    if (create == nullptr) {
      errors.push_back(p + ".typed_config: no HTTP filter is registered for type URL '" + url +
                       "'");
      continue;
    }
    const std::string typed_config_path = p + ".typed_config";
    auto factory =
        (*create)(filter.typed_config(), {typed_config_path, filter.name(), out.stat_prefix});
    if (!factory) {
      addStatus(factory.status(), errors);
      continue;
    }
    const bool last = i + 1 == list.size();
    if ((*factory)->isTerminal() && !last) {
      errors.push_back(p + ": '" + filter.name() +
                       "' is a terminal filter and must be the last in http_filters");
    } else if (!(*factory)->isTerminal() && last) {
      errors.push_back(p +
                       ": the last HTTP filter must be the router "
                       "(envoy.filters.http.router), not '" +
                       filter.name() + "'");
    }
    out.http_filters.push_back({filter.name(), *factory});
  }
}

void translateHcm(const hcm_v3::HttpConnectionManager& hcm, const std::string& path,
                  const std::set<std::string>* known_clusters,
                  const filters::FilterRegistry& registry, Errors& errors,
                  config::HttpConnectionManagerConfig& out) {
  using Hcm = hcm_v3::HttpConnectionManager;
  using Out = config::HttpConnectionManagerConfig;
  out.stat_prefix = hcm.stat_prefix();
  if (hcm.stat_prefix().empty()) {
    errors.push_back(path + ".stat_prefix: is required");
  }
  switch (hcm.codec_type()) {
    case Hcm::AUTO:
      out.codec_type = Out::CodecType::kAuto;
      break;
    case Hcm::HTTP1:
      out.codec_type = Out::CodecType::kHttp1;
      break;
    case Hcm::HTTP2:
      out.codec_type = Out::CodecType::kHttp2;
      break;
    default:
      errors.push_back(path + ".codec_type: " + Hcm::CodecType_Name(hcm.codec_type()) +
                       " is not supported yet");
  }
  if (hcm.has_rds()) {
    checkAdsSource(hcm.rds().config_source(), path + ".rds.config_source", errors);
    out.rds_route_config_name = hcm.rds().route_config_name();
    if (out.rds_route_config_name.empty()) {
      errors.push_back(path + ".rds.route_config_name: is required");
    }
  } else if (!hcm.has_route_config()) {
    errors.push_back(path + ".route_config: is required (or rds)");
  } else {
    const std::string p = path + ".route_config";
    auto table =
        router::RouteTable::compile(hcm.route_config(), p, perFilterConfigParser(registry));
    if (table) {
      out.route_table = *table;
    } else {
      addStatus(table.status(), errors);
    }
    if (known_clusters != nullptr) {
      checkRouteClusters(hcm.route_config(), p, *known_clusters, errors);
    }
  }
  translateHttpFilters(hcm, path, registry, errors, out);
  if (!hcm.server_name().empty()) {
    out.server_name = hcm.server_name();
  }
  switch (hcm.server_header_transformation()) {
    case Hcm::OVERWRITE:
      out.server_header_transformation = Out::ServerHeaderTransformation::kOverwrite;
      break;
    case Hcm::APPEND_IF_ABSENT:
      out.server_header_transformation = Out::ServerHeaderTransformation::kAppendIfAbsent;
      break;
    case Hcm::PASS_THROUGH:
      out.server_header_transformation = Out::ServerHeaderTransformation::kPassThrough;
      break;
    default:
      errors.push_back(path + ".server_header_transformation: " +
                       Hcm::ServerHeaderTransformation_Name(hcm.server_header_transformation()) +
                       " is not supported yet");
  }
  if (hcm.has_use_remote_address()) out.use_remote_address = hcm.use_remote_address().value();
  out.xff_num_trusted_hops = hcm.xff_num_trusted_hops();
  out.skip_xff_append = hcm.skip_xff_append();
  const auto& internal = hcm.internal_address_config();
  for (int i = 0; i < internal.cidr_ranges_size(); ++i) {
    const auto& r = internal.cidr_ranges(i);
    uint32_t len = r.has_prefix_len() ? r.prefix_len().value() : 0;
    auto range = http::parseCidrRange(r.address_prefix(), len);
    if (!range) {
      errors.push_back(path + ".internal_address_config.cidr_ranges[" + std::to_string(i) +
                       "]: \"" + r.address_prefix() + "/" + std::to_string(len) +
                       "\" is not an IP address and prefix length");
      continue;
    }
    out.internal_address_ranges.push_back(*range);
  }
  if (hcm.has_generate_request_id()) out.generate_request_id = hcm.generate_request_id().value();
  out.preserve_external_request_id = hcm.preserve_external_request_id();
  if (hcm.has_max_request_headers_kb()) {
    uint32_t kb = hcm.max_request_headers_kb().value();
    if (kb == 0 || kb > 8192) {
      errors.push_back(path + ".max_request_headers_kb: must be 1-8192, got " + std::to_string(kb));
    }
    out.max_request_headers_kb = kb;
  }
  if (hcm.has_stream_idle_timeout()) {
    toMillis(hcm.stream_idle_timeout(), path + ".stream_idle_timeout", errors,
             out.stream_idle_timeout);
  }
  if (hcm.has_request_timeout()) {
    toMillis(hcm.request_timeout(), path + ".request_timeout", errors, out.request_timeout);
  }
  if (hcm.has_drain_timeout()) {
    toMillis(hcm.drain_timeout(), path + ".drain_timeout", errors, out.drain_timeout);
  }
  if (hcm.has_delayed_close_timeout()) {
    toMillis(hcm.delayed_close_timeout(), path + ".delayed_close_timeout", errors,
             out.delayed_close_timeout);
  }
  if (hcm.common_http_protocol_options().has_idle_timeout()) {
    toMillis(hcm.common_http_protocol_options().idle_timeout(),
             path + ".common_http_protocol_options.idle_timeout", errors, out.idle_timeout);
  }
  if (hcm.has_http2_protocol_options()) {
    translateHttp2Options(hcm.http2_protocol_options(), path + ".http2_protocol_options", errors,
                          out.http2, /*downstream=*/true);
  }
  out.http1_enable_trailers = hcm.http_protocol_options().enable_trailers();
  // Envoy's HTTP/2 codec enforces max_request_headers_kb as the header list limit.
  out.http2.max_header_list_size_kb = out.max_request_headers_kb;
  for (int i = 0; i < hcm.upgrade_configs_size(); ++i) {
    const auto& u = hcm.upgrade_configs(i);
    const std::string p = path + ".upgrade_configs[" + std::to_string(i) + "]";
    Out::UpgradeConfig c;
    c.type = lowerAscii(u.upgrade_type());
    if (c.type.empty()) errors.push_back(p + ".upgrade_type: must not be empty");
    for (const auto& seen : out.upgrade_configs) {
      if (!c.type.empty() && seen.type == c.type) {
        errors.push_back(p + ".upgrade_type: \"" + u.upgrade_type() + "\" is configured twice");
      }
    }
    if (u.has_enabled()) c.enabled = u.enabled().value();
    out.upgrade_configs.push_back(std::move(c));
  }
  if (hcm.has_normalize_path())
    out.path_normalization.normalize_path = hcm.normalize_path().value();
  out.path_normalization.merge_slashes = hcm.merge_slashes();
  using Escaped = http::EscapedSlashesAction;
  switch (hcm.path_with_escaped_slashes_action()) {
    case Hcm::IMPLEMENTATION_SPECIFIC_DEFAULT:  // Envoy's default: KEEP_UNCHANGED.
    case Hcm::KEEP_UNCHANGED:
      out.path_normalization.escaped_slashes = Escaped::kKeepUnchanged;
      break;
    case Hcm::REJECT_REQUEST:
      out.path_normalization.escaped_slashes = Escaped::kRejectRequest;
      break;
    case Hcm::UNESCAPE_AND_REDIRECT:
      out.path_normalization.escaped_slashes = Escaped::kUnescapeAndRedirect;
      break;
    case Hcm::UNESCAPE_AND_FORWARD:
      out.path_normalization.escaped_slashes = Escaped::kUnescapeAndForward;
      break;
    default:
      errors.push_back(path + ".path_with_escaped_slashes_action: " +
                       std::to_string(hcm.path_with_escaped_slashes_action()) +
                       " is not a known action");
  }
  out.normalize_paths = out.path_normalization.enabled();
  using Xfcc = Out::ForwardClientCert;
  switch (hcm.forward_client_cert_details()) {
    case Hcm::SANITIZE:
      out.forward_client_cert = Xfcc::kSanitize;
      break;
    case Hcm::FORWARD_ONLY:
      out.forward_client_cert = Xfcc::kForwardOnly;
      break;
    case Hcm::APPEND_FORWARD:
      out.forward_client_cert = Xfcc::kAppendForward;
      break;
    case Hcm::SANITIZE_SET:
      out.forward_client_cert = Xfcc::kSanitizeSet;
      break;
    case Hcm::ALWAYS_FORWARD_ONLY:
      out.forward_client_cert = Xfcc::kAlwaysForwardOnly;
      break;
    default:
      errors.push_back(path + ".forward_client_cert_details: " +
                       std::to_string(hcm.forward_client_cert_details()) + " is not a known mode");
  }
  if (hcm.has_set_current_client_cert_details()) {
    const auto& d = hcm.set_current_client_cert_details();
    out.client_cert_details.subject = d.has_subject() && d.subject().value();
    out.client_cert_details.uri = d.uri();
    out.client_cert_details.cert = d.cert();
    out.client_cert_details.chain = d.chain();
    out.client_cert_details.dns = d.dns();
  }
  translateAccessLogs(hcm.access_log(), path + ".access_log", errors, out.access_logs);
  for (const auto& log : out.access_logs) {
    out.access_log_downstream_local |= log->formatter().usesDownstreamLocalAddress();
    out.access_log_upstream_local |= log->formatter().usesUpstreamLocalAddress();
  }
}

// filter_chain_match.server_names: Envoy takes exact names and a leading
// "*." wildcard; partial wildcards and a bare "*" are invalid there too.
void translateServerNames(const listener_v3::FilterChainMatch& match, const std::string& path,
                          Errors& errors, std::vector<std::string>& out) {
  for (int i = 0; i < match.server_names_size(); ++i) {
    const std::string& name = match.server_names(i);
    const std::string p = path + ".server_names[" + std::to_string(i) + "]";
    const size_t star = name.find('*');
    if (name.empty()) {
      errors.push_back(p + ": must not be empty");
    } else if (star != std::string::npos && (star != 0 || name.size() < 3 || name[1] != '.' ||
                                             name.find('*', 1) != std::string::npos)) {
      errors.push_back(p + ": '" + name +
                       "': only exact names and a leading \"*.\" wildcard are supported (omit "
                       "server_names to match any name)");
    }
    out.push_back(name);
  }
}

void translateCidrRanges(
    const google::protobuf::RepeatedPtrField<envoy::config::core::v3::CidrRange>& ranges,
    const std::string& path, Errors& errors, std::vector<http::CidrRange>& out) {
  for (int i = 0; i < ranges.size(); ++i) {
    const auto& r = ranges[i];
    uint32_t len = r.has_prefix_len() ? r.prefix_len().value() : 0;
    auto range = http::parseCidrRange(r.address_prefix(), len);
    if (!range) {
      errors.push_back(path + "[" + std::to_string(i) + "]: \"" + r.address_prefix() + "/" +
                       std::to_string(len) + "\" is not an IP address and prefix length");
      continue;
    }
    out.push_back(*range);
  }
}

// filter_chain_match's address fields (server_names: translateServerNames).
void translateAddressMatch(const listener_v3::FilterChainMatch& match, const std::string& path,
                           Errors& errors, config::FilterChainConfig& out) {
  if (match.has_destination_port()) {
    out.destination_port =
        checkedPort(match.destination_port().value(), path + ".destination_port", errors);
  }
  translateCidrRanges(match.prefix_ranges(), path + ".prefix_ranges", errors, out.prefix_ranges);
  translateCidrRanges(match.direct_source_prefix_ranges(), path + ".direct_source_prefix_ranges",
                      errors, out.direct_source_prefix_ranges);
  translateCidrRanges(match.source_prefix_ranges(), path + ".source_prefix_ranges", errors,
                      out.source_prefix_ranges);
  using SourceType = config::FilterChainConfig::SourceType;
  switch (match.source_type()) {
    case listener_v3::FilterChainMatch::SAME_IP_OR_LOOPBACK:
      out.source_type = SourceType::kSameIpOrLoopback;
      break;
    case listener_v3::FilterChainMatch::EXTERNAL:
      out.source_type = SourceType::kExternal;
      break;
    default:
      out.source_type = SourceType::kAny;
      break;
  }
  for (int i = 0; i < match.application_protocols_size(); ++i) {
    if (match.application_protocols(i).empty()) {
      errors.push_back(path + ".application_protocols[" + std::to_string(i) +
                       "]: must not be empty");
    }
    out.application_protocols.push_back(match.application_protocols(i));
  }
  if (match.transport_protocol() == "tls") {
    out.transport_protocol = config::FilterChainConfig::Transport::kTls;
  } else if (match.transport_protocol() == "raw_buffer") {
    out.transport_protocol = config::FilterChainConfig::Transport::kRawBuffer;
  } else if (!match.transport_protocol().empty()) {
    errors.push_back(path + ".transport_protocol: '" + match.transport_protocol() +
                     "' is not supported (\"tls\" or \"raw_buffer\")");
  }
  for (int i = 0; i < match.source_ports_size(); ++i) {
    out.source_ports.push_back(checkedPort(
        match.source_ports(i), path + ".source_ports[" + std::to_string(i) + "]", errors));
  }
}

// source_type compares the peer's IP with the local one.
bool matchesLocalAddress(const config::FilterChainConfig& c) {
  return c.destination_port != 0 || !c.prefix_ranges.empty() ||
         c.source_type != config::FilterChainConfig::SourceType::kAny;
}

bool matchesPeerAddress(const config::FilterChainConfig& c) {
  return !c.source_prefix_ranges.empty() || !c.source_ports.empty() ||
         !c.direct_source_prefix_ranges.empty() ||
         c.source_type != config::FilterChainConfig::SourceType::kAny;
}

// The keys of a chain's match without its server names, one per combination
// of the values it lists (as Envoy's matching tree has a leaf for each): two
// chains that share a key and a server name (or both name none) would take
// the same connections.
std::vector<std::string> addressMatchKeys(const config::FilterChainConfig& c) {
  auto ranges = [](const std::vector<http::CidrRange>& rs) {
    std::vector<std::string> out;
    for (const auto& r : rs) {
      // The address as given may have bits past the prefix: only the prefix
      // counts.
      http::CidrRange masked = r;
      for (uint32_t bit = r.prefix_len; bit < 128; ++bit) {
        masked.address.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
      }
      out.push_back(std::string(masked.address.v6 ? "6:" : "4:") +
                    std::string(reinterpret_cast<const char*>(masked.address.bytes.data()), 16) +
                    "/" + std::to_string(r.prefix_len));
    }
    if (out.empty()) out.push_back("*");
    return out;
  };
  std::vector<std::string> source_ports;
  for (uint32_t p : c.source_ports) source_ports.push_back(std::to_string(p));
  if (source_ports.empty()) source_ports.push_back("*");
  std::vector<std::string> protocols = c.application_protocols;
  if (protocols.empty()) protocols.push_back("*");
  std::vector<std::string> keys;
  for (const auto& dst : ranges(c.prefix_ranges)) {
    for (const auto& direct : ranges(c.direct_source_prefix_ranges)) {
      for (const auto& src : ranges(c.source_prefix_ranges)) {
        for (const auto& sport : source_ports) {
          for (const auto& protocol : protocols) {
            keys.push_back(std::to_string(c.destination_port) + "|" + dst + "|" + src + "|" +
                           sport + "|" + std::to_string(static_cast<int>(c.transport_protocol)) +
                           "|" + direct + "|" + std::to_string(static_cast<int>(c.source_type)) +
                           "|" + protocol);
          }
        }
      }
    }
  }
  return keys;
}

void translateDownstreamTls(const listener_v3::FilterChain& chain, const std::string& path,
                            Errors& errors, config::FilterChainConfig& out) {
  const std::string p = path + ".transport_socket.typed_config";
  tls_v3::DownstreamTlsContext context;
  if (!chain.transport_socket().has_typed_config()) {
    errors.push_back(p + ": is required (envoy.transport_sockets.tls with type.googleapis.com/" +
                     context.GetTypeName() + ")");
    return;
  }
  const auto& any = chain.transport_socket().typed_config();
  if (!any.Is<tls_v3::DownstreamTlsContext>()) {
    errors.push_back(p + ": a filter chain's transport socket must be type.googleapis.com/" +
                     context.GetTypeName() + ", got '" + any.type_url() + "'");
    return;
  }
  if (!any.UnpackTo(&context)) {
    errors.push_back(p + ": could not be decoded as " + context.GetTypeName());
    return;
  }
  auto made = makeDownstreamTlsContext(context, p);
  if (!made) {
    addStatus(made.status(), errors);
    return;
  }
  out.tls = *made;
}

// envoy.filters.network.tcp_proxy. Its clusters are not checked against the
// static ones: as in Envoy, a connection to a cluster that does not exist
// (yet: CDS) is closed and counted in downstream_cx_no_route. The fields
// skiff does not implement were refused by path before (field_support.cc).
void translateTcpProxy(const tcp_proxy_v3::TcpProxy& tp, const std::string& path, Errors& errors,
                       config::TcpProxyConfig& out) {
  out.stat_prefix = tp.stat_prefix();
  if (out.stat_prefix.empty()) errors.push_back(path + ".stat_prefix: is required");
  if (tp.has_weighted_clusters()) {
    const auto& wc = tp.weighted_clusters();
    if (wc.clusters_size() == 0) {
      errors.push_back(path + ".weighted_clusters.clusters: needs at least one cluster");
    }
    for (int i = 0; i < wc.clusters_size(); ++i) {
      const auto& c = wc.clusters(i);
      const std::string cpath = path + ".weighted_clusters.clusters[" + std::to_string(i) + "]";
      if (c.name().empty()) errors.push_back(cpath + ".name: is required");
      if (c.weight() == 0) errors.push_back(cpath + ".weight: must be at least 1");
      out.clusters.push_back({c.name(), c.weight()});
      out.total_weight += c.weight();
    }
  } else if (!tp.cluster().empty()) {
    out.clusters.push_back({tp.cluster(), 1});
    out.total_weight = 1;
  } else {
    errors.push_back(path + ": cluster or weighted_clusters is required");
  }
  if (tp.has_idle_timeout())
    toMillis(tp.idle_timeout(), path + ".idle_timeout", errors, out.idle_timeout);
  if (tp.has_max_downstream_connection_duration()) {
    toMillis(tp.max_downstream_connection_duration(), path + ".max_downstream_connection_duration",
             errors, out.max_downstream_connection_duration);
  }
  translateAccessLogs(tp.access_log(), path + ".access_log", errors, out.access_logs);
  if (tp.has_max_connect_attempts()) {
    out.max_connect_attempts = tp.max_connect_attempts().value();
    if (out.max_connect_attempts == 0) {
      errors.push_back(path + ".max_connect_attempts: must be at least 1");
    }
  }
}

void translateFilterChain(const listener_v3::FilterChain& chain, const std::string& chain_path,
                          bool is_default, bool http_inspector,
                          const std::set<std::string>* known_clusters,
                          const filters::FilterRegistry& registry, Errors& errors,
                          config::FilterChainConfig& out) {
  out.name = chain.name();
  out.definition_hash = hashMessage(chain);
  if (is_default && chain.has_filter_chain_match()) {
    // Envoy ignores it there; skiff never ignores a field.
    errors.push_back(chain_path +
                     ".filter_chain_match: has no effect on the default filter chain; remove it");
  } else if (chain.has_filter_chain_match()) {
    translateServerNames(chain.filter_chain_match(), chain_path + ".filter_chain_match", errors,
                         out.server_names);
    translateAddressMatch(chain.filter_chain_match(), chain_path + ".filter_chain_match", errors,
                          out);
  }
  using Transport = config::FilterChainConfig::Transport;
  if (out.transport_protocol == Transport::kTls && !chain.has_transport_socket()) {
    errors.push_back(chain_path +
                     ".filter_chain_match.transport_protocol: 'tls' needs a TLS "
                     "transport_socket (skiff terminates TLS; passing it through is not "
                     "supported yet)");
  } else if (out.transport_protocol == Transport::kRawBuffer && chain.has_transport_socket()) {
    errors.push_back(chain_path +
                     ".filter_chain_match.transport_protocol: 'raw_buffer' takes plaintext "
                     "connections, which a TLS transport_socket cannot serve");
  }
  if (chain.has_transport_socket()) {
    translateDownstreamTls(chain, chain_path, errors, out);
  } else if (!out.application_protocols.empty() && !http_inspector) {
    // A plaintext connection's protocol comes from the http_inspector
    // listener filter. Envoy accepts the chain without it, and never
    // chooses it; skiff says so instead.
    errors.push_back(chain_path +
                     ".filter_chain_match.application_protocols: a plaintext chain matches "
                     "them only with the envoy.filters.listener.http_inspector listener filter "
                     "(or give the chain a TLS transport_socket: the ClientHello's ALPN)");
  } else if (!out.server_names.empty()) {
    // A plaintext connection has no server name, so this chain could never
    // be chosen; Envoy would only find one with tls_inspector.
    errors.push_back(chain_path +
                     ".filter_chain_match.server_names: needs a TLS transport_socket (a "
                     "plaintext connection has no server name)");
  }
  if (chain.filters_size() != 1) {
    errors.push_back(chain_path +
                     ".filters: exactly one network filter (envoy.filters.network.http_"
                     "connection_manager or envoy.filters.network.tcp_proxy) is supported for "
                     "now, got " +
                     std::to_string(chain.filters_size()));
    return;
  }
  const auto& filter = chain.filters(0);
  const std::string hcm_path = chain_path + ".filters[0].typed_config";
  hcm_v3::HttpConnectionManager hcm;
  if (!filter.has_typed_config()) {
    errors.push_back(hcm_path + ": is required");
    return;
  }
  if (filter.typed_config().Is<tcp_proxy_v3::TcpProxy>()) {
    tcp_proxy_v3::TcpProxy tp;
    if (!filter.typed_config().UnpackTo(&tp)) {
      errors.push_back(hcm_path + ": could not be decoded as " + tp.GetTypeName());
      return;
    }
    auto tcp = std::make_shared<config::TcpProxyConfig>();
    translateTcpProxy(tp, hcm_path, errors, *tcp);
    out.tcp_proxy = std::move(tcp);
    return;
  }
  if (!filter.typed_config().Is<hcm_v3::HttpConnectionManager>()) {
    errors.push_back(hcm_path +
                     ": the supported network filters are "
                     "envoy.filters.network.http_connection_manager (type.googleapis."
                     "com/" +
                     hcm.GetTypeName() +
                     ") and envoy.filters.network.tcp_proxy (type.googleapis.com/" +
                     tcp_proxy_v3::TcpProxy().GetTypeName() + "), got '" +
                     filter.typed_config().type_url() + "'");
    return;
  }
  if (!filter.typed_config().UnpackTo(&hcm)) {
    errors.push_back(hcm_path + ": could not be decoded as " + hcm.GetTypeName());
    return;
  }
  translateHcm(hcm, hcm_path, known_clusters, registry, errors, out.http);
}

void translateListenerInto(const listener_v3::Listener& listener, const std::string& path,
                           const std::set<std::string>* known_clusters,
                           const filters::FilterRegistry& registry, Errors& errors,
                           config::ListenerConfig& out) {
  if (!listener.has_address()) {
    errors.push_back(path + ".address: is required");
  } else {
    translateAddress(listener.address(), path + ".address", AddressUse::kListen, errors,
                     out.address);
  }
  // Envoy names an unnamed static listener itself; skiff uses its address.
  out.name = !listener.name().empty()
                 ? listener.name()
                 : out.address.address + "_" + std::to_string(out.address.port);
  if (listener.has_per_connection_buffer_limit_bytes()) {
    out.per_connection_buffer_limit_bytes = listener.per_connection_buffer_limit_bytes().value();
  }
  std::vector<const listener_v3::FilterChain*> chains;
  std::vector<std::string> chain_paths;
  for (int i = 0; i < listener.filter_chains_size(); ++i) {
    chains.push_back(&listener.filter_chains(i));
    chain_paths.push_back(path + ".filter_chains[" + std::to_string(i) + "]");
  }
  // tls_inspector reads the SNI (and ALPN) before a filter chain is chosen.
  // skiff reads them in its own handshake, which it starts on every
  // connection of a TLS listener, so there the inspector adds nothing; on a
  // listener with TLS and plaintext chains it tells them apart (below).
  // http_inspector finds a plaintext connection's application protocol
  // (HTTP/1.0, HTTP/1.1, h2c) for the chains' application_protocols.
  // original_dst restores a redirected connection's original destination
  // as its local address. (proxy/net/listener.h.)
  bool tls_inspector = false;
  bool http_inspector = false;
  // use_original_dst adds the original_dst filter, as in Envoy.
  if (listener.has_use_original_dst() && listener.use_original_dst().value()) {
    out.use_original_dst = true;
    out.hand_off_restored_destination = true;
  }
  if (listener.has_bind_to_port()) out.bind_to_port = listener.bind_to_port().value();
  for (int i = 0; i < listener.listener_filters_size(); ++i) {
    const auto& f = listener.listener_filters(i);
    const std::string fpath = path + ".listener_filters[" + std::to_string(i) + "]";
    const std::string type = f.has_typed_config() ? f.typed_config().type_url() : "";
    if (type.ends_with("/envoy.extensions.filters.listener.original_dst.v3.OriginalDst")) {
      out.use_original_dst = true;
    } else if (type.ends_with("/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector")) {
      tls_inspector = true;
    } else if (type.ends_with(
                   "/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector")) {
      // Envoy runs listener filters in their order: named before
      // tls_inspector, it inspects TLS connections' bytes too.
      out.inspect_http_first = !tls_inspector;
      http_inspector = true;
    } else {
      errors.push_back(fpath +
                       ": only envoy.filters.listener.tls_inspector (typed_config "
                       "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector), "
                       "envoy.filters.listener.http_inspector (typed_config "
                       "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector) and "
                       "envoy.filters.listener.original_dst (typed_config "
                       "envoy.extensions.filters.listener.original_dst.v3.OriginalDst) are "
                       "supported");
    }
  }
  if (listener.has_default_filter_chain()) {
    chains.push_back(&listener.default_filter_chain());
    chain_paths.push_back(path + ".default_filter_chain");
  }
  if (chains.empty()) {
    errors.push_back(path +
                     ".filter_chains: at least one filter chain (or a default_filter_chain) "
                     "is required");
    return;
  }
  // Envoy refuses two chains with the same match: one name in two chains
  // (names compare without case, as SNI does), or two chains without
  // server_names, for the same address match.
  std::map<std::string, std::string> name_paths;      // key + lowercased name -> chain path
  std::map<std::string, std::string> no_names_paths;  // key -> chain path
  bool any_tls = false;
  bool tls_match = false;  // A chain matches transport_protocol "tls".
  bool any_plaintext = false;
  for (size_t i = 0; i < chains.size(); ++i) {
    const bool is_default = listener.has_default_filter_chain() && i + 1 == chains.size();
    auto chain = std::make_shared<config::FilterChainConfig>();
    translateFilterChain(*chains[i], chain_paths[i], is_default, http_inspector, known_clusters,
                         registry, errors, *chain);
    (chain->tls ? any_tls : any_plaintext) = true;
    if (is_default) {
      out.default_filter_chain = std::move(chain);
      continue;
    }
    out.match_local_address = out.match_local_address || matchesLocalAddress(*chain);
    out.match_peer_address = out.match_peer_address || matchesPeerAddress(*chain);
    out.match_transport = out.match_transport ||
                          chain->transport_protocol != config::FilterChainConfig::Transport::kAny;
    tls_match =
        tls_match || chain->transport_protocol == config::FilterChainConfig::Transport::kTls;
    out.match_application_protocols =
        out.match_application_protocols || !chain->application_protocols.empty();
    const std::vector<std::string> keys = addressMatchKeys(*chain);
    if (chain->server_names.empty()) {
      for (const std::string& key : keys) {
        auto [it, added] = no_names_paths.emplace(key, chain_paths[i]);
        if (!added) {
          errors.push_back(chain_paths[i] + ": has the same filter_chain_match as " + it->second +
                           (keys.size() == 1 && key == "0|*|*|*|0|*|0|*"
                                ? " (neither names server_names)"
                                : ""));
          break;
        }
      }
    }
    for (size_t j = 0; j < chain->server_names.size(); ++j) {
      for (const std::string& key : keys) {
        auto [it, added] =
            name_paths.emplace(key + "|" + lowerAscii(chain->server_names[j]), chain_paths[i]);
        if (!added) {
          errors.push_back(chain_paths[i] + ".filter_chain_match.server_names[" +
                           std::to_string(j) + "]: '" + chain->server_names[j] +
                           "' is already matched by " + it->second);
          break;
        }
      }
    }
    out.filter_chains.push_back(std::move(chain));
  }
  if (tls_match && !tls_inspector) {
    // Without it Envoy takes every connection for raw_buffer (which skiff
    // matches as Envoy does: its plaintext connections are raw_buffer).
    errors.push_back(path +
                     ".filter_chains: a filter_chain_match.transport_protocol 'tls' needs the "
                     "envoy.filters.listener.tls_inspector listener filter");
  }
  if (any_tls && any_plaintext) {
    if (!tls_inspector) {
      errors.push_back(path +
                       ": mixing TLS and plaintext filter chains needs the "
                       "envoy.filters.listener.tls_inspector listener filter");
      return;
    }
    out.inspect_tls = true;
  }
  // On a listener whose chains are all TLS, a connection's bytes are a
  // ClientHello: http_inspector would find no HTTP in them, and skiff does
  // not look.
  out.inspect_http = http_inspector && any_plaintext;
  if (!tls_inspector) out.inspect_http_first = false;
  if (listener.has_listener_filters_timeout()) {
    toMillis(listener.listener_filters_timeout(), path + ".listener_filters_timeout", errors,
             out.listener_filters_timeout);
  }
  out.continue_on_listener_filters_timeout = listener.continue_on_listener_filters_timeout();
  if (!any_tls) {
    return;
  }
  // On such a listener the chain, and so the certificate, comes from the
  // whole match, taken from the ClientHello and the addresses; the selector
  // below then gives only the context a connection starts with.
  out.choose_tls_chain_in_hello =
      out.match_local_address || out.match_peer_address || out.match_application_protocols;
  // The TLS context follows the chain that selectFilterChain will pick for
  // the same server name: named chains by name, else the chain without
  // server_names, else default_filter_chain. Plaintext chains (next to TLS
  // ones under tls_inspector) have no part in it.
  auto selector = std::make_shared<tls::SniSelector>();
  const config::FilterChainConfig* fallback = nullptr;
  for (const auto& chain : out.filter_chains) {
    if (chain->tls == nullptr) continue;
    if (chain->server_names.empty()) {
      if (fallback == nullptr) fallback = chain.get();
    } else {
      selector->add(chain->server_names, chain->tls);
    }
  }
  if (fallback == nullptr && out.default_filter_chain && out.default_filter_chain->tls) {
    fallback = out.default_filter_chain.get();
  }
  if (fallback != nullptr) selector->setDefault(fallback->tls);
  out.tls = std::move(selector);
}

// Envoy's /config_dump shape, built by hand: the admin protos aren't compiled.
std::string configDumpJson(const bootstrap_v3::Bootstrap& bootstrap, Errors& errors) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  auto status = google::protobuf::util::MessageToJsonString(bootstrap, &json, options);
  if (!status.ok()) {
    errors.push_back("bootstrap: cannot print as JSON: " + std::string(status.message()));
    return "";
  }
  return R"({"configs":[{"@type":"type.googleapis.com/envoy.admin.v3.BootstrapConfigDump","bootstrap":)" +
         json + "}]}";
}

}  // namespace

Result<std::shared_ptr<const config::ClusterConfig>> translateCluster(
    const cluster_v3::Cluster& cluster, const std::string& path) {
  Errors errors;
  auto out = std::make_shared<config::ClusterConfig>();
  translateClusterInto(cluster, path, errors, *out);
  if (!errors.empty()) {
    return configError(join(errors));
  }
  return std::shared_ptr<const config::ClusterConfig>(std::move(out));
}

Result<std::shared_ptr<const config::ListenerConfig>> translateListener(
    const listener_v3::Listener& listener, const std::string& path,
    const std::set<std::string>* known_clusters, const filters::FilterRegistry& registry) {
  Errors errors;
  auto out = std::make_shared<config::ListenerConfig>();
  translateListenerInto(listener, path, known_clusters, registry, errors, *out);
  if (!errors.empty()) {
    return configError(join(errors));
  }
  return std::shared_ptr<const config::ListenerConfig>(std::move(out));
}

router::PerFilterConfigParser perFilterConfigParser(const filters::FilterRegistry& registry) {
  return [&registry](
             const std::string& name, const google::protobuf::Any& config, bool optional,
             const std::string& path) -> Result<std::shared_ptr<const router::PerFilterConfig>> {
    const std::string& url = config.type_url();
    const std::string type_url = "type.googleapis.com/" + url.substr(url.rfind('/') + 1);
    // A per-route type of a filter's own (RBACPerRoute).
    if (const auto* own = registry.findPerRouteConfig(type_url)) return (*own)(config, path);
    if (registry.findHttpFilter(type_url) == nullptr) {
      if (optional) return std::shared_ptr<const router::PerFilterConfig>();
      return configError(path + ": no HTTP filter is registered for type URL '" + url + "'");
    }
    const auto* create = registry.findPerRouteConfig(type_url);
    if (create == nullptr) {
      if (optional) return std::shared_ptr<const router::PerFilterConfig>();
      return configError(path + ": the filter '" + name + "' (" + url +
                         ") does not support virtual host or route specific configuration");
    }
    return (*create)(config, path);
  };
}

Result<std::shared_ptr<const router::RouteTable>> translateRouteConfiguration(
    const route_v3::RouteConfiguration& routes, const std::string& path,
    const std::set<std::string>& known_clusters, const filters::FilterRegistry& registry) {
  Errors errors;
  auto table = router::RouteTable::compile(routes, path, perFilterConfigParser(registry));
  if (!table) addStatus(table.status(), errors);
  // Envoy checks an RDS route configuration's clusters only when
  // validate_clusters is set: a route may name a cluster CDS sends later.
  if (routes.has_validate_clusters() && routes.validate_clusters().value()) {
    checkRouteClusters(routes, path, known_clusters, errors);
  }
  if (!errors.empty()) return configError(join(errors));
  return *table;
}

Result<std::vector<config::ClusterConfig::Endpoint>> translateClusterLoadAssignment(
    const envoy::config::endpoint::v3::ClusterLoadAssignment& cla, const std::string& path) {
  Errors errors;
  std::vector<config::ClusterConfig::Endpoint> out;
  translateLoadAssignment(cla, path, AddressUse::kStaticEndpoint, errors, out);
  if (!errors.empty()) return configError(join(errors));
  return out;
}

uint64_t hashResource(const google::protobuf::Message& message) { return hashMessage(message); }

namespace {

void translateDynamicResources(const bootstrap_v3::Bootstrap& bootstrap,
                               const std::map<std::string, std::string>& cluster_paths,
                               Errors& errors, config::AdsConfig& out) {
  const auto& dynamic = bootstrap.dynamic_resources();
  const std::string path = "dynamic_resources";
  if (dynamic.has_lds_config()) {
    checkAdsSource(dynamic.lds_config(), path + ".lds_config", errors);
    out.lds = true;
  }
  if (dynamic.has_cds_config()) {
    checkAdsSource(dynamic.cds_config(), path + ".cds_config", errors);
    out.cds = true;
  }
  for (const auto* source : {&dynamic.lds_config(), &dynamic.cds_config()}) {
    if (source->has_initial_fetch_timeout()) {
      toMillis(source->initial_fetch_timeout(), path + ".initial_fetch_timeout", errors,
               out.initial_fetch_timeout);
    }
  }
  if (!dynamic.has_ads_config()) {
    if (out.lds || out.cds) errors.push_back(path + ".ads_config: is required for ads: {}");
    return;
  }
  const auto& ads = dynamic.ads_config();
  const std::string ads_path = path + ".ads_config";
  out.enabled = true;
  switch (ads.api_type()) {
    case core_v3::ApiConfigSource::GRPC:
      out.delta = false;
      break;
    case core_v3::ApiConfigSource::DELTA_GRPC:
      out.delta = true;
      break;
    default:
      errors.push_back(ads_path +
                       ".api_type: " + core_v3::ApiConfigSource::ApiType_Name(ads.api_type()) +
                       " is not supported (GRPC or DELTA_GRPC)");
  }
  if (ads.transport_api_version() != core_v3::V3) {
    errors.push_back(ads_path + ".transport_api_version: only V3 is supported");
  }
  if (ads.grpc_services_size() != 1 || !ads.grpc_services(0).has_envoy_grpc()) {
    errors.push_back(ads_path + ".grpc_services: exactly one, with envoy_grpc, is supported");
    return;
  }
  out.cluster = ads.grpc_services(0).envoy_grpc().cluster_name();
  if (cluster_paths.count(out.cluster) == 0) {
    errors.push_back(ads_path + ".grpc_services[0].envoy_grpc.cluster_name: '" + out.cluster +
                     "' is not a static cluster");
  }
}

}  // namespace

Result<std::shared_ptr<const config::Snapshot>> translateBootstrap(
    const bootstrap_v3::Bootstrap& bootstrap, const filters::FilterRegistry& registry) {
  Errors errors = findUnsupportedFields(bootstrap);
  if (!errors.empty()) {
    return configError(join(errors));
  }
  auto snapshot = std::make_shared<config::Snapshot>();
  snapshot->node_id = bootstrap.node().id();
  snapshot->node_cluster = bootstrap.node().cluster();
  if (bootstrap.admin().has_address()) {
    snapshot->admin.enabled = true;
    translateAddress(bootstrap.admin().address(), "admin.address", AddressUse::kListen, errors,
                     snapshot->admin.address);
  }

  const auto& resources = bootstrap.static_resources();
  std::map<std::string, std::string> cluster_paths;  // name -> where first defined
  for (int i = 0; i < resources.clusters_size(); ++i) {
    const std::string path = "static_resources.clusters[" + std::to_string(i) + "]";
    auto cluster = std::make_shared<config::ClusterConfig>();
    translateClusterInto(resources.clusters(i), path, errors, *cluster);
    if (cluster->name.empty()) {
      continue;
    }
    auto [it, added] = cluster_paths.emplace(cluster->name, path);
    if (!added) {
      errors.push_back(path + ".name: duplicate cluster name '" + cluster->name +
                       "' (first defined at " + it->second + ")");
      continue;
    }
    const std::string name = cluster->name;
    snapshot->clusters.set(name, std::move(cluster));
  }
  std::set<std::string> known_clusters;
  for (const auto& [name, path] : cluster_paths) {
    known_clusters.insert(name);
  }
  translateDynamicResources(bootstrap, cluster_paths, errors, snapshot->ads);
  // With CDS, a static route may name a cluster the control plane sends later.
  const std::set<std::string>* route_clusters = snapshot->ads.cds ? nullptr : &known_clusters;

  std::map<std::string, std::string> listener_paths;  // name -> where first defined
  std::map<std::string, std::string> address_paths;   // "ip:port" -> where first bound
  for (int i = 0; i < resources.listeners_size(); ++i) {
    const std::string path = "static_resources.listeners[" + std::to_string(i) + "]";
    auto listener = std::make_shared<config::ListenerConfig>();
    translateListenerInto(resources.listeners(i), path, route_clusters, registry, errors,
                          *listener);
    auto [it, added] = listener_paths.emplace(listener->name, path);
    if (!added) {
      errors.push_back(path + ".name: duplicate listener name '" + listener->name +
                       "' (first defined at " + it->second + ")");
      continue;
    }
    if (listener->address.port != 0) {
      const std::string key =
          listener->address.address + ":" + std::to_string(listener->address.port);
      auto [at, bound] = address_paths.emplace(key, path);
      if (!bound) {
        errors.push_back(path + ".address: " + key + " is already used by " + at->second);
        continue;
      }
    }
    const std::string name = listener->name;
    snapshot->listeners.set(name, std::move(listener));
  }

  if (!errors.empty()) {
    return configError(join(errors));
  }
  snapshot->config_dump_json = configDumpJson(bootstrap, errors);
  if (!errors.empty()) {
    return configError(join(errors));
  }
  return std::shared_ptr<const config::Snapshot>(std::move(snapshot));
}

}  // namespace skiff::xds
