// xxHash64, the hash Envoy uses for its hash policies and its consistent
// hashing load balancers (RING_HASH, MAGLEV), from Debian's libxxhash-dev. Using
// the same function makes skiff place hosts on a ring, and keys on hosts, as
// Envoy does for the same addresses and keys.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace skiff {

// XXH64 of bytes with seed.
uint64_t xxHash64(std::string_view bytes, uint64_t seed = 0);
// XXH64 of the parts one after the other, as if concatenated (Envoy's hash of a
// header's several values).
uint64_t xxHash64(std::span<const std::string_view> parts, uint64_t seed = 0);

}  // namespace skiff
