// The TCP proxy's stats block, apart from tcp_proxy.h so that the config that
// holds it per worker (proxy/config/config.h) can.
#pragma once

#include <string>

#include "proxy/stats/stats.h"

namespace skiff::tcp_proxy {

// Envoy's tcp.<stat_prefix>.* statistics: a block per tcp_proxy config per
// worker (TcpProxyConfig::stats), made when the worker installs the config's
// listener.
struct TcpProxyStats {
  TcpProxyStats(stats::Store& store, const std::string& stat_prefix);
  stats::Counter& downstream_cx_total;
  // No cluster by that name on the worker.
  stats::Counter& downstream_cx_no_route;
  stats::Counter& downstream_cx_tx_bytes_total;  // Sent to the downstream.
  stats::Counter& downstream_cx_rx_bytes_total;  // Received from the downstream.
  stats::Counter& downstream_flow_control_paused_reading_total;
  stats::Counter& downstream_flow_control_resumed_reading_total;
  stats::Counter& idle_timeout;
  stats::Counter& max_downstream_connection_duration;
};

}  // namespace skiff::tcp_proxy
