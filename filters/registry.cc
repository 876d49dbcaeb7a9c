#include "filters/registry.h"

#include <google/protobuf/any.pb.h>

#include "envoy/extensions/filters/http/router/v3/router.pb.h"
#include "filters/router/router.h"

namespace skiff::filters {
namespace {

// envoy.filters.http.router. None of the Router message's fields is
// implemented yet, so any that is set is refused by path; an empty Router is
// the usual config.
Result<std::shared_ptr<const HttpFilterFactory>> createRouter(
    const google::protobuf::Any& typed_config, const std::string& path) {
  envoy::extensions::filters::http::router::v3::Router router;
  if (!typed_config.UnpackTo(&router)) {
    return configError(path + ": could not be decoded as " + router.GetTypeName());
  }
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  router.GetReflection()->ListFields(router, &fields);
  if (!fields.empty()) {
    std::string errors;
    for (const auto* field : fields) {
      errors += (errors.empty() ? "" : "\n") + path + "." + field->name() + ": not supported yet";
    }
    return configError(std::move(errors));
  }
  return makeRouterFilterFactory();
}

}  // namespace

const FilterRegistry& FilterRegistry::builtin() {
  static const FilterRegistry* registry = [] {
    auto* r = new FilterRegistry();
    r->registerHttpFilter(kRouterTypeUrl, createRouter);
    return r;
  }();
  return *registry;
}

}  // namespace skiff::filters
