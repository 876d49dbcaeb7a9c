#include "filters/common/grpc_reply.h"

#include <memory>
#include <string>

namespace skiff::filters {

void sendGrpcStatusReply(FilterCallbacks& callbacks, int grpc_status, std::string_view message,
                         std::string_view response_flag, std::string_view details) {
  if (!response_flag.empty()) callbacks.setResponseFlag(response_flag);
  callbacks.setResponseCodeDetails(details);
  auto h = std::make_unique<HeaderMap>();
  h->addView(":status", "200");
  h->addView("content-type", "application/grpc");
  h->addCopy("grpc-status", std::to_string(grpc_status));
  if (!message.empty()) h->addCopy("grpc-message", message);
  callbacks.encodeHeaders(std::move(h), true);
}

}  // namespace skiff::filters
