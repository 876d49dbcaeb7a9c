// Writing JSON strings by hand (admin output, /config_dump, YAML -> JSON):
// one escaper for every place that does it.
#pragma once

#include <string>
#include <string_view>

namespace skiff {

// Appends s as a JSON string literal: quoted, with '"', '\\' and control
// characters escaped.
void appendJsonString(std::string& out, std::string_view s);

// s as a JSON string literal, quotes included.
std::string jsonString(std::string_view s);

}  // namespace skiff
