#include "proxy/config/config.h"

namespace skiff::config {

const FilterChainConfig* ListenerConfig::selectFilterChain(std::string_view server_name) const {
  // Envoy's order: an exact server name, then the longest wildcard suffix,
  // then a chain that names no server; then the default chain.
  const FilterChainConfig* wildcard = nullptr;
  size_t wildcard_len = 0;
  const FilterChainConfig* any = nullptr;
  for (const auto& chain : filter_chains) {
    if (chain->server_names.empty()) {
      if (!any) any = chain.get();
      continue;
    }
    for (const std::string& name : chain->server_names) {
      if (name.starts_with("*.")) {
        std::string_view suffix = std::string_view(name).substr(1);  // ".example.com"
        if (server_name.size() > suffix.size() &&
            equalsIgnoreCase(server_name.substr(server_name.size() - suffix.size()), suffix) &&
            suffix.size() > wildcard_len) {
          wildcard = chain.get();
          wildcard_len = suffix.size();
        }
      } else if (!server_name.empty() && equalsIgnoreCase(name, server_name)) {
        return chain.get();
      }
    }
  }
  if (wildcard) return wildcard;
  if (any) return any;
  return default_filter_chain.get();
}

}  // namespace skiff::config
