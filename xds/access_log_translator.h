// HttpConnectionManager.access_log[] (Envoy's AccessLog protos) -> skiff's
// access logs (proxy/access_log). Loggers: file, stdout, stderr. Errors name
// the field by path, one per line, like the rest of the translator.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "envoy/config/accesslog/v3/accesslog.pb.h"
#include "proxy/access_log/access_log.h"

namespace skiff::xds {

// Appends one AccessLog per entry of logs to out; problems go to errors as
// "path: reason" (path names the repeated field, e.g. "...typed_config.access_log").
void translateAccessLogs(
    const google::protobuf::RepeatedPtrField<envoy::config::accesslog::v3::AccessLog>& logs,
    const std::string& path, std::vector<std::string>& errors,
    std::vector<std::shared_ptr<const access_log::AccessLog>>& out);

}  // namespace skiff::xds
