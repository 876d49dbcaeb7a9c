// The connection manager's stats blocks: Envoy's http.<stat_prefix>.* and
// listener.<address>.* statistics. Apart from connection_manager.h so that
// the configs that hold them per worker (proxy/config/config.h) can.
#pragma once

#include <string>

#include "proxy/stats/stats.h"

namespace skiff {

// Envoy's http.<stat_prefix>.* counters. Each worker makes a block per HCM
// config when it installs the config's listener
// (HttpConnectionManagerConfig::stats); blocks with one stat_prefix share
// their counters, which the worker's store keeps by name.
struct HttpConnectionManagerStats {
  HttpConnectionManagerStats(stats::Store& store, const std::string& stat_prefix);
  stats::Counter& downstream_cx_total;
  stats::Gauge& downstream_cx_active;
  stats::Counter& downstream_cx_http1_total;
  stats::Counter& downstream_cx_http2_total;
  stats::Counter& downstream_cx_ssl_total;
  stats::Counter& downstream_cx_protocol_error;
  // Connections drained because the server fails health checks.
  stats::Counter& downstream_cx_drain_close;
  stats::Counter& downstream_rq_total;
  stats::Counter& downstream_rq_http1_total;
  stats::Counter& downstream_rq_http2_total;
  stats::Gauge& downstream_rq_active;
  stats::Counter& downstream_rq_completed;
  stats::Counter& downstream_rq_1xx;
  stats::Counter& downstream_rq_2xx;
  stats::Counter& downstream_rq_3xx;
  stats::Counter& downstream_rq_4xx;
  stats::Counter& downstream_rq_5xx;
  stats::Counter& downstream_rq_rx_reset;
  stats::Counter& downstream_rq_tx_reset;
  stats::Counter& downstream_rq_too_large;
  // Responses that started before the whole request had arrived.
  stats::Counter& downstream_rq_response_before_rq_complete;
  stats::Counter& no_route;
  // Envoy's router statistics: requests the router saw; a route whose
  // cluster the workers do not know; a direct response or redirect route.
  stats::Counter& rq_total;
  stats::Counter& no_cluster;
  stats::Counter& rq_direct_response;
  // Envoy's router declares rq_redirect but counts its redirect routes under
  // rq_direct_response, so this one stays 0 (its /stats shows it all the
  // same); an upstream reset after the downstream response started.
  stats::Counter& rq_redirect;
  stats::Counter& rq_reset_after_downstream_response_started;
  // Upgrades and CONNECTs let through (Envoy counts them when the upgrade is
  // accepted by the configuration, before the upstream answers), and those
  // refused because neither the route nor the connection manager enables them.
  stats::Counter& downstream_cx_upgrades_total;
  stats::Gauge& downstream_cx_upgrades_active;
  stats::Counter& downstream_rq_ws_on_non_ws_route;
  // Requests refused (400) by path normalization, and redirected (307) by
  // path_with_escaped_slashes_action UNESCAPE_AND_REDIRECT.
  stats::Counter& downstream_rq_failed_path_normalization;
  stats::Counter& downstream_rq_redirected_with_normalized_path;
};

// Envoy's listener.<address>.* counters, TLS ones included: a block per
// listener config per worker (ListenerConfig::stats), as above.
struct ListenerStats {
  ListenerStats(stats::Store& store, const std::string& prefix);
  stats::Counter& downstream_cx_total;
  stats::Gauge& downstream_cx_active;
  stats::Counter& no_filter_chain_match;
  stats::Counter& ssl_handshake;
  // Connections the listener filters had not decided on within
  // listener_filters_timeout (closed, or handed on).
  stats::Counter& downstream_pre_cx_timeout;
  stats::Store& store;
  std::string prefix;  // "listener.<address>." for counters made on demand.
};

}  // namespace skiff
