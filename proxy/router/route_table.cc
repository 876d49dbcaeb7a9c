// Minimal first cut: prefix match + cluster. Filled in by the full compiler.
#include "proxy/router/route_table.h"

#include "envoy/config/route/v3/route.pb.h"

namespace skiff::router {

struct RouteEntry::Data {
  std::string prefix;
  std::string cluster;
};

struct RouteTable::Data {
  std::string name;
  std::vector<std::unique_ptr<RouteEntry>> routes;
};

RouteEntry::RouteEntry(std::unique_ptr<Data> data) : data_(std::move(data)) {}
RouteEntry::~RouteEntry() = default;

std::string_view RouteEntry::clusterName(const HeaderMap&, uint64_t) const {
  return data_->cluster;
}
void RouteEntry::finalizeRequestHeaders(HeaderMap&) const {}
void RouteEntry::finalizeResponseHeaders(HeaderMap&) const {}
std::string RouteEntry::redirectLocation(const HeaderMap&) const { return {}; }

void HeaderEdits::apply(HeaderMap& headers) const {
  for (const auto& r : remove) headers.remove(r);
  for (const auto& a : add) headers.addCopy(a.name, a.value);
}

RouteTable::RouteTable(std::unique_ptr<Data> data) : data_(std::move(data)) {}
RouteTable::~RouteTable() = default;

Result<std::shared_ptr<const RouteTable>> RouteTable::compile(
    const envoy::config::route::v3::RouteConfiguration& config, const std::string&) {
  auto data = std::make_unique<RouteTable::Data>();
  data->name = config.name();
  for (const auto& vh : config.virtual_hosts()) {
    for (const auto& r : vh.routes()) {
      auto d = std::make_unique<RouteEntry::Data>();
      d->prefix = r.match().prefix();
      d->cluster = r.route().cluster();
      data->routes.push_back(std::make_unique<RouteEntry>(std::move(d)));
    }
  }
  return std::shared_ptr<const RouteTable>(std::make_shared<RouteTable>(std::move(data)));
}

const RouteEntry* RouteTable::match(const HeaderMap& request, uint64_t) const {
  for (const auto& r : data_->routes) {
    if (request.path().starts_with(r->data_->prefix)) return r.get();
  }
  return nullptr;
}

const std::string& RouteTable::name() const { return data_->name; }

std::vector<std::string> RouteTable::referencedClusters() const {
  std::vector<std::string> out;
  for (const auto& r : data_->routes) out.push_back(r->data_->cluster);
  return out;
}

}  // namespace skiff::router
