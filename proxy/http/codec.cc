#include "proxy/http/codec.h"

namespace skiff::http {

const char* resetReasonName(ResetReason reason) {
  switch (reason) {
    case ResetReason::kLocalReset:
      return "local reset";
    case ResetReason::kRemoteReset:
      return "remote reset";
    case ResetReason::kConnectionFailure:
      return "connection failure";
    case ResetReason::kConnectionTermination:
      return "connection termination";
    case ResetReason::kProtocolError:
      return "protocol error";
  }
  return "unknown";
}

}  // namespace skiff::http
