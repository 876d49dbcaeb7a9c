#include "xds/field_support.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/unknown_field_set.h>

#include <map>
#include <memory>

namespace skiff::xds {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::DescriptorPool;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::MessageFactory;
using google::protobuf::Reflection;

constexpr const char* kRoute = "envoy.config.route.v3.";
constexpr const char* kHcm =
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
constexpr const char* kTls = "envoy.extensions.transport_sockets.tls.v3.";
constexpr const char* kTcpProxy = "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
constexpr const char* kUpstreamHttp = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

// Supported fields per message full name. A message that is absent supports
// no field at all: any set field of it is refused.
const std::map<std::string, std::set<std::string>>& fieldTable() {
  static const auto* table = new std::map<std::string, std::set<std::string>>{
      // Bootstrap.
      {"envoy.config.bootstrap.v3.Bootstrap",
       {"node", "static_resources", "dynamic_resources", "admin"}},
      {"envoy.config.bootstrap.v3.Bootstrap.StaticResources", {"listeners", "clusters"}},
      // xDS: one ADS stream (GRPC or DELTA_GRPC) to a static cluster; every
      // config source is `ads: {}`. The translator checks the values.
      {"envoy.config.bootstrap.v3.Bootstrap.DynamicResources",
       {"lds_config", "cds_config", "ads_config"}},
      {"envoy.config.core.v3.ApiConfigSource",
       {"api_type", "transport_api_version", "grpc_services", "set_node_on_first_message_only"}},
      {"envoy.config.core.v3.GrpcService", {"envoy_grpc"}},
      {"envoy.config.core.v3.GrpcService.EnvoyGrpc", {"cluster_name"}},
      {"envoy.config.core.v3.ConfigSource",
       {"ads", "resource_api_version", "initial_fetch_timeout"}},
      {"envoy.config.core.v3.AggregatedConfigSource", {}},
      {"envoy.config.bootstrap.v3.Admin", {"address"}},
      // Passed through so that xDS can send them later.
      {"envoy.config.core.v3.Node", {"id", "cluster", "metadata", "locality", "user_agent_name"}},
      {"envoy.config.core.v3.Address", {"socket_address"}},
      {"envoy.config.core.v3.SocketAddress", {"protocol", "address", "port_value"}},
      // Listeners.
      {"envoy.config.listener.v3.Listener",
       {"name", "address", "per_connection_buffer_limit_bytes", "filter_chains",
        "default_filter_chain", "listener_filters", "listener_filters_timeout",
        "continue_on_listener_filters_timeout", "use_original_dst", "bind_to_port",
        "traffic_direction"}},
      // Only tls_inspector, http_inspector and original_dst, with no options;
      // the translator checks the type.
      {"envoy.config.listener.v3.ListenerFilter", {"name", "typed_config"}},
      {"envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector", {}},
      {"envoy.extensions.filters.listener.http_inspector.v3.HttpInspector", {}},
      {"envoy.extensions.filters.listener.original_dst.v3.OriginalDst", {}},
      {"envoy.config.listener.v3.FilterChain",
       {"name", "filter_chain_match", "filters", "transport_socket"}},
      {"envoy.config.listener.v3.FilterChainMatch",
       {"server_names", "destination_port", "prefix_ranges", "source_prefix_ranges", "source_ports",
        "transport_protocol", "application_protocols", "direct_source_prefix_ranges",
        "source_type"}},
      {"envoy.config.listener.v3.Filter", {"name", "typed_config"}},
      // envoy.filters.network.tcp_proxy (filters/tcp_proxy/).
      {kTcpProxy,
       {"stat_prefix", "cluster", "weighted_clusters", "idle_timeout", "max_connect_attempts",
        "max_downstream_connection_duration", "access_log"}},
      {std::string(kTcpProxy) + ".WeightedCluster", {"clusters"}},
      {std::string(kTcpProxy) + ".WeightedCluster.ClusterWeight", {"name", "weight"}},
      // Its typed_config is a DownstreamTlsContext (listener) or an
      // UpstreamTlsContext (cluster); the translator checks which.
      {"envoy.config.core.v3.TransportSocket", {"name", "typed_config"}},
      {kHcm,
       {"stat_prefix", "codec_type", "route_config", "http_filters", "server_name",
        "server_header_transformation", "use_remote_address", "xff_num_trusted_hops",
        "skip_xff_append", "internal_address_config", "generate_request_id",
        "preserve_external_request_id", "max_request_headers_kb", "stream_idle_timeout",
        "request_timeout", "drain_timeout", "delayed_close_timeout", "common_http_protocol_options",
        "http_protocol_options", "http2_protocol_options", "rds",
        // Tunnels, through the HCM's own filter chain.
        "upgrade_configs",
        // proxy/access_log: file, stdout and stderr loggers.
        "access_log",
        // proxy/http/path_normalizer.h.
        "normalize_path", "merge_slashes", "path_with_escaped_slashes_action",
        // x-forwarded-client-cert.
        "forward_client_cert_details", "set_current_client_cert_details"}},
      {std::string(kHcm) + ".SetCurrentClientCertDetails",
       {"subject", "cert", "chain", "dns", "uri"}},
      // unix_sockets is accepted: skiff listens on IP addresses only, so no
      // downstream address is a unix socket and the field changes nothing.
      {std::string(kHcm) + ".InternalAddressConfig", {"unix_sockets", "cidr_ranges"}},
      {"envoy.config.core.v3.CidrRange", {"address_prefix", "prefix_len"}},
      // Custom upgrade `filters` are refused.
      {std::string(kHcm) + ".UpgradeConfig", {"upgrade_type", "enabled"}},
      {"envoy.extensions.filters.network.http_connection_manager.v3.Rds",
       {"config_source", "route_config_name"}},
      {"envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter",
       {"name", "typed_config"}},
      {"envoy.extensions.filters.http.router.v3.Router", {"suppress_envoy_headers"}},
      // filters/fault. skiff has no runtime: the *_runtime keys are read and
      // never used. response_rate_limit and filter_metadata are refused.
      {"envoy.extensions.filters.http.fault.v3.HTTPFault",
       {"delay", "abort", "upstream_cluster", "headers", "downstream_nodes", "max_active_faults",
        "delay_percent_runtime", "abort_percent_runtime", "delay_duration_runtime",
        "abort_http_status_runtime", "max_active_faults_runtime",
        "response_rate_limit_percent_runtime", "abort_grpc_status_runtime",
        "disable_downstream_cluster_stats"}},
      {"envoy.extensions.filters.http.fault.v3.FaultAbort",
       {"http_status", "grpc_status", "header_abort", "percentage"}},
      {"envoy.extensions.filters.http.fault.v3.FaultAbort.HeaderAbort", {}},
      {"envoy.extensions.filters.common.fault.v3.FaultDelay",
       {"fixed_delay", "header_delay", "percentage"}},
      {"envoy.extensions.filters.common.fault.v3.FaultDelay.HeaderDelay", {}},
      {"envoy.type.v3.FractionalPercent", {"numerator", "denominator"}},
      // filters/local_ratelimit. descriptors, stage, local_cluster_rate_limit,
      // vh_rate_limits, always_consume_default_token_bucket and
      // local_rate_limit_per_downstream_connection are refused.
      {"envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
       {"stat_prefix", "status", "token_bucket", "filter_enabled", "filter_enforced",
        "request_headers_to_add_when_not_enforced", "response_headers_to_add",
        "enable_x_ratelimit_headers", "rate_limited_as_resource_exhausted"}},
      // filters/rbac. matcher, shadow_matcher, track_per_rule_stats, the
      // metadata, filter_state, CEL condition, matcher and uri_template
      // matchers and audit logging are refused.
      {"envoy.extensions.filters.http.rbac.v3.RBAC",
       {"rules", "rules_stat_prefix", "shadow_rules", "shadow_rules_stat_prefix"}},
      {"envoy.extensions.filters.http.rbac.v3.RBACPerRoute", {"rbac"}},
      {"envoy.config.rbac.v3.RBAC", {"action", "policies"}},
      {"envoy.config.rbac.v3.Policy", {"permissions", "principals"}},
      {"envoy.config.rbac.v3.Permission",
       {"and_rules", "or_rules", "any", "header", "url_path", "destination_ip", "destination_port",
        "destination_port_range", "not_rule", "requested_server_name"}},
      {"envoy.config.rbac.v3.Permission.Set", {"rules"}},
      {"envoy.config.rbac.v3.Principal",
       {"and_ids", "or_ids", "any", "authenticated", "source_ip", "direct_remote_ip", "remote_ip",
        "header", "url_path", "not_id"}},
      {"envoy.config.rbac.v3.Principal.Set", {"ids"}},
      {"envoy.config.rbac.v3.Principal.Authenticated", {"principal_name"}},
      {"envoy.type.matcher.v3.PathMatcher", {"path"}},
      {"envoy.type.v3.Int32Range", {"start", "end"}},
      {"envoy.type.v3.HttpStatus", {"code"}},
      // filters/cors: the filter's Cors has no fields; a CorsPolicy comes
      // from typed_per_filter_config. The deprecated `cors` of VirtualHost
      // and RouteAction are refused.
      {"envoy.extensions.filters.http.cors.v3.Cors", {}},
      {"envoy.extensions.filters.http.cors.v3.CorsPolicy",
       {"allow_origin_string_match", "allow_methods", "allow_headers", "expose_headers", "max_age",
        "allow_credentials", "filter_enabled", "shadow_enabled", "allow_private_network_access",
        "forward_not_matching_preflights"}},
      // filters/health_check. cache_time is refused.
      {"envoy.extensions.filters.http.health_check.v3.HealthCheck",
       {"pass_through_mode", "headers", "cluster_min_healthy_percentages"}},
      {"envoy.type.v3.TokenBucket", {"max_tokens", "tokens_per_fill", "fill_interval"}},
      // skiff has no runtime: runtime_key is read and never used.
      {"envoy.config.core.v3.RuntimeFractionalPercent", {"default_value", "runtime_key"}},
      // Access logs (xds/access_log_translator). skiff has no runtime, so a
      // RuntimeUInt32's runtime_key never overrides its default_value.
      {"envoy.config.accesslog.v3.AccessLog", {"name", "filter", "typed_config"}},
      {"envoy.config.accesslog.v3.AccessLogFilter",
       {"status_code_filter", "duration_filter", "not_health_check_filter", "response_flag_filter",
        "and_filter", "or_filter"}},
      {"envoy.config.accesslog.v3.StatusCodeFilter", {"comparison"}},
      {"envoy.config.accesslog.v3.DurationFilter", {"comparison"}},
      {"envoy.config.accesslog.v3.ComparisonFilter", {"op", "value"}},
      {"envoy.config.core.v3.RuntimeUInt32", {"default_value", "runtime_key"}},
      {"envoy.config.accesslog.v3.NotHealthCheckFilter", {}},
      {"envoy.config.accesslog.v3.ResponseFlagFilter", {"flags"}},
      {"envoy.config.accesslog.v3.AndFilter", {"filters"}},
      {"envoy.config.accesslog.v3.OrFilter", {"filters"}},
      {"envoy.extensions.access_loggers.file.v3.FileAccessLog", {"path", "format", "log_format"}},
      {"envoy.extensions.access_loggers.stream.v3.StdoutAccessLog", {"log_format"}},
      {"envoy.extensions.access_loggers.stream.v3.StderrAccessLog", {"log_format"}},
      // text_format_source: inline only (the translator refuses filename).
      {"envoy.config.core.v3.SubstitutionFormatString",
       {"text_format", "text_format_source", "json_format", "omit_empty_values",
        "json_format_options"}},
      // Envoy sorts json_format's keys whatever this says (deprecated, "no
      // effect"), and so does skiff.
      {"envoy.config.core.v3.JsonFormatOptions", {"sort_properties"}},
      // Envoy calls this message HttpProtocolOptions; fields name it common_http_protocol_options.
      {"envoy.config.core.v3.HttpProtocolOptions", {"idle_timeout"}},
      {"envoy.config.core.v3.Http1ProtocolOptions", {"enable_trailers"}},
      // Values checked by the translator (ranges; allow_connect on the HCM only).
      {"envoy.config.core.v3.Http2ProtocolOptions",
       {"hpack_table_size", "max_concurrent_streams", "initial_stream_window_size",
        "initial_connection_window_size", "allow_connect", "max_outbound_frames",
        "max_outbound_control_frames", "max_consecutive_inbound_frames_with_empty_payload",
        "max_inbound_priority_frames_per_stream",
        "max_inbound_window_update_frames_per_data_frame_sent"}},
      // Clusters.
      {"envoy.config.cluster.v3.Cluster",
       {"name",
        "type",
        "connect_timeout",
        "lb_policy",
        "least_request_lb_config",
        "dns_refresh_rate",
        "dns_lookup_family",
        "load_assignment",
        "circuit_breakers",
        "per_connection_buffer_limit_bytes",
        "typed_extension_protocol_options",
        "transport_socket",
        "http2_protocol_options",
        "eds_cluster_config",
        "cleanup_interval",
        "original_dst_lb_config",
        "outlier_detection",
        "common_lb_config",
        "ring_hash_lb_config",
        "maglev_lb_config",
        "health_checks",
        "metadata",
        "upstream_bind_config"}},
      // socket_options, extra_source_addresses, additional_source_addresses
      // and local_address_selector are refused.
      {"envoy.config.core.v3.BindConfig", {"source_address", "freebind"}},
      // Active health checks (proxy/upstream/health_checker.h): HTTP and TCP.
      // grpc_health_check, custom_health_check, the event loggers, tls_options,
      // transport_socket_match_criteria, alt_port and event_service are refused.
      {"envoy.config.core.v3.HealthCheck",
       {"timeout", "interval", "initial_jitter", "interval_jitter", "interval_jitter_percent",
        "unhealthy_threshold", "healthy_threshold", "reuse_connection", "http_health_check",
        "tcp_health_check", "no_traffic_interval", "no_traffic_healthy_interval",
        "unhealthy_interval", "unhealthy_edge_interval", "healthy_edge_interval",
        "always_log_health_check_failures"}},
      // send, receive, response_buffer_size, service_name_matcher and method
      // are refused (a GET, judged by its status).
      {"envoy.config.core.v3.HealthCheck.HttpHealthCheck",
       {"host", "path", "request_headers_to_add", "request_headers_to_remove", "expected_statuses",
        "retriable_statuses", "codec_client_type"}},
      {"envoy.config.core.v3.HealthCheck.TcpHealthCheck", {"send", "receive"}},
      {"envoy.config.core.v3.HealthCheck.Payload", {"text", "binary"}},
      // Extension monitors are refused. successful_active_health_check_uneject_host:
      // a passing active health check unejects (health_checks).
      {"envoy.config.cluster.v3.OutlierDetection",
       {"consecutive_5xx",
        "interval",
        "base_ejection_time",
        "max_ejection_percent",
        "enforcing_consecutive_5xx",
        "enforcing_success_rate",
        "success_rate_minimum_hosts",
        "success_rate_request_volume",
        "success_rate_stdev_factor",
        "consecutive_gateway_failure",
        "enforcing_consecutive_gateway_failure",
        "split_external_local_origin_errors",
        "consecutive_local_origin_failure",
        "enforcing_consecutive_local_origin_failure",
        "enforcing_local_origin_success_rate",
        "failure_percentage_threshold",
        "enforcing_failure_percentage",
        "enforcing_failure_percentage_local_origin",
        "failure_percentage_minimum_hosts",
        "failure_percentage_request_volume",
        "max_ejection_time",
        "max_ejection_time_jitter",
        "successful_active_health_check_uneject_host",
        "always_eject_one_host"}},
      // hash_function: XX_HASH only (the enum table); MURMUR_HASH_2 is refused.
      {"envoy.config.cluster.v3.Cluster.RingHashLbConfig",
       {"minimum_ring_size", "maximum_ring_size", "hash_function"}},
      {"envoy.config.cluster.v3.Cluster.MaglevLbConfig", {"table_size"}},
      // consistent_hashing_lb_config, with none of its fields:
      // use_hostname_for_hashing (skiff keys hosts by address) and
      // hash_balance_factor (bounded load) are refused.
      {"envoy.config.cluster.v3.Cluster.CommonLbConfig",
       {"healthy_panic_threshold", "consistent_hashing_lb_config"}},
      {"envoy.config.cluster.v3.Cluster.CommonLbConfig.ConsistentHashingLbConfig", {}},
      {"envoy.type.v3.Percent", {"value"}},
      // metadata_key (a destination from dynamic metadata) is refused.
      {"envoy.config.cluster.v3.Cluster.OriginalDstLbConfig",
       {"use_http_header", "http_header_name", "upstream_port_override"}},
      {"envoy.config.cluster.v3.Cluster.EdsClusterConfig", {"eds_config", "service_name"}},
      {"envoy.config.cluster.v3.Cluster.LeastRequestLbConfig", {"choice_count"}},
      {"envoy.config.cluster.v3.CircuitBreakers", {"thresholds"}},
      {"envoy.config.cluster.v3.CircuitBreakers.Thresholds",
       {"priority", "max_connections", "max_pending_requests", "max_requests", "max_retries"}},
      {"envoy.config.endpoint.v3.ClusterLoadAssignment", {"cluster_name", "endpoints"}},
      // locality and its load_balancing_weight are data, as in Envoy without
      // locality_weighted_lb_config (refused): no zone-aware routing reads them.
      {"envoy.config.endpoint.v3.LocalityLbEndpoints",
       {"locality", "lb_endpoints", "load_balancing_weight", "priority"}},
      // metadata: data (shown in config_dump); subset load balancing and
      // transport_socket_matches, which would read it, are refused.
      {"envoy.config.endpoint.v3.LbEndpoint",
       {"endpoint", "health_status", "metadata", "load_balancing_weight"}},
      {"envoy.config.core.v3.Metadata", {"filter_metadata"}},
      {"envoy.config.endpoint.v3.Endpoint", {"address", "health_check_config"}},
      // hostname and address (another host to check) are refused.
      {"envoy.config.endpoint.v3.Endpoint.HealthCheckConfig",
       {"port_value", "disable_active_health_check"}},
      {kUpstreamHttp,
       {"common_http_protocol_options", "explicit_http_config", "use_downstream_protocol_config",
        "auto_config"}},
      {std::string(kUpstreamHttp) + ".ExplicitHttpConfig",
       {"http_protocol_options", "http2_protocol_options"}},
      {std::string(kUpstreamHttp) + ".UseDownstreamHttpConfig",
       {"http_protocol_options", "http2_protocol_options"}},
      {std::string(kUpstreamHttp) + ".AutoHttpConfig",
       {"http_protocol_options", "http2_protocol_options"}},
      // TLS (transport_socket typed_config): exactly the fields that
      // xds/tls_translator reads. It checks their values and refuses the
      // StringMatcher kinds it lacks (safe_regex) by path itself.
      {std::string(kTls) + "DownstreamTlsContext",
       {"common_tls_context", "require_client_certificate"}},
      {std::string(kTls) + "UpstreamTlsContext",
       {"common_tls_context", "sni", "allow_renegotiation"}},
      // The *_sds_secret_config fields and combined_validation_context: in
      // resources from ADS only (xds/dynamic_config writes the secrets in
      // before translation; a static file's are refused by tls_translator).
      {std::string(kTls) + "CommonTlsContext",
       {"tls_params", "tls_certificates", "validation_context", "alpn_protocols",
        "tls_certificate_sds_secret_configs", "validation_context_sds_secret_config",
        "combined_validation_context"}},
      {std::string(kTls) + "CommonTlsContext.CombinedCertificateValidationContext",
       {"default_validation_context", "validation_context_sds_secret_config"}},
      {std::string(kTls) + "SdsSecretConfig", {"name", "sds_config"}},
      {std::string(kTls) + "Secret", {"name", "tls_certificate", "validation_context"}},
      {std::string(kTls) + "TlsParameters",
       {"tls_minimum_protocol_version", "tls_maximum_protocol_version", "cipher_suites"}},
      {std::string(kTls) + "TlsCertificate", {"certificate_chain", "private_key"}},
      {std::string(kTls) + "CertificateValidationContext",
       {"trusted_ca", "match_typed_subject_alt_names", "match_subject_alt_names"}},
      {std::string(kTls) + "SubjectAltNameMatcher", {"san_type", "matcher"}},
      // Routes: compiled (and their values checked) by router::RouteTable.
      {std::string(kRoute) + "RouteConfiguration",
       {"name", "virtual_hosts", "validate_clusters", "most_specific_header_mutations_wins",
        "max_direct_response_body_size_bytes", "request_headers_to_add",
        "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove",
        "typed_per_filter_config"}},
      {std::string(kRoute) + "VirtualHost",
       {"name", "domains", "routes", "request_headers_to_add", "request_headers_to_remove",
        "response_headers_to_add", "response_headers_to_remove", "retry_policy",
        "include_request_attempt_count", "include_attempt_count_in_response",
        "typed_per_filter_config"}},
      {std::string(kRoute) + "Route",
       {"name", "match", "route", "redirect", "direct_response", "request_headers_to_add",
        "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove",
        "typed_per_filter_config"}},
      // typed_per_filter_config's wrapper; `disabled` is refused.
      {std::string(kRoute) + "FilterConfig", {"config", "is_optional"}},
      {std::string(kRoute) + "RouteMatch",
       {"prefix", "path", "safe_regex", "path_separated_prefix", "case_sensitive", "headers",
        "query_parameters", "grpc", "connect_matcher"}},
      {std::string(kRoute) + "RouteMatch.ConnectMatcher", {}},
      // match.grpc is an empty message in Envoy's API.
      {std::string(kRoute) + "RouteMatch.GrpcRouteMatchOptions", {}},
      {std::string(kRoute) + "RouteAction",
       {"cluster", "weighted_clusters", "cluster_header", "prefix_rewrite", "regex_rewrite",
        "host_rewrite_literal", "auto_host_rewrite", "timeout", "max_grpc_timeout",
        "grpc_timeout_offset", "max_stream_duration", "upgrade_configs",
        "cluster_not_found_response_code", "retry_policy", "hash_policy"}},
      // router::HashPolicy; filter_state is refused.
      {std::string(kRoute) + "RouteAction.HashPolicy",
       {"header", "cookie", "connection_properties", "query_parameter", "terminal"}},
      {std::string(kRoute) + "RouteAction.HashPolicy.Header", {"header_name", "regex_rewrite"}},
      {std::string(kRoute) + "RouteAction.HashPolicy.Cookie",
       {"name", "ttl", "path", "attributes"}},
      {std::string(kRoute) + "RouteAction.HashPolicy.CookieAttribute", {"name", "value"}},
      {std::string(kRoute) + "RouteAction.HashPolicy.ConnectionProperties", {"source_ip"}},
      {std::string(kRoute) + "RouteAction.HashPolicy.QueryParameter", {"name"}},
      // filters/router retries; router::RetryPolicy checks the values
      // (retry_on names skiff lacks are refused there).
      {std::string(kRoute) + "RetryPolicy",
       {"retry_on", "num_retries", "retriable_status_codes", "retry_back_off", "per_try_timeout",
        "retry_host_predicate", "host_selection_retry_max_attempts", "retriable_headers",
        "retriable_request_headers", "per_try_idle_timeout"}},
      // Only previous_hosts (its typed_config type below); RetryPolicy::compile
      // refuses another predicate's name.
      {std::string(kRoute) + "RetryPolicy.RetryHostPredicate", {"name", "typed_config"}},
      {"envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate", {}},
      {std::string(kRoute) + "RetryPolicy.RetryBackOff", {"base_interval", "max_interval"}},
      {std::string(kRoute) + "RouteAction.UpgradeConfig",
       {"upgrade_type", "enabled", "connect_config"}},
      // connect_config: terminate CONNECT; proxy_protocol_config and allow_post are refused.
      {std::string(kRoute) + "RouteAction.UpgradeConfig.ConnectConfig", {}},
      {std::string(kRoute) + "RouteAction.MaxStreamDuration",
       {"max_stream_duration", "grpc_timeout_header_max", "grpc_timeout_header_offset"}},
      {std::string(kRoute) + "WeightedCluster", {"clusters", "total_weight"}},
      {std::string(kRoute) + "WeightedCluster.ClusterWeight", {"name", "weight"}},
      {std::string(kRoute) + "DirectResponseAction", {"status", "body"}},
      {std::string(kRoute) + "RedirectAction",
       {"https_redirect", "scheme_redirect", "host_redirect", "port_redirect", "path_redirect",
        "prefix_rewrite", "regex_rewrite", "response_code", "strip_query"}},
      {std::string(kRoute) + "HeaderMatcher",
       {"name", "exact_match", "safe_regex_match", "range_match", "present_match", "prefix_match",
        "suffix_match", "contains_match", "string_match", "invert_match"}},
      {std::string(kRoute) + "QueryParameterMatcher", {"name", "string_match", "present_match"}},
      // filename: TLS files only; RouteTable refuses it for a direct_response body.
      {"envoy.config.core.v3.DataSource", {"filename", "inline_string", "inline_bytes"}},
      {"envoy.config.core.v3.HeaderValueOption",
       {"header", "append", "append_action", "keep_empty_value"}},
      {"envoy.config.core.v3.HeaderValue", {"key", "value"}},
      {"envoy.type.matcher.v3.StringMatcher",
       {"exact", "prefix", "suffix", "safe_regex", "contains", "ignore_case"}},
      {"envoy.type.matcher.v3.RegexMatcher", {"regex", "google_re2"}},
      {"envoy.type.matcher.v3.RegexMatcher.GoogleRE2", {}},
      {"envoy.type.matcher.v3.RegexMatchAndSubstitute", {"pattern", "substitution"}},
      {"envoy.type.v3.Int64Range", {"start", "end"}},
  };
  return *table;
}

// Supported values of enum fields, keyed "<message full name>.<field>". An
// enum field that is absent here accepts every value.
const std::map<std::string, std::set<std::string>>& enumTable() {
  static const auto* table = new std::map<std::string, std::set<std::string>>{
      {"envoy.config.cluster.v3.Cluster.type", {"STATIC", "STRICT_DNS", "EDS", "ORIGINAL_DST"}},
      {"envoy.config.cluster.v3.Cluster.lb_policy",
       {"ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "CLUSTER_PROVIDED", "RING_HASH", "MAGLEV"}},
      {"envoy.config.cluster.v3.Cluster.RingHashLbConfig.hash_function", {"XX_HASH"}},
      {"envoy.config.cluster.v3.Cluster.dns_lookup_family", {"AUTO", "V4_ONLY"}},
      {"envoy.config.cluster.v3.CircuitBreakers.Thresholds.priority", {"DEFAULT"}},
      {"envoy.config.core.v3.SocketAddress.protocol", {"TCP"}},
      {std::string(kHcm) + ".codec_type", {"AUTO", "HTTP1", "HTTP2"}},
      {"envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit.enable_x_ratelimit_headers",
       {"OFF", "DRAFT_VERSION_03"}},
      {"envoy.config.rbac.v3.RBAC.action", {"ALLOW", "DENY", "LOG"}},
      {"envoy.config.core.v3.HealthCheck.HttpHealthCheck.codec_client_type", {"HTTP1", "HTTP2"}},
      {"envoy.config.core.v3.HeaderValueOption.append_action",
       {"APPEND_IF_EXISTS_OR_ADD", "ADD_IF_ABSENT", "OVERWRITE_IF_EXISTS_OR_ADD"}},
  };
  return *table;
}

const std::set<std::string>& opaqueTypes() {
  static const auto* types = new std::set<std::string>{
      "google.protobuf.Duration",      "google.protobuf.Timestamp",   "google.protobuf.Struct",
      "google.protobuf.Value",         "google.protobuf.ListValue",   "google.protobuf.Empty",
      "google.protobuf.BoolValue",     "google.protobuf.UInt32Value", "google.protobuf.UInt64Value",
      "google.protobuf.Int32Value",    "google.protobuf.Int64Value",  "google.protobuf.DoubleValue",
      "google.protobuf.FloatValue",    "google.protobuf.StringValue", "google.protobuf.BytesValue",
      "envoy.config.core.v3.Locality",
  };
  return *types;
}

const std::set<std::string>& anyTypes() {
  static const auto* types = new std::set<std::string>{
      kHcm,
      kTcpProxy,
      "envoy.extensions.filters.http.router.v3.Router",
      "envoy.extensions.filters.http.fault.v3.HTTPFault",
      "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
      "envoy.extensions.filters.http.rbac.v3.RBAC",
      "envoy.extensions.filters.http.rbac.v3.RBACPerRoute",
      "envoy.extensions.filters.http.health_check.v3.HealthCheck",
      "envoy.extensions.filters.http.cors.v3.Cors",
      "envoy.extensions.filters.http.cors.v3.CorsPolicy",
      std::string(kRoute) + "FilterConfig",
      kUpstreamHttp,
      std::string(kTls) + "DownstreamTlsContext",
      std::string(kTls) + "UpstreamTlsContext",
      "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
      "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector",
      "envoy.extensions.filters.listener.original_dst.v3.OriginalDst",
      "envoy.extensions.access_loggers.file.v3.FileAccessLog",
      "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
      "envoy.extensions.access_loggers.stream.v3.StderrAccessLog",
      "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
  };
  return *types;
}

std::string fieldPath(const std::string& parent, const std::string& name) {
  return parent.empty() ? name : parent + "." + name;
}

// A readable rendering of a map key for a path: ["key"] or [42].
std::string mapKey(const Message& entry) {
  const FieldDescriptor* key = entry.GetDescriptor()->map_key();
  const Reflection* r = entry.GetReflection();
  switch (key->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      return "[\"" + r->GetString(entry, key) + "\"]";
    case FieldDescriptor::CPPTYPE_INT32:
      return "[" + std::to_string(r->GetInt32(entry, key)) + "]";
    case FieldDescriptor::CPPTYPE_INT64:
      return "[" + std::to_string(r->GetInt64(entry, key)) + "]";
    case FieldDescriptor::CPPTYPE_UINT32:
      return "[" + std::to_string(r->GetUInt32(entry, key)) + "]";
    case FieldDescriptor::CPPTYPE_UINT64:
      return "[" + std::to_string(r->GetUInt64(entry, key)) + "]";
    case FieldDescriptor::CPPTYPE_BOOL:
      return r->GetBool(entry, key) ? "[true]" : "[false]";
    default:
      return "[?]";
  }
}

class Walker {
 public:
  explicit Walker(std::vector<std::string>& out) : out_(out) {}

  void walk(const Message& msg, const std::string& path) {
    const Descriptor* type = msg.GetDescriptor();
    const std::string& type_name = type->full_name();
    if (isOpaqueAllowed(type_name)) {
      return;
    }
    if (type_name == "google.protobuf.Any") {
      walkAny(msg, path);
      return;
    }
    if (type_name == std::string(kRoute) + "FilterConfig" && optionalUnknownFilter(msg)) {
      return;  // Envoy ignores an optional per-filter config it cannot use.
    }
    const Reflection* r = msg.GetReflection();
    if (!r->GetUnknownFields(msg).empty()) {
      // Only binary input (xDS) can carry these: a newer API than skiff's.
      out_.push_back((path.empty() ? type_name : path) +
                     ": has fields that skiff's Envoy API version does not know");
    }
    const std::set<std::string>* supported = supportedFields(type_name);
    std::vector<const FieldDescriptor*> fields;
    r->ListFields(msg, &fields);
    for (const FieldDescriptor* field : fields) {
      const std::string path_here = fieldPath(path, field->name());
      if (supported == nullptr || supported->count(field->name()) == 0) {
        out_.push_back(path_here + ": not supported yet");
        continue;
      }
      if (field->is_map()) {
        const FieldDescriptor* value = field->message_type()->map_value();
        for (int i = 0; i < r->FieldSize(msg, field); ++i) {
          const Message& entry = r->GetRepeatedMessage(msg, field, i);
          if (value->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
            walk(entry.GetReflection()->GetMessage(entry, value), path_here + mapKey(entry));
          }
        }
        continue;
      }
      if (field->is_repeated()) {
        for (int i = 0; i < r->FieldSize(msg, field); ++i) {
          const std::string element = path_here + "[" + std::to_string(i) + "]";
          if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
            walk(r->GetRepeatedMessage(msg, field, i), element);
          } else if (field->cpp_type() == FieldDescriptor::CPPTYPE_ENUM) {
            checkEnum(type_name, field, r->GetRepeatedEnumValue(msg, field, i), element);
          }
        }
        continue;
      }
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
        walk(r->GetMessage(msg, field), path_here);
      } else if (field->cpp_type() == FieldDescriptor::CPPTYPE_ENUM) {
        checkEnum(type_name, field, r->GetEnumValue(msg, field), path_here);
      }
    }
  }

 private:
  void checkEnum(const std::string& type_name, const FieldDescriptor* field, int number,
                 const std::string& path) {
    const auto& table = enumTable();
    auto it = table.find(type_name + "." + field->name());
    const auto* value = field->enum_type()->FindValueByNumber(number);
    const std::string name = value != nullptr ? value->name() : std::to_string(number);
    if (value == nullptr) {
      out_.push_back(path + ": " + name + " is not a known value of " +
                     field->enum_type()->full_name());
    } else if (it != table.end() && it->second.count(name) == 0) {
      out_.push_back(path + ": " + name + " is not supported yet");
    }
  }

  // A typed_per_filter_config FilterConfig with is_optional whose config is
  // of a type skiff does not implement.
  static bool optionalUnknownFilter(const Message& msg) {
    const Descriptor* type = msg.GetDescriptor();
    const Reflection* r = msg.GetReflection();
    const FieldDescriptor* optional = type->FindFieldByName("is_optional");
    const FieldDescriptor* config = type->FindFieldByName("config");
    if (optional == nullptr || config == nullptr || !r->GetBool(msg, optional)) return false;
    if (!r->HasField(msg, config)) return false;
    const Message& any = r->GetMessage(msg, config);
    const std::string url =
        any.GetReflection()->GetString(any, any.GetDescriptor()->FindFieldByName("type_url"));
    return !isSupportedAnyType(url.substr(url.rfind('/') + 1));
  }

  void walkAny(const Message& any, const std::string& path) {
    const Descriptor* type = any.GetDescriptor();
    const Reflection* r = any.GetReflection();
    const std::string type_url = r->GetString(any, type->FindFieldByName("type_url"));
    const std::string value = r->GetString(any, type->FindFieldByName("value"));
    const std::string where = path.empty() ? "(Any)" : path;
    const size_t slash = type_url.rfind('/');
    const std::string name = slash == std::string::npos ? type_url : type_url.substr(slash + 1);
    if (type_url.empty()) {
      out_.push_back(where + ": has no type URL");
      return;
    }
    const Descriptor* packed = DescriptorPool::generated_pool()->FindMessageTypeByName(name);
    if (packed == nullptr) {
      out_.push_back(where + ": unknown type URL '" + type_url + "'");
      return;
    }
    if (!isSupportedAnyType(name)) {
      out_.push_back(where + ": type URL '" + type_url + "' is not supported yet");
      return;
    }
    const Message* prototype = MessageFactory::generated_factory()->GetPrototype(packed);
    std::unique_ptr<Message> message(prototype->New());
    if (!message->ParseFromString(value)) {
      out_.push_back(where + ": could not be decoded as " + name);
      return;
    }
    walk(*message, path);
  }

  std::vector<std::string>& out_;
};

}  // namespace

std::vector<std::string> findUnsupportedFields(const google::protobuf::Message& msg,
                                               const std::string& root_path) {
  std::vector<std::string> out;
  Walker(out).walk(msg, root_path);
  return out;
}

const std::map<std::string, std::set<std::string>>& supportedFieldTable() { return fieldTable(); }

const std::map<std::string, std::set<std::string>>& supportedEnumValueTable() {
  return enumTable();
}

const std::set<std::string>* supportedFields(const std::string& message_full_name) {
  const auto& table = fieldTable();
  auto it = table.find(message_full_name);
  return it == table.end() ? nullptr : &it->second;
}

bool isOpaqueAllowed(const std::string& message_full_name) {
  return opaqueTypes().count(message_full_name) != 0;
}

bool isSupportedAnyType(const std::string& message_full_name) {
  return anyTypes().count(message_full_name) != 0;
}

}  // namespace skiff::xds
