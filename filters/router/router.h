// The router filter (envoy.filters.http.router): the last decoder filter. It
// picks the cluster from the route, takes a connection from the worker's
// upstream pool, forwards the request and streams the response back.
#pragma once

#include <memory>

#include "filters/filter.h"

namespace skiff::filters {

inline constexpr const char* kRouterTypeUrl =
    "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";

std::shared_ptr<const HttpFilterFactory> makeRouterFilterFactory();

}  // namespace skiff::filters
