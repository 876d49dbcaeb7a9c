// Envoy protos -> skiff's config snapshot (proxy/config/config.h). A static
// bootstrap and, later, xDS resources go through this one translator, so a
// Listener from a file and one from a control plane become the same data.
//
// Every error names the field by its path and says why, one error per line;
// all errors found are reported at once, not just the first.
#pragma once

#include <memory>
#include <set>
#include <string>

#include "envoy/config/bootstrap/v3/bootstrap.pb.h"
#include "filters/registry.h"
#include "proxy/common/status.h"
#include "proxy/config/config.h"

namespace skiff::xds {

// The whole bootstrap: runs findUnsupportedFields first (and stops there if
// it finds any), then translates node, admin, static listeners and clusters,
// and checks names across them (duplicates, routes to missing clusters,
// listeners on one address). HTTP filters come from registry.
Result<std::shared_ptr<const config::Snapshot>> translateBootstrap(
    const envoy::config::bootstrap::v3::Bootstrap& bootstrap,
    const filters::FilterRegistry& registry = filters::FilterRegistry::builtin());

// One cluster, path naming it (e.g. "static_resources.clusters[2]"). Does not
// run findUnsupportedFields; the caller does, on the whole resource.
Result<std::shared_ptr<const config::ClusterConfig>> translateCluster(
    const envoy::config::cluster::v3::Cluster& cluster, const std::string& path);

// One listener. When known_clusters is not null, every cluster that a route
// names must be in it (Envoy's validate_clusters, on unless the route
// configuration sets it false). Does not run findUnsupportedFields.
Result<std::shared_ptr<const config::ListenerConfig>> translateListener(
    const envoy::config::listener::v3::Listener& listener, const std::string& path,
    const std::set<std::string>* known_clusters,
    const filters::FilterRegistry& registry = filters::FilterRegistry::builtin());

// A RouteConfiguration from RDS. Its cluster names are checked against
// known_clusters only when it sets validate_clusters (Envoy's RDS default is
// not to). typed_per_filter_config entries are made by the filters of
// registry. Does not run findUnsupportedFields.
Result<std::shared_ptr<const router::RouteTable>> translateRouteConfiguration(
    const envoy::config::route::v3::RouteConfiguration& routes, const std::string& path,
    const std::set<std::string>& known_clusters,
    const filters::FilterRegistry& registry = filters::FilterRegistry::builtin());

// Makes typed_per_filter_config entries with registry's filters, as Envoy
// does: by the type of each entry's config. A type no filter has, or a
// filter that takes no per-route configuration, is refused unless the entry
// is a FilterConfig with is_optional (then it is dropped). The entry's name
// is not checked against any filter chain: a route configuration (RDS) is
// shared by connection managers with different chains, and a filter reads
// only the entries under its own name.
router::PerFilterConfigParser perFilterConfigParser(const filters::FilterRegistry& registry);

// A ClusterLoadAssignment from EDS: its endpoints (IP addresses). Does not
// run findUnsupportedFields.
Result<std::vector<config::ClusterConfig::Endpoint>> translateClusterLoadAssignment(
    const envoy::config::endpoint::v3::ClusterLoadAssignment& cla, const std::string& path);

// A hash of a resource's deterministic encoding: two resources with equal
// hashes are the same resource, and need no new translation.
uint64_t hashResource(const google::protobuf::Message& message);

}  // namespace skiff::xds
