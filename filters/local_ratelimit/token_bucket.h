// A token bucket that every worker shares without a lock: its whole state is
// one atomic double, the time (in seconds) at which the bucket was last
// empty. The tokens at `now` are (now - that time) * rate, at most max; taking
// one moves that time forward by 1 / rate with a compare-and-swap. The bucket
// refills continuously, at tokens_per_fill per fill_interval, and lazily:
// only a request that takes a token reads the clock it is handed, so a
// configured bucket costs no timer. It starts full.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace skiff::filters {

class AtomicTokenBucket {
 public:
  // now_s: the clock the bucket is used with (seconds), at creation.
  AtomicTokenBucket(uint32_t max_tokens, uint32_t tokens_per_fill,
                    std::chrono::milliseconds fill_interval, double now_s);

  // Takes one token if there is one.
  bool consume(double now_s);
  // Whole tokens left now.
  uint32_t remaining(double now_s) const;
  // Seconds until the next token arrives (0 when one is there), rounded up.
  uint64_t secondsToNextToken(double now_s) const;
  uint32_t maxTokens() const { return max_tokens_; }

 private:
  double tokensAt(double empty_at, double now_s) const;

  const uint32_t max_tokens_;
  const double rate_;  // Tokens per second.
  std::atomic<double> empty_at_;
};

}  // namespace skiff::filters
