#include "proxy/common/hash.h"

// The functions inlined here, so that nothing needs linking: libxxhash-dev's
// header carries the whole implementation.
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace skiff {

uint64_t xxHash64(std::string_view bytes, uint64_t seed) {
  return XXH64(bytes.data(), bytes.size(), seed);
}

uint64_t xxHash64(std::span<const std::string_view> parts, uint64_t seed) {
  if (parts.size() == 1) return xxHash64(parts[0], seed);
  XXH64_state_t state;
  XXH64_reset(&state, seed);
  for (std::string_view p : parts) XXH64_update(&state, p.data(), p.size());
  return XXH64_digest(&state);
}

}  // namespace skiff
