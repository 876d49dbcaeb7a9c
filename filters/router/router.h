// The router filter (envoy.filters.http.router): the last decoder filter. It
// picks the cluster from the route, takes a connection from the worker's
// upstream pool, forwards the request and streams the response back.
#pragma once

#include <memory>

#include "filters/filter.h"

namespace skiff::filters {

inline constexpr const char* kRouterTypeUrl =
    "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";

// The Router message's fields skiff implements.
struct RouterConfig {
  // Envoy's suppress_envoy_headers: no x-envoy-upstream-service-time on
  // responses, no x-envoy-expected-rq-timeout-ms or x-envoy-original-path on
  // requests.
  bool suppress_envoy_headers = false;
};

std::shared_ptr<const HttpFilterFactory> makeRouterFilterFactory(RouterConfig config = {});

}  // namespace skiff::filters
