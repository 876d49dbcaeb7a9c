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
#include "proxy/router/route_table.h"

namespace google::protobuf {
class Any;
}

namespace skiff::filters {

// What a filter's factory is made with besides its typed_config.
struct FilterFactoryContext {
  // Names the typed_config in errors, e.g.
  // "static_resources.listeners[0]...http_filters[1].typed_config"; an error
  // names the offending field under it.
  const std::string& path;
  // The filter's name in http_filters: routes' typed_per_filter_config
  // entries for it are keyed by this name.
  const std::string& filter_name;
  // The connection manager's stat_prefix (its stats are http.<stat_prefix>.*).
  const std::string& stat_prefix;
};

// Makes a factory from a filter's typed_config.
using HttpFilterFactoryCreate = std::function<Result<std::shared_ptr<const HttpFilterFactory>>(
    const google::protobuf::Any& typed_config, const FilterFactoryContext& context)>;

// Makes a filter's per-route configuration (typed_per_filter_config) from a
// message of the filter's own type; path names it in errors.
using PerRouteConfigCreate = std::function<Result<std::shared_ptr<const router::PerFilterConfig>>(
    const google::protobuf::Any& config, const std::string& path)>;

// The lookups are inline so that code that builds its own registry (tests,
// embedders) does not link the built-in filters, which need the whole runtime.
class FilterRegistry {
 public:
  // The filters built into skiff: envoy.filters.http.router, .fault,
  // .local_ratelimit, .rbac, .health_check and .cors.
  static const FilterRegistry& builtin();

  // The creator for a type URL ("type.googleapis.com/<message full name>"),
  // or nullptr.
  const HttpFilterFactoryCreate* findHttpFilter(std::string_view type_url) const {
    auto it = http_filters_.find(type_url);
    return it == http_filters_.end() ? nullptr : &it->second.create;
  }
  // The per-route creator for a filter's type URL: nullptr when no filter has
  // that type, or when that filter takes no per-route configuration.
  // A per-route message type of a filter's own (RBACPerRoute for RBAC) is
  // found here as well.
  const PerRouteConfigCreate* findPerRouteConfig(std::string_view type_url) const {
    auto it = http_filters_.find(type_url);
    if (it != http_filters_.end() && it->second.per_route) return &it->second.per_route;
    auto own = per_route_types_.find(type_url);
    return own == per_route_types_.end() ? nullptr : &own->second;
  }

  // Adds (or replaces) the creators for a type URL. per_route is empty for a
  // filter with no per-route configuration.
  void registerHttpFilter(std::string type_url, HttpFilterFactoryCreate create,
                          PerRouteConfigCreate per_route = {}) {
    http_filters_[std::move(type_url)] = {std::move(create), std::move(per_route)};
  }

  // Adds the creator for a per-route message type that differs from its
  // filter's typed_config type (Envoy's RBACPerRoute beside RBAC).
  void registerPerRouteConfig(std::string type_url, PerRouteConfigCreate create) {
    per_route_types_[std::move(type_url)] = std::move(create);
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
  struct Creators {
    HttpFilterFactoryCreate create;
    PerRouteConfigCreate per_route;
  };
  std::map<std::string, Creators, std::less<>> http_filters_;
  std::map<std::string, PerRouteConfigCreate, std::less<>> per_route_types_;
};

}  // namespace skiff::filters
