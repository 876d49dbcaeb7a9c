// Loads an Envoy bootstrap file into the genuine envoy.config.bootstrap.v3
// message, the way Envoy does: YAML -> JSON -> JsonStringToMessage, with
// unknown fields refused. What skiff does with the message is translator.h's
// business; this file only parses.
#pragma once

#include <string>
#include <string_view>

#include "envoy/config/bootstrap/v3/bootstrap.pb.h"
#include "proxy/common/status.h"

namespace skiff::xds {

// YAML text -> Bootstrap. Plain scalars become JSON values by the YAML 1.2
// core schema (true/false -> bool, integers and floats -> numbers,
// null/~/empty -> null); quoted and block scalars stay strings. Anchors,
// aliases and "<<" merge keys are resolved. Errors give the YAML line and
// column, or protobuf's message (e.g. for an unknown field).
Result<envoy::config::bootstrap::v3::Bootstrap> loadBootstrapYaml(std::string_view yaml);

// A file: JSON when the name ends in ".json", YAML otherwise.
Result<envoy::config::bootstrap::v3::Bootstrap> loadBootstrapFile(const std::string& path);

// The JSON text that loadBootstrapYaml hands to protobuf (exposed for tests
// and for the xDS client's YAML test fixtures).
Result<std::string> yamlToJson(std::string_view yaml);

}  // namespace skiff::xds
