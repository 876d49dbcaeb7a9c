// Envoy's response code details (%RESPONSE_CODE_DETAILS%): why a stream's
// response is what it is, in Envoy's words (its "Response Code Details"
// table). Each place that answers locally, or sees a stream end early, names
// one of these. They are static strings, so a stream keeps a view and pays no
// copy; one that is set later replaces one set before, as in Envoy.
#pragma once

#include <string_view>

namespace skiff::access_log::details {

// The response came from the upstream.
inline constexpr std::string_view kViaUpstream = "via_upstream";
// Local answers of the router.
inline constexpr std::string_view kRouteNotFound = "route_not_found";
inline constexpr std::string_view kDirectResponse = "direct_response";
inline constexpr std::string_view kClusterNotFound = "cluster_not_found";
inline constexpr std::string_view kNoHealthyUpstream = "no_healthy_upstream";
inline constexpr std::string_view kResponseTimeout = "response_timeout";
// Local answers of HTTP filters: the fault filter's abort, the local rate
// limit filter's refusal.
inline constexpr std::string_view kFaultFilterAbort = "fault_filter_abort";
inline constexpr std::string_view kLocalRateLimited = "local_rate_limited";
// The health check filter's answers: healthy; failed by /healthcheck/fail;
// by cluster_min_healthy_percentages, every cluster healthy enough, or one
// missing, empty, or with too few healthy hosts.
inline constexpr std::string_view kHealthCheckOk = "health_check_ok";
inline constexpr std::string_view kHealthCheckFailed = "health_check_failed";
inline constexpr std::string_view kHealthCheckClusterHealthy = "health_check_ok_cluster_healthy";
inline constexpr std::string_view kHealthCheckNoCluster = "health_check_failed_no_cluster_found";
inline constexpr std::string_view kHealthCheckClusterEmpty = "health_check_failed_cluster_empty";
inline constexpr std::string_view kHealthCheckClusterUnhealthy =
    "health_check_failed_cluster_unhealthy";
// The CORS filter answered a preflight.
inline constexpr std::string_view kCorsResponse = "cors_response";
// Local answers of the connection manager.
inline constexpr std::string_view kMissingHostHeader = "missing_host_header";
inline constexpr std::string_view kUpgradeFailed = "upgrade_failed";
// normalize_path or path_with_escaped_slashes_action refused the path, or
// redirected the request to its normal form.
inline constexpr std::string_view kPathNormalizationFailed = "path_normalization_failed";
inline constexpr std::string_view kRequestPayloadTooLarge = "request_payload_too_large";
inline constexpr std::string_view kResponsePayloadTooLarge = "response_payload_too_large";
inline constexpr std::string_view kRequestOverallTimeout = "request_overall_timeout";
inline constexpr std::string_view kStreamIdleTimeout = "stream_idle_timeout";
inline constexpr std::string_view kMaxDurationTimeout = "max_duration_timeout";
// The downstream went away: its connection closed, or (HTTP/2) it reset the
// stream (Envoy's HTTP/2 codec names that one).
inline constexpr std::string_view kDownstreamRemoteDisconnect = "downstream_remote_disconnect";
inline constexpr std::string_view kHttp2RemoteReset = "http2.remote_reset";
// The upstream failed before its response started: Envoy writes the stream
// reset reason in braces, with spaces as underscores. When the connection
// had a transport failure reason (a TLS handshake), Envoy adds it after a
// '|' inside the braces; the formatter does that at log time.
inline constexpr std::string_view kResetBeforeStartedOverflow =
    "upstream_reset_before_response_started{overflow}";
inline constexpr std::string_view kResetBeforeStartedConnectionFailure =
    "upstream_reset_before_response_started{remote_connection_failure}";
inline constexpr std::string_view kResetBeforeStartedConnectionTimeout =
    "upstream_reset_before_response_started{connection_timeout}";
inline constexpr std::string_view kResetBeforeStartedConnectionTermination =
    "upstream_reset_before_response_started{connection_termination}";
inline constexpr std::string_view kResetBeforeStartedRemoteReset =
    "upstream_reset_before_response_started{remote_reset}";
inline constexpr std::string_view kResetBeforeStartedProtocolError =
    "upstream_reset_before_response_started{protocol_error}";
inline constexpr std::string_view kResetBeforeStartedRefusedStream =
    "upstream_reset_before_response_started{remote_refused_stream_reset}";
inline constexpr std::string_view kResetBeforeStartedLocalReset =
    "upstream_reset_before_response_started{local_reset}";
// ... after it started (the downstream stream is reset).
inline constexpr std::string_view kResetAfterStartedConnectionTermination =
    "upstream_reset_after_response_started{connection_termination}";
inline constexpr std::string_view kResetAfterStartedRemoteReset =
    "upstream_reset_after_response_started{remote_reset}";
inline constexpr std::string_view kResetAfterStartedProtocolError =
    "upstream_reset_after_response_started{protocol_error}";
inline constexpr std::string_view kResetAfterStartedRefusedStream =
    "upstream_reset_after_response_started{remote_refused_stream_reset}";
inline constexpr std::string_view kResetAfterStartedLocalReset =
    "upstream_reset_after_response_started{local_reset}";

}  // namespace skiff::access_log::details
