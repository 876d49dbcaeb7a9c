#include "proxy/upstream/hash_lb.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "proxy/common/hash.h"

namespace skiff::upstream {

namespace {

// Weights normalized to sum 1, with the smallest and largest.
std::vector<double> normalize(std::span<const uint32_t> weights, double& min_w, double& max_w) {
  uint64_t sum = 0;
  for (uint32_t w : weights) sum += std::max<uint32_t>(w, 1);
  std::vector<double> out;
  out.reserve(weights.size());
  min_w = 1.0;
  max_w = 0.0;
  for (uint32_t w : weights) {
    const double n = static_cast<double>(std::max<uint32_t>(w, 1)) / static_cast<double>(sum);
    out.push_back(n);
    min_w = std::min(min_w, n);
    max_w = std::max(max_w, n);
  }
  return out;
}

}  // namespace

void RingHashTable::build(std::span<const std::string> keys, std::span<const uint32_t> weights,
                          uint64_t minimum_size, uint64_t maximum_size) {
  ring_.clear();
  min_per_host_ = max_per_host_ = 0;
  if (keys.empty()) return;
  double min_w = 1.0;
  double max_w = 0.0;
  const std::vector<double> normalized = normalize(weights, min_w, max_w);
  const double scale = std::min(std::ceil(min_w * static_cast<double>(minimum_size)) / min_w,
                                static_cast<double>(maximum_size));
  ring_.reserve(static_cast<size_t>(std::ceil(scale)));
  // Running sums, so that fractional shares add up across hosts instead of
  // each host rounding on its own.
  double current = 0.0;
  double target = 0.0;
  min_per_host_ = UINT64_MAX;
  std::string key;
  for (size_t i = 0; i < keys.size(); ++i) {
    key = keys[i];
    key += '_';
    const size_t prefix = key.size();
    target += scale * normalized[i];
    uint64_t n = 0;
    while (current < target) {
      key.resize(prefix);
      key += std::to_string(n);
      ring_.push_back({xxHash64(key), static_cast<uint32_t>(i)});
      ++n;
      current += 1.0;
    }
    min_per_host_ = std::min(min_per_host_, n);
    max_per_host_ = std::max(max_per_host_, n);
  }
  std::sort(ring_.begin(), ring_.end(),
            [](const Point& a, const Point& b) { return a.hash < b.hash; });
}

uint32_t RingHashTable::pick(uint64_t hash, uint32_t attempt) const {
  // The first point at or after hash, wrapping past the last to the first.
  auto it = std::lower_bound(ring_.begin(), ring_.end(), hash,
                             [](const Point& p, uint64_t h) { return p.hash < h; });
  size_t i = it == ring_.end() ? 0 : static_cast<size_t>(it - ring_.begin());
  if (attempt > 0) i = (i + attempt) % ring_.size();
  return ring_[i].host;
}

void MaglevTable::build(std::span<const std::string> keys, std::span<const uint32_t> weights,
                        uint64_t table_size) {
  table_.clear();
  table_.shrink_to_fit();
  size_ = 0;
  min_per_host_ = max_per_host_ = 0;
  if (keys.empty() || table_size < 2) return;
  double min_w = 1.0;
  double max_w = 0.0;
  const std::vector<double> normalized = normalize(weights, min_w, max_w);
  struct Builder {
    uint32_t host;
    uint64_t offset;
    uint64_t skip;
    double weight;
    double target = 0.0;  // Takes a turn in a round once round * weight reaches it.
    uint64_t next = 0;    // Position in its permutation.
    uint64_t count = 0;   // Slots taken.
  };
  std::vector<uint32_t> order(keys.size());
  std::iota(order.begin(), order.end(), 0u);
  std::sort(order.begin(), order.end(),
            [&](uint32_t a, uint32_t b) { return keys[a] != keys[b] ? keys[a] < keys[b] : a < b; });
  std::vector<Builder> builders;
  builders.reserve(keys.size());
  for (uint32_t i : order) {
    builders.push_back({.host = i,
                        .offset = xxHash64(keys[i]) % table_size,
                        .skip = xxHash64(keys[i], 1) % (table_size - 1) + 1,
                        .weight = normalized[i]});
  }
  constexpr uint32_t kEmpty = UINT32_MAX;
  std::vector<uint32_t> table(table_size, kEmpty);
  uint64_t filled = 0;
  for (uint64_t round = 1; filled < table_size; ++round) {
    for (Builder& b : builders) {
      if (filled == table_size) break;
      if (static_cast<double>(round) * b.weight < b.target) continue;
      b.target += max_w;
      uint64_t slot = (b.offset + b.skip * b.next) % table_size;
      while (table[slot] != kEmpty) {
        ++b.next;
        slot = (b.offset + b.skip * b.next) % table_size;
      }
      table[slot] = b.host;
      ++b.next;
      ++b.count;
      ++filled;
    }
  }
  min_per_host_ = table_size;
  for (const Builder& b : builders) {
    min_per_host_ = std::min(min_per_host_, b.count);
    max_per_host_ = std::max(max_per_host_, b.count);
  }
  width_ = keys.size() <= 0x100 ? 1 : keys.size() <= 0x10000 ? 2 : 4;
  size_ = table_size;
  table_.resize(size_ * width_);
  for (size_t i = 0; i < size_; ++i) {
    const uint32_t host = table[i];
    if (width_ == 1) {
      table_[i] = static_cast<uint8_t>(host);
    } else if (width_ == 2) {
      const uint16_t narrow = static_cast<uint16_t>(host);
      std::memcpy(&table_[i * 2], &narrow, 2);
    } else {
      std::memcpy(&table_[i * 4], &host, 4);
    }
  }
}

uint32_t MaglevTable::pick(uint64_t hash, uint32_t attempt) const {
  // A retry flips most of the hash's bits, by an amount that differs per attempt.
  if (attempt > 0) hash ^= ~0ULL - attempt + 1;
  const size_t i = hash % size_;
  if (width_ == 1) return table_[i];
  if (width_ == 2) {
    uint16_t narrow;
    std::memcpy(&narrow, &table_[i * 2], 2);
    return narrow;
  }
  uint32_t wide;
  std::memcpy(&wide, &table_[i * 4], 4);
  return wide;
}

}  // namespace skiff::upstream
