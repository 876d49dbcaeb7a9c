// The HTTP filters skiff can build, by the type URL of their typed_config.
// Envoy finds an extension by the type of its typed_config, not by its name;
// so does skiff. A type URL that is not registered is a config error.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "filters/filter.h"
#include "proxy/common/status.h"

namespace google::protobuf {
class Any;
}

namespace skiff::filters {

// Makes a factory from a filter's typed_config. path names the typed_config
// in errors, e.g. "static_resources.listeners[0]...http_filters[1].typed_config";
// an error names the offending field under it.
using HttpFilterFactoryCreate = std::function<Result<std::shared_ptr<const HttpFilterFactory>>(
    const google::protobuf::Any& typed_config, const std::string& path)>;

// The lookups are inline so that code that builds its own registry (tests,
// embedders) does not link the built-in filters, which need the whole runtime.
class FilterRegistry {
 public:
  // The filters built into skiff: envoy.filters.http.router.
  static const FilterRegistry& builtin();

  // The creator for a type URL ("type.googleapis.com/<message full name>"),
  // or nullptr.
  const HttpFilterFactoryCreate* findHttpFilter(std::string_view type_url) const {
    auto it = http_filters_.find(type_url);
    return it == http_filters_.end() ? nullptr : &it->second;
  }

  // Adds (or replaces) the creator for a type URL.
  void registerHttpFilter(std::string type_url, HttpFilterFactoryCreate create) {
    http_filters_[std::move(type_url)] = std::move(create);
  }

  // Every registered type URL, sorted.
  std::vector<std::string> httpFilterTypeUrls() const {
    std::vector<std::string> urls;
    urls.reserve(http_filters_.size());
    for (const auto& entry : http_filters_) {
      urls.push_back(entry.first);
    }
    return urls;
  }

 private:
  std::map<std::string, HttpFilterFactoryCreate, std::less<>> http_filters_;
};

}  // namespace skiff::filters
