#include "xds/field_support.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <google/protobuf/descriptor.h>

#include "envoy/extensions/filters/http/router/v3/router.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"
#include "xds/bootstrap_loader.h"

namespace skiff::xds {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::vector<std::string> unsupported(std::string_view yaml) {
  auto bootstrap = loadBootstrapYaml(yaml);
  EXPECT_TRUE(bootstrap.isOk()) << bootstrap.status().message();
  return bootstrap.isOk() ? findUnsupportedFields(*bootstrap) : std::vector<std::string>{"load"};
}

TEST(FieldSupport, AcceptsSupportedFields) {
  EXPECT_THAT(unsupported(R"(
node: {id: a, cluster: b, metadata: {x: [1, {y: z}]}, locality: {zone: z1}, user_agent_name: c}
admin: {address: {socket_address: {address: 127.0.0.1, port_value: 9901}}}
static_resources:
  clusters:
  - name: c
    type: STRICT_DNS
    lb_policy: LEAST_REQUEST
    least_request_lb_config: {choice_count: 3}
    dns_lookup_family: V4_ONLY
    circuit_breakers: {thresholds: [{priority: DEFAULT, max_connections: 5}]}
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        common_http_protocol_options: {idle_timeout: 30s}
        explicit_http_config: {http_protocol_options: {}}
)"),
              IsEmpty());
}

TEST(FieldSupport, AcceptsJsonFormatOptions) {
  // Envoy always sorts json_format's keys (sort_properties has no effect),
  // as skiff does: the option is accepted, either way.
  EXPECT_THAT(unsupported(R"(
static_resources:
  listeners:
  - filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format:
                json_format: {code: "%RESPONSE_CODE%"}
                json_format_options: {sort_properties: false}
)"),
              IsEmpty());
}

// Every field tls_translator reads, and the HTTP/2 and filter chain fields,
// pass the walker (the translator then checks their values).
TEST(FieldSupport, AcceptsTlsHttp2AndFilterChainFields) {
  EXPECT_THAT(unsupported(R"(
static_resources:
  listeners:
  - filter_chains:
    - name: a
      filter_chain_match: {server_names: [a.test]}
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_params: {tls_minimum_protocol_version: TLSv1_2, tls_maximum_protocol_version: TLSv1_3, cipher_suites: [x]}
            tls_certificates: [{certificate_chain: {filename: c}, private_key: {inline_string: k}}]
            validation_context:
              trusted_ca: {inline_bytes: Y2E=}
              match_typed_subject_alt_names: [{san_type: DNS, matcher: {exact: a}}]
              match_subject_alt_names: [{prefix: b, ignore_case: true}]
            alpn_protocols: [h2]
      filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          codec_type: HTTP2
          http2_protocol_options:
            hpack_table_size: 1
            max_concurrent_streams: 1
            initial_stream_window_size: 65535
            initial_connection_window_size: 65535
            allow_connect: false
            max_outbound_frames: 1
            max_outbound_control_frames: 1
            max_consecutive_inbound_frames_with_empty_payload: 1
            max_inbound_priority_frames_per_stream: 1
            max_inbound_window_update_frames_per_data_frame_sent: 1
    default_filter_chain: {name: d}
  clusters:
  - name: c
    http2_protocol_options: {}
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: s
        allow_renegotiation: false
        common_tls_context: {}
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        auto_config: {http_protocol_options: {}, http2_protocol_options: {}}
)"),
              IsEmpty());
  EXPECT_THAT(unsupported(R"(
static_resources:
  listeners:
  - filter_chains:
    - filter_chain_match: {transport_protocol: tls, suffix_len: 8}
      transport_socket_connect_timeout: 1s
      filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          http2_protocol_options: {custom_settings_parameters: [{identifier: 8, value: 1}]}
          http3_protocol_options: {}
)"),
              ElementsAre("static_resources.listeners[0].filter_chains[0].filter_chain_match."
                          "suffix_len: not supported yet",
                          "static_resources.listeners[0].filter_chains[0].filters[0].typed_config."
                          "http2_protocol_options.custom_settings_parameters: not supported yet",
                          "static_resources.listeners[0].filter_chains[0].filters[0].typed_config."
                          "http3_protocol_options: not supported yet",
                          "static_resources.listeners[0].filter_chains[0]."
                          "transport_socket_connect_timeout: not supported yet"));
}

TEST(FieldSupport, NamesUnsupportedTopLevelFields) {
  EXPECT_THAT(unsupported(R"(
layered_runtime: {layers: [{name: a, static_layer: {}}]}
stats_flush_interval: 5s
admin: {access_log_path: /dev/null}
)"),
              ElementsAre("stats_flush_interval: not supported yet",
                          "admin.access_log_path: not supported yet",
                          "layered_runtime: not supported yet"));
}

TEST(FieldSupport, NamesUnsupportedEnumValues) {
  EXPECT_THAT(
      unsupported(R"(
static_resources:
  clusters:
  - {name: a}
  - {name: b, lb_policy: LOAD_BALANCING_POLICY_CONFIG, type: LOGICAL_DNS}
  - {name: c, dns_lookup_family: V6_ONLY, circuit_breakers: {thresholds: [{priority: HIGH}]}}
)"),
      ElementsAre("static_resources.clusters[1].type: LOGICAL_DNS is not supported yet",
                  "static_resources.clusters[1].lb_policy: LOAD_BALANCING_POLICY_CONFIG is not "
                  "supported yet",
                  "static_resources.clusters[2].circuit_breakers.thresholds[0].priority: "
                  "HIGH is not supported yet",
                  "static_resources.clusters[2].dns_lookup_family: V6_ONLY is not supported yet"));
}

TEST(FieldSupport, RefusesTheOtherSideOfAOneof) {
  EXPECT_THAT(unsupported(R"(
static_resources:
  clusters:
  - name: a
    cluster_type: {name: envoy.clusters.aggregate}
    round_robin_lb_config: {}
)"),
              ElementsAre("static_resources.clusters[0].cluster_type: not supported yet",
                          "static_resources.clusters[0].round_robin_lb_config: not supported yet"));
}

TEST(FieldSupport, WalksIntoTypedConfig) {
  EXPECT_THAT(unsupported(R"(
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 0.0.0.0, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
          codec_type: HTTP3
          tracing: {}
          rds: {route_config_name: r, config_source: {path: /x}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
              suppress_envoy_headers: true
              respect_expected_rq_timeout: true
)"),
              ElementsAre("static_resources.listeners[0].filter_chains[0].filters[0].typed_config."
                          "codec_type: HTTP3 is not supported yet",
                          "static_resources.listeners[0].filter_chains[0].filters[0].typed_config."
                          "rds.config_source.path: not supported yet",
                          "static_resources.listeners[0].filter_chains[0].filters[0].typed_config."
                          "http_filters[0].typed_config.respect_expected_rq_timeout: not supported "
                          "yet",
                          "static_resources.listeners[0].filter_chains[0].filters[0].typed_config."
                          "tracing: not supported yet"));
}

TEST(FieldSupport, NamesMapEntriesByKey) {
  EXPECT_THAT(unsupported(R"(
static_resources:
  clusters:
  - name: a
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http3_protocol_options: {}}
)"),
              ElementsAre("static_resources.clusters[0].typed_extension_protocol_options["
                          "\"envoy.extensions.upstreams.http.v3.HttpProtocolOptions\"]."
                          "explicit_http_config.http3_protocol_options: not supported yet"));
}

TEST(FieldSupport, RefusesTypeUrlsItDoesNotImplement) {
  envoy::config::listener::v3::Listener listener;
  auto* filter = listener.add_filter_chains()->add_filters();
  filter->mutable_typed_config()->set_type_url("type.googleapis.com/no.such.Type");
  auto* tls = listener.add_filter_chains()->add_filters();
  tls->mutable_typed_config()->PackFrom(envoy::extensions::transport_sockets::tls::v3::Secret());
  EXPECT_THAT(findUnsupportedFields(listener, "static_resources.listeners[3]"),
              ElementsAre("static_resources.listeners[3].filter_chains[0].filters[0].typed_config: "
                          "unknown type URL 'type.googleapis.com/no.such.Type'",
                          "static_resources.listeners[3].filter_chains[1].filters[0].typed_config: "
                          "type URL 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                          "Secret' is not supported yet"));
}

TEST(FieldSupport, ChecksRouteConfiguration) {
  EXPECT_THAT(unsupported(R"(
static_resources:
  listeners:
  - filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          route_config:
            name: r
            response_headers_to_add: [{header: {key: a, value: b}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}]
            virtual_hosts:
            - name: v
              domains: ["*"]
              routes:
              - match:
                  prefix: /
                  case_sensitive: false
                  headers:
                  - {name: x, exact_match: y}
                  - {name: x, string_match: {safe_regex: {regex: "a.*"}}, invert_match: true}
                  - {name: r, range_match: {start: 1, end: 5}}
                  query_parameters: [{name: q, present_match: true}]
                route:
                  weighted_clusters: {clusters: [{name: a, weight: 1}]}
                  regex_rewrite: {pattern: {google_re2: {}, regex: "^/x"}, substitution: /y}
                  timeout: 3s
              - match: {path_separated_prefix: /api}
                redirect: {https_redirect: true, response_code: FOUND}
              - match: {safe_regex: {regex: "/d.*"}}
                direct_response: {status: 200, body: {inline_string: ok}}
              - match: {prefix: /r}
                route: {cluster: a, retry_policy: {num_retries: 2, retry_priority: {name: p}}}
                decorator: {operation: op}
              - match: {prefix: /s, grpc: {}}
                direct_response: {status: 200, body: {filename: /etc/passwd}}
)"),
              ElementsAre("static_resources.listeners[0].filter_chains[0].filters[0].typed_config."
                          "route_config.virtual_hosts[0].routes[3].route.retry_policy.retry_"
                          "priority: not supported "
                          "yet",
                          "static_resources.listeners[0].filter_chains[0].filters[0].typed_config."
                          "route_config.virtual_hosts[0].routes[3].decorator: not supported yet"));
  // DataSource.filename is in the table for TLS files; RouteTable refuses it
  // for a direct_response body (TranslateBootstrap.DirectResponseFromFile).
}

// Istio's default route retry policy, on a route and on a virtual host; the
// other RetryPolicy fields are refused by path.
TEST(FieldSupport, AcceptsIstiosRetryPolicy) {
  EXPECT_THAT(unsupported(R"(
static_resources:
  listeners:
  - filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          route_config:
            virtual_hosts:
            - name: v
              domains: ["*"]
              retry_policy: {retry_on: 5xx, num_retries: 1, per_try_timeout: 1s,
                             retry_back_off: {base_interval: 0.1s, max_interval: 1s}}
              routes:
              - match: {prefix: /}
                route:
                  cluster: a
                  retry_policy:
                    retry_on: connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes
                    num_retries: 2
                    retriable_status_codes: [503]
                    retry_host_predicate:
                    - name: envoy.retry_host_predicates.previous_hosts
                      typed_config:
                        "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate
                    host_selection_retry_max_attempts: 5
                    per_try_idle_timeout: 5s
)"),
              IsEmpty());
  EXPECT_THAT(
      unsupported(R"(
static_resources:
  listeners:
  - filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          route_config:
            virtual_hosts:
            - name: v
              domains: ["*"]
              routes:
              - match: {prefix: /}
                route:
                  cluster: a
                  retry_policy:
                    rate_limited_retry_back_off: {reset_headers: [{name: x}]}
                    retry_priority: {name: envoy.retry_priorities.previous_priorities}
)"),
      ElementsAre(
          "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config."
          "virtual_hosts[0].routes[0].route.retry_policy.retry_priority: not supported yet",
          "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config."
          "virtual_hosts[0].routes[0].route.retry_policy.rate_limited_retry_back_off: not "
          "supported yet"));
}

TEST(FieldSupport, RefusesOverwriteIfExists) {
  envoy::config::core::v3::HeaderValueOption option;
  option.set_append_action(envoy::config::core::v3::HeaderValueOption::OVERWRITE_IF_EXISTS);
  EXPECT_THAT(findUnsupportedFields(option, "h"),
              ElementsAre("h.append_action: OVERWRITE_IF_EXISTS is not supported yet"));
}

// A misspelt message or field name in the table would silently support
// nothing; every entry must name something real.
TEST(FieldSupport, TableNamesRealMessagesFieldsAndValues) {
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  for (const auto& [type, fields] : supportedFieldTable()) {
    const auto* descriptor = pool->FindMessageTypeByName(type);
    ASSERT_NE(descriptor, nullptr) << type;
    for (const auto& field : fields) {
      EXPECT_NE(descriptor->FindFieldByName(field), nullptr) << type << "." << field;
    }
  }
  for (const auto& [type_field, values] : supportedEnumValueTable()) {
    const size_t dot = type_field.rfind('.');
    const auto* descriptor = pool->FindMessageTypeByName(type_field.substr(0, dot));
    ASSERT_NE(descriptor, nullptr) << type_field;
    const auto* field = descriptor->FindFieldByName(type_field.substr(dot + 1));
    ASSERT_NE(field, nullptr) << type_field;
    ASSERT_NE(field->enum_type(), nullptr) << type_field;
    EXPECT_EQ(supportedFields(descriptor->full_name())->count(field->name()), 1u) << type_field;
    for (const auto& value : values) {
      EXPECT_NE(field->enum_type()->FindValueByName(value), nullptr) << type_field << " " << value;
    }
  }
}

TEST(FieldSupport, TableIsExposed) {
  const auto* cluster = supportedFields("envoy.config.cluster.v3.Cluster");
  ASSERT_NE(cluster, nullptr);
  EXPECT_EQ(cluster->count("lb_policy"), 1u);
  EXPECT_EQ(supportedFields("envoy.config.trace.v3.Tracing"), nullptr);
  EXPECT_TRUE(isOpaqueAllowed("google.protobuf.Duration"));
  EXPECT_TRUE(isSupportedAnyType("envoy.extensions.filters.http.router.v3.Router"));
}

TEST(FieldSupport, OutlierDetection) {
  // What skiff does not do is refused by path: extension monitors, other
  // common_lb_config fields.
  EXPECT_THAT(
      unsupported(R"(
static_resources:
  clusters:
  - name: c
    outlier_detection:
      consecutive_5xx: 3
      interval: 1s
      enforcing_success_rate: 0
      success_rate_minimum_hosts: 3
      failure_percentage_threshold: 90
      always_eject_one_host: true
      monitors: [{name: m}]
    common_lb_config:
      healthy_panic_threshold: {value: 30}
      ignore_new_hosts_until_first_hc: true
)"),
      ElementsAre("static_resources.clusters[0].outlier_detection.monitors: not supported yet",
                  "static_resources.clusters[0].common_lb_config."
                  "ignore_new_hosts_until_first_hc: not supported yet"));
}

}  // namespace
}  // namespace skiff::xds
