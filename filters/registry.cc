#include "filters/registry.h"

#include <google/protobuf/any.pb.h>

#include "envoy/extensions/filters/http/router/v3/router.pb.h"
#include "filters/cors/cors.h"
#include "filters/fault/fault.h"
#include "filters/health_check/health_check.h"
#include "filters/local_ratelimit/local_ratelimit.h"
#include "filters/rbac/rbac.h"
#include "filters/router/router.h"

namespace skiff::filters {
namespace {

// envoy.filters.http.router. Of the Router message's fields only
// suppress_envoy_headers is implemented; any other that is set is refused by
// path. An empty Router is the usual config.
Result<std::shared_ptr<const HttpFilterFactory>> createRouter(
    const google::protobuf::Any& typed_config, const FilterFactoryContext& context) {
  const std::string& path = context.path;
  envoy::extensions::filters::http::router::v3::Router router;
  if (!typed_config.UnpackTo(&router)) {
    return configError(path + ": could not be decoded as " + router.GetTypeName());
  }
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  router.GetReflection()->ListFields(router, &fields);
  std::string errors;
  for (const auto* field : fields) {
    if (field->name() == "suppress_envoy_headers") continue;
    errors += (errors.empty() ? "" : "\n") + path + "." + field->name() + ": not supported yet";
  }
  if (!errors.empty()) return configError(std::move(errors));
  return makeRouterFilterFactory(RouterConfig{router.suppress_envoy_headers()});
}

}  // namespace

const FilterRegistry& FilterRegistry::builtin() {
  static const FilterRegistry* registry = [] {
    auto* r = new FilterRegistry();
    r->registerHttpFilter(kRouterTypeUrl, createRouter);
    r->registerHttpFilter(kFaultTypeUrl, createFaultFilterFactory, createFaultPerRouteConfig);
    r->registerHttpFilter(kLocalRateLimitTypeUrl, createLocalRateLimitFilterFactory,
                          createLocalRateLimitPerRouteConfig);
    r->registerHttpFilter(kRbacTypeUrl, createRbacFilterFactory);
    r->registerPerRouteConfig(kRbacPerRouteTypeUrl, createRbacPerRouteConfig);
    r->registerHttpFilter(kHealthCheckTypeUrl, createHealthCheckFilterFactory);
    r->registerHttpFilter(kCorsTypeUrl, createCorsFilterFactory);
    r->registerPerRouteConfig(kCorsPolicyTypeUrl, createCorsPerRouteConfig);
    return r;
  }();
  return *registry;
}

}  // namespace skiff::filters
