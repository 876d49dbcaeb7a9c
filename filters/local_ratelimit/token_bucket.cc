#include "filters/local_ratelimit/token_bucket.h"

#include <algorithm>
#include <cmath>

namespace skiff::filters {

AtomicTokenBucket::AtomicTokenBucket(uint32_t max_tokens, uint32_t tokens_per_fill,
                                     std::chrono::milliseconds fill_interval, double now_s)
    : max_tokens_(max_tokens),
      rate_(static_cast<double>(tokens_per_fill) /
            (static_cast<double>(std::max<int64_t>(fill_interval.count(), 1)) / 1000.0)),
      empty_at_(now_s - static_cast<double>(max_tokens) / rate_) {}

double AtomicTokenBucket::tokensAt(double empty_at, double now_s) const {
  return std::min(static_cast<double>(max_tokens_), std::max(0.0, (now_s - empty_at) * rate_));
}

bool AtomicTokenBucket::consume(double now_s) {
  double empty_at = empty_at_.load(std::memory_order_relaxed);
  while (true) {
    const double tokens = tokensAt(empty_at, now_s);
    if (tokens < 1.0) return false;
    // The bucket with one token less: empty (tokens - 1) / rate ago.
    const double next = now_s - (tokens - 1.0) / rate_;
    if (empty_at_.compare_exchange_weak(empty_at, next, std::memory_order_relaxed)) return true;
  }
}

uint32_t AtomicTokenBucket::remaining(double now_s) const {
  return static_cast<uint32_t>(tokensAt(empty_at_.load(std::memory_order_relaxed), now_s));
}

uint64_t AtomicTokenBucket::secondsToNextToken(double now_s) const {
  const double tokens = tokensAt(empty_at_.load(std::memory_order_relaxed), now_s);
  if (tokens >= 1.0) return 0;
  return static_cast<uint64_t>(std::ceil((1.0 - tokens) / rate_));
}

}  // namespace skiff::filters
