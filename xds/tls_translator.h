// Envoy's TLS transport socket protos (envoy.transport_sockets.tls:
// DownstreamTlsContext on a filter chain, UpstreamTlsContext on a cluster) ->
// skiff's tls::TlsContextConfig.
//
// Every field skiff doesn't implement is refused by its path ("<path>.field:
// not supported yet"), never ignored; all errors are reported at once, one
// per line. Files named in the config are not read here: TlsContext::create
// reads them (and reports unreadable ones), so the make* helpers are what a
// listener or cluster translation calls.
#pragma once

#include <memory>
#include <string>

#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"
#include "proxy/common/status.h"
#include "proxy/net/tls/tls_context.h"

namespace skiff::xds {

// path names the message, e.g.
// "static_resources.listeners[0].filter_chains[1].transport_socket.typed_config".
Result<tls::TlsContextConfig> translateDownstreamTlsContext(
    const envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext& context,
    const std::string& path);
Result<tls::TlsContextConfig> translateUpstreamTlsContext(
    const envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext& context,
    const std::string& path);

// Translate, then build the TlsContext (reads the certificate files); an
// error from building is prefixed with path.
Result<std::shared_ptr<tls::TlsContext>> makeDownstreamTlsContext(
    const envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext& context,
    const std::string& path);
Result<std::shared_ptr<tls::TlsContext>> makeUpstreamTlsContext(
    const envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext& context,
    const std::string& path);

}  // namespace skiff::xds
