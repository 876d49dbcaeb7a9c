// Which Envoy API fields skiff implements. A field that is set in a config
// but that skiff does not implement is never silently ignored (DESIGN.md): it
// is named by its path and the config is refused (or, over xDS, NACKed with
// the same text as error_detail).
//
// The check is a table of supported field names per message full name, walked
// generically with protobuf reflection. Nested messages are checked only
// under supported fields, so one unsupported field gives one line. A
// google.protobuf.Any is unpacked through the generated descriptor pool and
// walked as its packed type; a type URL that skiff doesn't implement is
// refused at the Any's path.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

namespace google::protobuf {
class Message;
}

namespace skiff::xds {

// Every set field of msg (and of messages under supported fields) that skiff
// doesn't implement, as "path: reason" lines in field order, e.g.
//   "static_resources.clusters[1].lb_policy: LOAD_BALANCING_POLICY_CONFIG is not supported yet"
//   "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.tracing: not supported
//   yet"
// root_path prefixes every path ("" for a Bootstrap).
std::vector<std::string> findUnsupportedFields(const google::protobuf::Message& msg,
                                               const std::string& root_path = "");

// The supported fields of one message type (full name), or nullptr when skiff
// implements none of its fields. For documentation and tests.
const std::set<std::string>* supportedFields(const std::string& message_full_name);

// The whole table: message full name -> supported field names; and
// "<message full name>.<field>" -> supported enum value names (an enum field
// that is absent accepts every value).
const std::map<std::string, std::set<std::string>>& supportedFieldTable();
const std::map<std::string, std::set<std::string>>& supportedEnumValueTable();

// Whether a message type is accepted whole, with any content
// (google.protobuf.Duration, Struct, wrappers, envoy.config.core.v3.Locality).
bool isOpaqueAllowed(const std::string& message_full_name);

// Whether a google.protobuf.Any may carry this message type (full name).
bool isSupportedAnyType(const std::string& message_full_name);

}  // namespace skiff::xds
