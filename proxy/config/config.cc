#include "proxy/config/config.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>

namespace skiff::config {

namespace {

// How specifically a chain names server_name: -1 it excludes it (it names
// others), 0 it names none, else the more the better: an exact name beats
// the longest "*.suffix".
int64_t serverNameScore(const FilterChainConfig& chain, std::string_view server_name) {
  if (chain.server_names.empty()) return 0;
  int64_t best = -1;
  for (const std::string& name : chain.server_names) {
    if (name.starts_with("*.")) {
      std::string_view suffix = std::string_view(name).substr(1);  // ".example.com"
      if (server_name.size() > suffix.size() &&
          equalsIgnoreCase(server_name.substr(server_name.size() - suffix.size()), suffix)) {
        best = std::max<int64_t>(best, static_cast<int64_t>(suffix.size()));
      }
    } else if (!server_name.empty() && equalsIgnoreCase(name, server_name)) {
      return int64_t{1} << 32;
    }
  }
  return best;
}

uint32_t portOf(const sockaddr* a) {
  if (a == nullptr) return 0;
  if (a->sa_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(a)->sin_port);
  if (a->sa_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(a)->sin6_port);
  return 0;
}

http::IpAddress ipOf(const sockaddr* a) {
  http::IpAddress ip;
  if (a != nullptr && a->sa_family == AF_INET) {
    std::memcpy(ip.bytes.data(), &reinterpret_cast<const sockaddr_in*>(a)->sin_addr, 4);
  } else if (a != nullptr && a->sa_family == AF_INET6) {
    ip.v6 = true;
    std::memcpy(ip.bytes.data(), &reinterpret_cast<const sockaddr_in6*>(a)->sin6_addr, 16);
  }
  return ip;
}

// The longest range of ranges that holds ip, plus one; 0 when ranges is
// empty (any address); -1 when none holds it.
int64_t prefixScore(const std::vector<http::CidrRange>& ranges, const http::IpAddress& ip) {
  if (ranges.empty()) return 0;
  int64_t best = -1;
  for (const http::CidrRange& r : ranges) {
    if (r.contains(ip)) best = std::max<int64_t>(best, r.prefix_len + 1);
  }
  return best;
}

// How specifically a chain names one of the protocols a ClientHello offers:
// 0 it names none, -1 it names only others, else the earlier the offered
// protocol the higher (Envoy looks them up in the client's order).
int64_t applicationProtocolScore(const FilterChainConfig& chain,
                                 std::span<const std::string_view> offered) {
  if (chain.application_protocols.empty()) return 0;
  for (size_t i = 0; i < offered.size(); ++i) {
    if (std::find(chain.application_protocols.begin(), chain.application_protocols.end(),
                  offered[i]) != chain.application_protocols.end()) {
      return static_cast<int64_t>(offered.size() - i);
    }
  }
  return -1;
}

// source_type: Envoy's "same IP or loopback" is a peer on a loopback address
// or on the connection's local IP.
bool sameIpOrLoopback(const http::IpAddress& peer, const http::IpAddress& local) {
  static const http::CidrRange kLoopback4 = *http::parseCidrRange("127.0.0.0", 8);
  static const http::CidrRange kLoopback6 = *http::parseCidrRange("::1", 128);
  return kLoopback4.contains(peer) || kLoopback6.contains(peer) ||
         (peer.v6 == local.v6 && peer.bytes == local.bytes);
}

// Keeps the chains with the highest positive score or, if none has one,
// those scoring 0 (the field left unset).
template <typename Score>
void narrow(std::vector<const FilterChainConfig*>& chains, Score score) {
  int64_t best = 0;
  std::vector<int64_t> scores(chains.size());
  for (size_t i = 0; i < chains.size(); ++i) {
    scores[i] = score(*chains[i]);
    best = std::max(best, scores[i]);
  }
  size_t kept = 0;
  for (size_t i = 0; i < chains.size(); ++i) {
    if (scores[i] == best) chains[kept++] = chains[i];
  }
  chains.resize(kept);
}

}  // namespace

const FilterChainConfig* ListenerConfig::selectFilterChain(const ConnectionInfo& c) const {
  if (!match_local_address && !match_peer_address && !match_transport &&
      !match_application_protocols) {
    // By server name alone (every TLS listener): no list to build.
    const FilterChainConfig* best = nullptr;
    int64_t best_score = -1;
    for (const auto& chain : filter_chains) {
      int64_t score = serverNameScore(*chain, c.server_name);
      if (score > best_score) {
        best = chain.get();
        best_score = score;
      }
    }
    return best ? best : default_filter_chain.get();
  }
  std::vector<const FilterChainConfig*> chains;
  chains.reserve(filter_chains.size());
  for (const auto& chain : filter_chains) chains.push_back(chain.get());
  const uint32_t local_port = portOf(c.local);
  const http::IpAddress local_ip = ipOf(c.local);
  const uint32_t peer_port = portOf(c.peer);
  const http::IpAddress peer_ip = ipOf(c.peer);
  narrow(chains, [&](const FilterChainConfig& f) -> int64_t {
    if (f.destination_port == 0) return 0;
    return f.destination_port == local_port ? 1 : -1;
  });
  narrow(chains,
         [&](const FilterChainConfig& f) { return prefixScore(f.prefix_ranges, local_ip); });
  narrow(chains, [&](const FilterChainConfig& f) { return serverNameScore(f, c.server_name); });
  narrow(chains, [&](const FilterChainConfig& f) -> int64_t {
    if (f.transport_protocol == FilterChainConfig::Transport::kAny) return 0;
    return f.transport_protocol == c.transport ? 1 : -1;
  });
  narrow(chains, [&](const FilterChainConfig& f) {
    return applicationProtocolScore(f, c.application_protocols);
  });
  narrow(chains, [&](const FilterChainConfig& f) {
    return prefixScore(f.direct_source_prefix_ranges, peer_ip);
  });
  narrow(chains, [&](const FilterChainConfig& f) -> int64_t {
    using SourceType = FilterChainConfig::SourceType;
    if (f.source_type == SourceType::kAny) return 0;
    bool local = c.peer != nullptr && sameIpOrLoopback(peer_ip, local_ip);
    return local == (f.source_type == SourceType::kSameIpOrLoopback) ? 1 : -1;
  });
  narrow(chains,
         [&](const FilterChainConfig& f) { return prefixScore(f.source_prefix_ranges, peer_ip); });
  narrow(chains, [&](const FilterChainConfig& f) -> int64_t {
    if (f.source_ports.empty()) return 0;
    return std::find(f.source_ports.begin(), f.source_ports.end(), peer_port) !=
                   f.source_ports.end()
               ? 1
               : -1;
  });
  // The translator refuses two chains with the same match, so at most one
  // is left.
  return chains.empty() ? default_filter_chain.get() : chains.front();
}

}  // namespace skiff::config
