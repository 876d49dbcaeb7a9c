// A local reply that gives a gRPC request a grpc-status of the filter's own
// choosing (the fault filter's grpc_status abort, the local rate limit's
// RESOURCE_EXHAUSTED), where FilterCallbacks::sendLocalReply maps the HTTP
// status as Envoy does.
#pragma once

#include <string_view>

#include "filters/filter.h"

namespace skiff::filters {

// Answers the request with Envoy's trailers-only gRPC reply: HTTP 200,
// content-type application/grpc, grpc-status, and message as grpc-message;
// records response_flag and details as sendLocalReply does. Only before the
// response started (a filter's decodeHeaders).
void sendGrpcStatusReply(FilterCallbacks& callbacks, int grpc_status, std::string_view message,
                         std::string_view response_flag, std::string_view details);

}  // namespace skiff::filters
