// The consistent hashing load balancers, RING_HASH and MAGLEV, as Envoy builds
// them: a request's hash (router::HashPolicy) picks a host, the same hash the
// same host, and a host that leaves moves only its own keys. Both are tables
// built when the host set changes (never per request) from each host's
// address ("ip:port", Envoy's key) and weight; a pick is a binary search
// (ring) or an index (maglev). They hold host indexes, so they know nothing of
// pools or connections and are tested alone (test/unit/upstream/hash_lb_test.cc).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace skiff::upstream {

// Ketama-style ring: each host owns points on a 64-bit circle, in number
// proportional to its weight; a hash goes to the first point at or after it.
class RingHashTable {
 public:
  // Envoy's layout: scale = min(ceil(min_weight * minimum_size) / min_weight,
  // maximum_size) with weights normalized to sum 1; host i gets points
  // xxHash64("<key>_<n>") while a running count stays below its running
  // share, so the lightest host has a whole number of points. An empty keys
  // gives an empty ring.
  void build(std::span<const std::string> keys, std::span<const uint32_t> weights,
             uint64_t minimum_size, uint64_t maximum_size);
  bool empty() const { return ring_.empty(); }
  size_t size() const { return ring_.size(); }
  // The host index for hash (the ring must not be empty). attempt > 0 (a
  // retry that wants another host): that many points further on, as Envoy.
  uint32_t pick(uint64_t hash, uint32_t attempt = 0) const;
  // Points per host, fewest and most (Envoy's ring_hash_lb gauges).
  uint64_t minPointsPerHost() const { return min_per_host_; }
  uint64_t maxPointsPerHost() const { return max_per_host_; }

 private:
  struct Point {
    uint64_t hash;
    uint32_t host;
  };
  std::vector<Point> ring_;
  uint64_t min_per_host_ = 0;
  uint64_t max_per_host_ = 0;
};

// Maglev (Eisenbud et al., NSDI 2016): a prime-sized table filled by each
// host in turn from its own permutation of the slots (offset and skip from
// the hashes of its key with seeds 0 and 1), a host of weight w taking a turn
// in w / max_weight of the rounds; a hash picks slot hash % size.
class MaglevTable {
 public:
  // table_size must be prime. Hosts fill the table in the order of their
  // keys, so the table does not depend on the order of the host list.
  void build(std::span<const std::string> keys, std::span<const uint32_t> weights,
             uint64_t table_size);
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  // Bytes per entry: 1 up to 256 hosts, 2 up to 65536, else 4.
  size_t entryBytes() const { return width_; }
  // The host index for hash (the table must not be empty). attempt > 0: the
  // hash is changed first, as Envoy does for a retry that wants another host.
  uint32_t pick(uint64_t hash, uint32_t attempt = 0) const;
  uint64_t minEntriesPerHost() const { return min_per_host_; }
  uint64_t maxEntriesPerHost() const { return max_per_host_; }

 private:
  // Host indexes, width_ bytes each: every worker holds a table per maglev
  // cluster, so the default 65537 entries take 64 KiB for up to 256 hosts
  // instead of 256 KiB.
  std::vector<uint8_t> table_;
  size_t size_ = 0;
  uint8_t width_ = 1;
  uint64_t min_per_host_ = 0;
  uint64_t max_per_host_ = 0;
};

}  // namespace skiff::upstream
