#include "xds/bootstrap_loader.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

// GCC 12 at -O2 reports a false "dangling pointer to an unnamed temporary"
// inside yaml-cpp's inlined Node code (node/impl.h); the warning is emitted
// where the code is inlined, so it has to be off for this file.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#endif
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include "proxy/common/json.h"

namespace skiff::xds {
namespace {

using envoy::config::bootstrap::v3::Bootstrap;

// Thrown inside the converter only and caught at its edge: the conversion is
// recursive and any error ends it.
struct YamlError {
  std::string message;
};

std::string where(const YAML::Mark& mark) {
  if (mark.is_null()) {
    return "yaml";
  }
  return "yaml:" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
}

bool isNullWord(const std::string& s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

// A plain scalar as JSON by the YAML 1.2 core schema, or "" when it is a
// string.
std::string plainScalarJson(const std::string& s) {
  static const std::regex kDecimal("[-+]?[0-9]+");
  static const std::regex kOctal("0o[0-7]+");
  static const std::regex kHex("0x[0-9a-fA-F]+");
  static const std::regex kFloat("[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?");
  static const std::regex kInf("[-+]?\\.(inf|Inf|INF)");
  static const std::regex kNan("\\.(nan|NaN|NAN)");
  if (s == "true" || s == "True" || s == "TRUE") {
    return "true";
  }
  if (s == "false" || s == "False" || s == "FALSE") {
    return "false";
  }
  if (std::regex_match(s, kDecimal)) {
    // JSON has no '+' sign and no leading zeros; the digits are kept as
    // text so that 64-bit values survive.
    std::string sign = s[0] == '-' ? "-" : "";
    size_t i = (s[0] == '-' || s[0] == '+') ? 1 : 0;
    while (i + 1 < s.size() && s[i] == '0') {
      ++i;
    }
    std::string digits = s.substr(i);
    return digits == "0" ? "0" : sign + digits;
  }
  if (std::regex_match(s, kOctal) || std::regex_match(s, kHex)) {
    errno = 0;
    unsigned long long v = std::strtoull(s.c_str() + 2, nullptr, s[1] == 'o' ? 8 : 16);
    if (errno == ERANGE) {
      return "";
    }
    return std::to_string(v);
  }
  if (std::regex_match(s, kFloat)) {
    double v = std::strtod(s.c_str(), nullptr);
    if (!std::isfinite(v)) {
      return v > 0 ? "\"Infinity\"" : "\"-Infinity\"";
    }
    char buf[40];
    std::snprintf(buf, sizeof(buf), "%.17g", v);
    return buf;
  }
  if (std::regex_match(s, kInf)) {
    return s[0] == '-' ? "\"-Infinity\"" : "\"Infinity\"";
  }
  if (std::regex_match(s, kNan)) {
    return "\"NaN\"";
  }
  return "";
}

void toJson(const YAML::Node& node, std::string& out);

// The entries of a mapping with "<<" merge keys resolved: explicit keys win
// over merged ones, and earlier merge sources over later ones.
std::vector<std::pair<std::string, YAML::Node>> mapEntries(const YAML::Node& node) {
  std::vector<std::pair<std::string, YAML::Node>> entries;
  std::vector<YAML::Node> merges;
  std::set<std::string> seen;
  for (auto it = node.begin(); it != node.end(); ++it) {
    // Copies, not references: yaml-cpp's iterator hands out a temporary pair,
    // so a reference into it dangles after this statement (ASan finds it).
    const YAML::Node key = it->first;
    const YAML::Node value = it->second;
    if (!key.IsScalar()) {
      throw YamlError{where(key.Mark()) + ": a mapping key must be a scalar"};
    }
    const std::string name = key.Scalar();
    if (name == "<<" && key.Tag() == "?") {
      merges.push_back(value);
      continue;
    }
    if (!seen.insert(name).second) {
      throw YamlError{where(key.Mark()) + ": duplicate key '" + name + "'"};
    }
    entries.emplace_back(name, value);
  }
  auto merge = [&](const YAML::Node& source, const YAML::Node& at) {
    if (!source.IsMap()) {
      throw YamlError{where(at.Mark()) + ": a '<<' merge needs a mapping or a list of mappings"};
    }
    for (auto& [name, value] : mapEntries(source)) {
      if (seen.insert(name).second) {
        entries.emplace_back(name, value);
      }
    }
  };
  for (const YAML::Node& m : merges) {
    if (m.IsSequence()) {
      for (const YAML::Node& source : m) {
        merge(source, m);
      }
    } else {
      merge(m, m);
    }
  }
  return entries;
}

void toJson(const YAML::Node& node, std::string& out) {
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      out += "null";
      return;
    case YAML::NodeType::Scalar: {
      const std::string& s = node.Scalar();
      // "?" is the tag of a plain (unquoted) scalar; "!" of a quoted or
      // block one. An explicit tag (!!str, !!int) is taken at its word.
      const std::string& tag = node.Tag();
      if (tag == "?") {
        if (isNullWord(s)) {
          out += "null";
          return;
        }
        std::string json = plainScalarJson(s);
        if (!json.empty()) {
          out += json;
          return;
        }
      } else if (tag == "tag:yaml.org,2002:int" || tag == "tag:yaml.org,2002:float" ||
                 tag == "tag:yaml.org,2002:bool") {
        std::string json = plainScalarJson(s);
        if (json.empty()) {
          throw YamlError{where(node.Mark()) + ": '" + s + "' is not a valid " + tag.substr(18)};
        }
        out += json;
        return;
      } else if (tag == "tag:yaml.org,2002:null") {
        out += "null";
        return;
      }
      appendJsonString(out, s);
      return;
    }
    case YAML::NodeType::Sequence: {
      out += '[';
      bool first = true;
      for (const YAML::Node& item : node) {
        if (!first) {
          out += ',';
        }
        first = false;
        toJson(item, out);
      }
      out += ']';
      return;
    }
    case YAML::NodeType::Map: {
      out += '{';
      bool first = true;
      for (const auto& [name, value] : mapEntries(node)) {
        if (!first) {
          out += ',';
        }
        first = false;
        appendJsonString(out, name);
        out += ':';
        toJson(value, out);
      }
      out += '}';
      return;
    }
  }
}

// Collects, with its field path, every Any in v ("@type") whose type skiff's
// protos do not have: protobuf's JSON parser stops at the first with an error
// that names only the innermost Any (an Istio gRPC access logger's
// "access_log[0].typed_config"), and a user needs the whole path. Map keys
// (they hold dots) are written as ["key"], as the field checks write them.
void findUnknownTypes(const google::protobuf::Value& v, const std::string& path,
                      std::vector<std::string>& errors) {
  if (v.has_list_value()) {
    for (int i = 0; i < v.list_value().values_size(); ++i) {
      findUnknownTypes(v.list_value().values(i), path + "[" + std::to_string(i) + "]", errors);
    }
    return;
  }
  if (!v.has_struct_value()) return;
  const auto& fields = v.struct_value().fields();
  if (auto t = fields.find("@type"); t != fields.end() && t->second.has_string_value()) {
    const std::string& url = t->second.string_value();
    std::string name = url.substr(url.rfind('/') + 1);
    if (!google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(name)) {
      errors.push_back(path + ": unknown type URL '" + url + "'");
      return;  // What is inside it has no meaning to skiff.
    }
  }
  std::vector<std::string> keys;
  for (const auto& [k, _] : fields) keys.push_back(k);
  std::sort(keys.begin(), keys.end());  // Errors in a stable order.
  for (const std::string& k : keys) {
    if (k == "@type") continue;
    std::string at = k.find_first_of("./") == std::string::npos
                         ? (path.empty() ? k : path + "." + k)
                         : path + "[\"" + k + "\"]";
    findUnknownTypes(fields.at(k), at, errors);
  }
}

Result<Bootstrap> parseJson(const std::string& json) {
  Bootstrap bootstrap;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status = google::protobuf::util::JsonStringToMessage(json, &bootstrap, options);
  if (!status.ok()) {
    // Only on failure: a second parse, into a plain JSON tree, to name every
    // unknown typed_config by its path.
    google::protobuf::Value tree;
    std::vector<std::string> unknown;
    if (google::protobuf::util::JsonStringToMessage(json, &tree).ok()) {
      findUnknownTypes(tree, "", unknown);
    }
    if (!unknown.empty()) {
      std::string message;
      for (const std::string& e : unknown) message += (message.empty() ? "" : "\n") + e;
      return configError(std::move(message));
    }
    return configError("invalid bootstrap: " + std::string(status.message()));
  }
  return bootstrap;
}

}  // namespace

Result<std::string> yamlToJson(std::string_view yaml) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return configError(where(e.mark) + ": " + e.msg);
  }
  if (docs.size() > 1) {
    return configError("yaml: expected one document, found " + std::to_string(docs.size()));
  }
  if (docs.empty() || docs[0].IsNull()) {
    return std::string("{}");
  }
  if (!docs[0].IsMap()) {
    return configError(where(docs[0].Mark()) + ": the bootstrap must be a mapping");
  }
  std::string json;
  try {
    toJson(docs[0], json);
  } catch (const YamlError& e) {
    return configError(e.message);
  } catch (const YAML::Exception& e) {
    return configError(where(e.mark) + ": " + e.msg);
  }
  return json;
}

Result<Bootstrap> loadBootstrapYaml(std::string_view yaml) {
  auto json = yamlToJson(yaml);
  if (!json) {
    return json.status();
  }
  return parseJson(*json);
}

Result<Bootstrap> loadBootstrapFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return configError(path + ": cannot read: " + std::strerror(errno));
  }
  std::ostringstream text;
  text << in.rdbuf();
  const bool is_json = path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0;
  auto result = is_json ? parseJson(text.str()) : loadBootstrapYaml(text.str());
  if (!result) {
    return configError(path + ": " + result.status().message());
  }
  return result;
}

}  // namespace skiff::xds
