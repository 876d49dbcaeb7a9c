// The translated configuration: what the bootstrap loader and, later, the xDS
// client produce, and what workers run. Plain data, immutable once built and
// shared as shared_ptr<const ...> snapshots (DESIGN.md). The same translator
// makes it from a static file and from xDS resources.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "filters/filter.h"
#include "filters/per_worker.h"
#include "filters/tcp_proxy/tcp_proxy_stats.h"
#include "proxy/access_log/access_log.h"
#include "proxy/common/persistent_map.h"
#include "proxy/http/connection_manager_stats.h"
#include "proxy/http/edge_headers.h"
#include "proxy/http/http2/http2_codec.h"
#include "proxy/http/path_normalizer.h"
#include "proxy/net/tls/tls_context.h"
#include "proxy/router/route_table.h"

namespace skiff::config {

using std::chrono::milliseconds;

struct SocketAddress {
  std::string address;  // IP literal (listeners, STATIC) or a DNS name (STRICT_DNS).
  uint32_t port = 0;
};

// A cluster's outlier_detection (Envoy's OutlierDetection): passive health
// by consecutive errors. Defaults are Envoy's.
struct OutlierDetectionConfig {
  // Errors in a row before a host is reported (0: never).
  uint32_t consecutive_5xx = 5;
  uint32_t consecutive_gateway_failure = 5;
  uint32_t consecutive_local_origin_failure = 5;
  // The % chance that a report ejects (0..100).
  uint32_t enforcing_consecutive_5xx = 100;
  uint32_t enforcing_consecutive_gateway_failure = 0;
  uint32_t enforcing_consecutive_local_origin_failure = 100;
  milliseconds interval{10000};            // How often ejected hosts are checked.
  milliseconds base_ejection_time{30000};  // Times the host's ejection count.
  milliseconds max_ejection_time{300000};  // Cap (Envoy: 300s, or base if larger).
  milliseconds max_ejection_time_jitter{0};
  uint32_t max_ejection_percent = 10;  // Of the cluster's hosts, at once.
  // Whether the first ejection is allowed past max_ejection_percent.
  bool always_eject_one_host = false;
  // Connect failures, resets and timeouts count apart (local origin);
  // without it they count as 503 (504 for a timeout) responses.
  bool split_external_local_origin_errors = false;
  // Success rate and failure percentage, every interval over the requests of
  // the interval before: hosts with at least *_request_volume requests count
  // when at least *_minimum_hosts hosts do. A host is an outlier below the
  // mean success rate minus success_rate_stdev_factor / 1000 standard
  // deviations, or at failure_percentage_threshold % failures or more.
  uint32_t success_rate_minimum_hosts = 5;
  uint32_t success_rate_request_volume = 100;
  uint32_t success_rate_stdev_factor = 1900;
  uint32_t enforcing_success_rate = 100;
  uint32_t enforcing_local_origin_success_rate = 100;
  uint32_t failure_percentage_threshold = 85;
  uint32_t failure_percentage_minimum_hosts = 5;
  uint32_t failure_percentage_request_volume = 50;
  uint32_t enforcing_failure_percentage = 0;
  uint32_t enforcing_failure_percentage_local_origin = 0;
  // A passing active health check brings an ejected host back.
  bool successful_active_health_check_uneject_host = true;
};

// A cluster's health_checks[0] (Envoy's HealthCheck): active health checking
// from the main thread (proxy/upstream/health_checker.h). Defaults are Envoy's.
struct HealthCheckConfig {
  milliseconds timeout{1000};
  milliseconds interval{1000};
  // The first check of a host waits a random time below initial_jitter;
  // later ones add a random time below interval_jitter and below
  // interval_jitter_percent % of the interval.
  milliseconds initial_jitter{0};
  milliseconds interval_jitter{0};
  uint32_t interval_jitter_percent = 0;
  // Failures in a row that make a healthy host unhealthy (network failures
  // and retriable statuses only: any other failure does at once), and
  // successes in a row that make an unhealthy host healthy.
  uint32_t unhealthy_threshold = 1;
  uint32_t healthy_threshold = 1;
  // The interval after a failure, after a failure or a success that has not
  // changed the host's health yet, and, until the cluster has made a
  // connection, for every check (no_traffic_healthy_interval: for a healthy
  // host). Set by the translator to Envoy's defaults when absent.
  milliseconds unhealthy_interval{1000};
  milliseconds unhealthy_edge_interval{1000};
  milliseconds healthy_edge_interval{1000};
  milliseconds no_traffic_interval{60000};
  milliseconds no_traffic_healthy_interval{60000};
  bool reuse_connection = true;
  bool always_log_failures = false;  // Logs every failure, not only state changes.

  enum class Kind { kHttp, kTcp };
  Kind kind = Kind::kHttp;
  // kHttp: a GET of path with :authority host (empty: the cluster's name),
  // user-agent Envoy/HC, plus headers_to_add, minus headers_to_remove.
  std::string path;
  std::string host;
  struct Header {
    std::string name;  // Lowercase.
    std::string value;
    enum class Action { kAppend, kAddIfAbsent, kOverwrite };
    Action action = Action::kAppend;
  };
  std::vector<Header> headers_to_add;
  std::vector<std::string> headers_to_remove;  // Lowercase.
  // [start, end) ranges: a status in expected passes (default 200 only); one
  // in retriable fails only after unhealthy_threshold in a row; any other
  // fails at once.
  std::vector<std::pair<int64_t, int64_t>> expected_statuses{{200, 201}};
  std::vector<std::pair<int64_t, int64_t>> retriable_statuses;
  bool http2 = false;  // codec_client_type HTTP2: h2c prior knowledge, or h2 over TLS.
  // kTcp: bytes sent once connected (may be empty), and the blocks that must
  // all come back, in order (empty: a connect is a success).
  std::string send;
  std::vector<std::string> receive;
};

struct ClusterConfig {
  // kEds: the endpoints come from a ClusterLoadAssignment over ADS, named
  // eds_service_name; until it arrives the cluster is warming.
  // kOriginalDst: no endpoints; each request goes where its downstream
  // connection was going before iptables redirected it (or to its
  // x-envoy-original-dst-host), a host made on demand (lb_policy
  // CLUSTER_PROVIDED).
  enum class Type { kStatic, kStrictDns, kEds, kOriginalDst };
  enum class LbPolicy { kRoundRobin, kLeastRequest, kRandom, kClusterProvided, kRingHash, kMaglev };

  std::string name;
  Type type = Type::kStatic;
  std::string eds_service_name;  // kEds: eds_cluster_config.service_name, or name.
  // A hash of the Cluster resource without its endpoints. Two configs with
  // the same name and hash differ only in endpoints: a worker then keeps the
  // cluster, its pools and its warm connections, and swaps only the hosts.
  uint64_t definition_hash = 0;
  LbPolicy lb_policy = LbPolicy::kRoundRobin;
  milliseconds connect_timeout{5000};  // Envoy's default.
  milliseconds dns_refresh_rate{5000};
  // STRICT_DNS only. kAuto is Envoy's AUTO: look up IPv6 first, and IPv4
  // only if there is no IPv6 address.
  enum class DnsLookupFamily { kAuto, kV4Only };
  DnsLookupFamily dns_lookup_family = DnsLookupFamily::kAuto;
  struct Endpoint {
    SocketAddress address;
    uint32_t weight = 1;  // load_balancing_weight
    // endpoint.health_check_config: the port active health checks go to (0:
    // the endpoint's own), or no checks at all (the host is then healthy).
    uint32_t health_check_port = 0;
    bool health_check_disabled = false;
    // LbEndpoint.health_status, as Envoy's host flags read it: HEALTHY and
    // UNKNOWN are healthy; UNHEALTHY and TIMEOUT fail the host
    // (/failed_eds_health); DEGRADED puts it in the degraded tier, picked
    // only as healthy hosts run short (/degraded_eds_health); DRAINING
    // excludes it (/eds_status_draining): out of the load balancer, and not
    // counted in the healthy percentage.
    enum class EdsHealth : uint8_t { kHealthy, kFailed, kDegraded, kDraining };
    EdsHealth eds_health = EdsHealth::kHealthy;
    // LocalityLbEndpoints.priority: 0 is the highest; a lower priority takes
    // the load that the higher ones cannot carry (Envoy's priority levels).
    uint32_t priority = 0;
  };
  std::vector<Endpoint> endpoints;
  // upstream_bind_config: the local address upstream connections (and
  // health checks) bind before they connect, port 0 for any; freebind sets
  // IP_FREEBIND so that the address need not be configured yet. Istio's
  // inbound passthrough binds 127.0.0.6 this way.
  struct UpstreamBind {
    sockaddr_storage source{};
    bool freebind = false;
  };
  std::shared_ptr<const UpstreamBind> upstream_bind;  // Null: the kernel picks.
  // circuit_breakers.thresholds[default]: Envoy's defaults.
  uint32_t max_connections = 1024;
  uint32_t max_pending_requests = 1024;
  uint32_t max_requests = 1024;
  uint32_t max_retries = 3;  // Retries in flight at once (Envoy's default: 3).
  // Upstream connection idle timeout (common_http_protocol_options.idle_timeout,
  // from typed_extension_protocol_options). Default 1h; zero disables.
  milliseconds upstream_idle_timeout{3600 * 1000};
  // typed_extension_protocol_options HttpProtocolOptions:
  // explicit_http_config (http_protocol_options / http2_protocol_options),
  // use_downstream_protocol_config, or auto_config (ALPN over TLS).
  enum class UpstreamProtocol { kHttp1, kHttp2, kUseDownstream, kAuto };
  UpstreamProtocol upstream_protocol = UpstreamProtocol::kHttp1;
  http::Http2Settings http2;
  // http_protocol_options.enable_trailers (Envoy's default off): HTTP/1.1
  // upstream connections send request trailers and pass response trailers on.
  bool http1_enable_trailers = false;
  // transport_socket envoy.transport_sockets.tls (UpstreamTlsContext);
  // nullptr: plaintext.
  std::shared_ptr<const tls::TlsContext> tls;
  uint32_t per_connection_buffer_limit_bytes = 1024 * 1024;
  uint32_t least_request_choice_count = 2;
  // kRingHash (ring_hash_lb_config; Envoy's defaults): the ring has at least
  // minimum_ring_size entries (more so that the lightest host gets a whole
  // one), at most maximum_ring_size.
  uint64_t ring_hash_minimum_size = 1024;
  uint64_t ring_hash_maximum_size = 8 * 1024 * 1024;
  // kMaglev (maglev_lb_config.table_size): a prime.
  uint64_t maglev_table_size = 65537;
  // kOriginalDst only. cleanup_interval: a host not chosen for this long
  // (one to two intervals) leaves the cluster. original_dst_lb_config:
  // use_http_header makes http_header_name (lowercased; default
  // x-envoy-original-dst-host), when it holds an "ip:port", the destination;
  // upstream_port_override (0: none) replaces the destination's port.
  milliseconds cleanup_interval{5000};
  bool use_http_header = false;
  std::string http_header_name = "x-envoy-original-dst-host";
  uint32_t upstream_port_override = 0;
  // outlier_detection; null: none (the request path then checks one flag).
  std::shared_ptr<const OutlierDetectionConfig> outlier_detection;
  // common_lb_config.healthy_panic_threshold, a whole percent (Envoy rounds
  // it): with fewer healthy hosts than this, the load balancer uses all.
  uint32_t healthy_panic_threshold = 50;
  // health_checks (at most one); null: none. Hosts then start failed until
  // their first check passes, as in Envoy.
  std::shared_ptr<const HealthCheckConfig> health_check;
};

struct HttpFilterConfig {
  std::string name;
  std::shared_ptr<const filters::HttpFilterFactory> factory;
};

struct HttpConnectionManagerConfig {
  enum class CodecType { kAuto, kHttp1, kHttp2 };

  std::string stat_prefix;
  CodecType codec_type = CodecType::kAuto;
  // The routes: inline (route_config), or by name from the snapshot's
  // route_tables (rds over ADS), looked up as each stream starts.
  std::shared_ptr<const router::RouteTable> route_table;
  std::string rds_route_config_name;           // Set for rds; route_table is then null.
  std::vector<HttpFilterConfig> http_filters;  // The router is last.
  std::string server_name = "skiff";
  enum class ServerHeaderTransformation { kOverwrite, kAppendIfAbsent, kPassThrough };
  ServerHeaderTransformation server_header_transformation = ServerHeaderTransformation::kOverwrite;
  bool use_remote_address = false;
  uint32_t xff_num_trusted_hops = 0;
  bool skip_xff_append = false;
  // internal_address_config.cidr_ranges: a request from one of these
  // addresses (use_remote_address), or whose x-forwarded-for is one of them
  // alone, is internal and keeps the x-envoy-* headers only an internal
  // caller may set (http/edge_headers.h). Empty, as when the field is not
  // set: no address is internal, as in Envoy since 1.36 (before, RFC 1918
  // and loopback addresses were internal by default).
  std::vector<http::CidrRange> internal_address_ranges;
  bool generate_request_id = true;
  bool preserve_external_request_id = false;
  uint32_t max_request_headers_kb = 60;
  milliseconds stream_idle_timeout{5 * 60 * 1000};
  milliseconds request_timeout{0};         // zero: disabled
  milliseconds idle_timeout{3600 * 1000};  // common_http_protocol_options.idle_timeout
  milliseconds drain_timeout{5000};
  // How long a downstream connection that skiff closes waits for the client
  // to close its side (TcpConnection::closeAfterFlush's linger): zero closes
  // as soon as the last byte is written.
  milliseconds delayed_close_timeout{1000};
  // http2_protocol_options (HTTP/2 downstream: codec_type HTTP2, or AUTO
  // with the h2c preface or ALPN h2). max_header_list_size_kb follows
  // max_request_headers_kb.
  http::Http2Settings http2;
  // http_protocol_options.enable_trailers (Envoy's default off): HTTP/1.1
  // downstream connections pass request trailers on and send response
  // trailers (in a chunked response, which a client that sent `TE: trailers`
  // then always gets).
  bool http1_enable_trailers = false;
  // upgrade_configs: the upgrade types (an HTTP/1.1 Upgrade such as
  // "websocket", or "CONNECT") this connection manager lets become tunnels,
  // unless a route's own upgrade_configs says otherwise. A type that is not
  // listed is refused (403) on a route that does not enable it.
  struct UpgradeConfig {
    std::string type;  // Lowercase: Envoy compares upgrade types case-insensitively.
    bool enabled = true;
  };
  std::vector<UpgradeConfig> upgrade_configs;
  // access_log: written once per stream, at its end. Empty: streams keep no
  // log record at all.
  std::vector<std::shared_ptr<const access_log::AccessLog>> access_logs;
  // Whether a format prints these, which cost a getsockname per stream.
  bool access_log_downstream_local = false;
  bool access_log_upstream_local = false;
  // http.<stat_prefix>.* of each worker, made when the worker installs the
  // listener (Worker::installFilters) so that they exist at 0 from then on;
  // a connection finds its worker's by index (filters/per_worker.h).
  filters::PerWorker<HttpConnectionManagerStats> stats;
  // normalize_path, merge_slashes and path_with_escaped_slashes_action: the
  // request's :path is rewritten (or the request refused or redirected)
  // before routing and before any filter sees it.
  http::PathNormalizationConfig path_normalization;
  // path_normalization.enabled(), kept so that a request pays one test.
  bool normalize_paths = false;
  // forward_client_cert_details: what becomes of x-forwarded-client-cert.
  // SANITIZE (the default) removes it; FORWARD_ONLY keeps it on mTLS
  // connections; APPEND_FORWARD appends, and SANITIZE_SET sets, this
  // connection's client certificate details to it on mTLS connections; every
  // mode but ALWAYS_FORWARD_ONLY removes it from other connections.
  enum class ForwardClientCert : uint8_t {
    kSanitize,
    kForwardOnly,
    kAppendForward,
    kSanitizeSet,
    kAlwaysForwardOnly,
  };
  ForwardClientCert forward_client_cert = ForwardClientCert::kSanitize;
  // set_current_client_cert_details: the keys added after By and Hash (which
  // are always there), in Envoy's order Subject, URI, Cert, Chain, DNS.
  struct ClientCertDetails {
    bool subject = false;
    bool uri = false;
    bool cert = false;
    bool chain = false;
    bool dns = false;
  };
  ClientCertDetails client_cert_details;
};

// envoy.filters.network.tcp_proxy (filters/tcp_proxy/): a filter chain whose
// connections are relayed as bytes to a cluster, with no HTTP at all.
struct TcpProxyConfig {
  std::string stat_prefix;  // Stats are tcp.<stat_prefix>.*.
  // cluster, or weighted_clusters.clusters: one is picked per connection,
  // with a chance of weight / total_weight.
  struct WeightedCluster {
    std::string name;
    uint32_t weight = 1;
  };
  std::vector<WeightedCluster> clusters;
  uint64_t total_weight = 0;
  milliseconds idle_timeout{3600 * 1000};  // No byte either way for this long; zero: none.
  // Connects tried per connection; each attempt picks a host again.
  uint32_t max_connect_attempts = 1;
  milliseconds max_downstream_connection_duration{0};  // Zero: no limit.
  // access_log: one line per connection, when it closes. Empty: no record.
  std::vector<std::shared_ptr<const access_log::AccessLog>> access_logs;
  // tcp.<stat_prefix>.* of each worker, made as HttpConnectionManagerConfig's.
  filters::PerWorker<tcp_proxy::TcpProxyStats> stats;
};

// One filter chain: which connections it takes, their TLS, their HCM or TCP proxy.
struct FilterChainConfig {
  std::string name;
  // A hash of the FilterChain resource. When a listener is updated, its
  // connections whose chain hash is gone from the new listener drain; the
  // others keep going (DESIGN.md, "xDS").
  uint64_t definition_hash = 0;
  // filter_chain_match.server_names: exact names and "*.suffix" wildcards.
  // Empty: any server name.
  std::vector<std::string> server_names;
  // The rest of filter_chain_match: the connection's local address (as the
  // original_dst filter restored it) by destination_port (0: any) and
  // prefix_ranges, its peer by direct_source_prefix_ranges,
  // source_prefix_ranges (the same address: skiff has no PROXY protocol) and
  // source_ports, and both by source_type. Empty: any.
  uint32_t destination_port = 0;
  std::vector<http::CidrRange> prefix_ranges;
  std::vector<http::CidrRange> direct_source_prefix_ranges;
  std::vector<http::CidrRange> source_prefix_ranges;
  std::vector<uint32_t> source_ports;
  // source_type: a peer on a loopback address or on the connection's own
  // local IP (kSameIpOrLoopback), or any other (kExternal).
  enum class SourceType : uint8_t { kAny, kSameIpOrLoopback, kExternal };
  SourceType source_type = SourceType::kAny;
  // application_protocols: on a TLS chain the ALPN protocols a ClientHello
  // offers; on a plaintext one the protocol the listener's http_inspector
  // found ("http/1.0", "http/1.1", "h2c"). Empty: any.
  std::vector<std::string> application_protocols;
  // filter_chain_match.transport_protocol ("tls", "raw_buffer"; kAny: unset),
  // as the listener's tls_inspector found it.
  enum class Transport : uint8_t { kAny, kTls, kRawBuffer };
  Transport transport_protocol = Transport::kAny;
  // transport_socket envoy.transport_sockets.tls (DownstreamTlsContext);
  // nullptr: plaintext. Its ALPN list decides the codec under AUTO.
  std::shared_ptr<const tls::TlsContext> tls;
  HttpConnectionManagerConfig http;  // Unused when tcp_proxy is set.
  // The chain's network filter is envoy.filters.network.tcp_proxy: its
  // connections get no HTTP codec (null: the HCM).
  std::shared_ptr<const TcpProxyConfig> tcp_proxy;
};

struct ListenerConfig {
  std::string name;
  SocketAddress address;
  uint32_t per_connection_buffer_limit_bytes = 1024 * 1024;
  // listener_filters envoy.filters.listener.original_dst: each accepted
  // connection that iptables redirected here takes its original destination
  // as its local address (filter chain choice, access logs, ORIGINAL_DST
  // clusters). One getsockopt per connection, on these listeners only.
  bool use_original_dst = false;
  // Listener.use_original_dst (which implies the original_dst filter): a
  // connection whose original destination was restored goes to the listener
  // of that address (exact address and port, else a wildcard address on that
  // port), if there is one, and runs that listener's filters and chains.
  bool hand_off_restored_destination = false;
  // Listener.bind_to_port: false makes a listener that binds no socket and
  // only takes connections handed off to it (Istio's outbound listeners).
  bool bind_to_port = true;
  // Chains narrowed in Envoy's order, one field of filter_chain_match at a
  // time: destination port, destination IP, server name, transport protocol,
  // application protocols, direct source IP, source type, source IP, source
  // port. At each field the chains that name the connection's value most
  // specifically (an equal port, the longest prefix, an exact name before
  // the longest "*.suffix") stay, or if none does, those that leave the field
  // unset; none left: default_filter_chain. Every chain of a listener is
  // TLS, or none is, unless tls_inspector tells them apart (inspect_tls).
  std::vector<std::shared_ptr<const FilterChainConfig>> filter_chains;
  std::shared_ptr<const FilterChainConfig> default_filter_chain;  // May be null.
  // Built from the chains' TLS contexts and server names when they use TLS.
  std::shared_ptr<const tls::SniSelector> tls;
  // Whether a chain matches on the local address (destination_port,
  // prefix_ranges) or on the peer's (source_prefix_ranges, source_ports):
  // only then does choosing a chain need them (a getsockname for the local
  // one, unless original_dst restored it).
  bool match_local_address = false;
  bool match_peer_address = false;
  // TLS and plaintext chains on one listener (with tls_inspector): each
  // connection's first byte, peeked at before anything is read, tells which
  // it is (0x16, a TLS handshake record, is never the first byte of an HTTP
  // request).
  bool inspect_tls = false;
  // http_inspector on a listener with plaintext chains: a plaintext
  // connection's first bytes, peeked at too, tell its application protocol
  // (http::inspectHttpProtocol). When the listener names http_inspector
  // before tls_inspector, a TLS connection's bytes are inspected as well (they
  // are no HTTP), as in Envoy, where filters run in their order.
  bool inspect_http = false;
  bool inspect_http_first = false;
  // listener_filters_timeout bounds the inspection (zero: none). A
  // connection the inspectors have not decided on by then is closed, or with
  // continue_on_listener_filters_timeout goes on as plaintext with what they
  // found (no application protocol), as in Envoy.
  milliseconds listener_filters_timeout{15000};
  bool continue_on_listener_filters_timeout = false;
  // Whether a chain names a transport_protocol, or application_protocols.
  bool match_transport = false;
  bool match_application_protocols = false;
  // Whether a TLS chain matches on more than server names (addresses,
  // application protocols, source type): then a TLS connection's chain is
  // chosen from its whole ClientHello and addresses before the handshake
  // goes on (the chain's certificate answers it), not by SNI alone.
  bool choose_tls_chain_in_hello = false;
  // listener.<address>_<port>.* of each worker, made when the worker installs
  // this listener, as HttpConnectionManagerConfig's stats.
  filters::PerWorker<ListenerStats> stats;

  // What a chain is chosen by. Addresses may be null when no chain matches
  // on them.
  struct ConnectionInfo {
    const sockaddr* local = nullptr;
    const sockaddr* peer = nullptr;
    std::string_view server_name;  // SNI; "" for none or plaintext.
    // TLS (the handshake is done) or plaintext.
    FilterChainConfig::Transport transport = FilterChainConfig::Transport::kAny;
    // The ALPN protocols the ClientHello offers, in its order; for
    // plaintext, the one http_inspector found, or none.
    std::span<const std::string_view> application_protocols;
  };
  // The chain for a connection; nullptr when none takes it (the connection
  // is closed).
  const FilterChainConfig* selectFilterChain(const ConnectionInfo& connection) const;
  const FilterChainConfig* selectFilterChain(std::string_view server_name) const {
    ConnectionInfo info;
    info.server_name = server_name;
    return selectFilterChain(info);
  }
};

// dynamic_resources: listeners and clusters (and through them routes and
// endpoints) over one ADS stream.
struct AdsConfig {
  bool enabled = false;
  bool delta = false;   // api_type DELTA_GRPC (else GRPC: state of the world).
  std::string cluster;  // grpc_services[0].envoy_grpc.cluster_name, a static cluster.
  bool lds = false;     // lds_config: {ads: {}}
  bool cds = false;     // cds_config: {ads: {}}
  milliseconds initial_fetch_timeout{15000};  // Envoy's default; zero: wait forever.
};

struct AdminConfig {
  bool enabled = false;
  SocketAddress address;
};

// One complete configuration. Workers hold a shared_ptr<const Snapshot>.
using ListenerMap = PersistentMap<std::shared_ptr<const ListenerConfig>>;
using ClusterMap = PersistentMap<std::shared_ptr<const ClusterConfig>>;
using RouteTableMap = PersistentMap<std::shared_ptr<const router::RouteTable>>;

struct Snapshot {
  // By name. Persistent maps: copying a snapshot to change a few entries
  // costs those entries, not the whole configuration.
  ListenerMap listeners;
  ClusterMap clusters;
  // RouteConfigurations from RDS, by name (HttpConnectionManagerConfig::
  // rds_route_config_name).
  RouteTableMap route_tables;
  AdsConfig ads;
  AdminConfig admin;
  std::string node_id;
  std::string node_cluster;
  // The loaded bootstrap as JSON, for /config_dump.
  std::string config_dump_json;

  // Counts the snapshots the main thread publishes; 0 is the bootstrap's.
  uint64_t generation = 0;
  // The names whose entry differs (changed, added or removed) from the
  // snapshot of generation `changed_since`, so that a worker holding that
  // one applies only those. A worker holding any other compares everything.
  uint64_t changed_since = 0;
  std::vector<std::string> changed_clusters;
  std::vector<std::string> changed_listeners;
  std::vector<std::string> changed_route_tables;
};

}  // namespace skiff::config
