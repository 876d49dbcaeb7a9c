// Counters and gauges with Envoy's names, one store per worker (DESIGN.md:
// share nothing on the request path). A worker is the only writer of its
// counters: an increment is a relaxed load and store, never a locked
// read-modify-write. The main thread reads every worker's store and adds them
// up for /stats.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

namespace skiff::stats {

class Counter {
 public:
  void inc(uint64_t n = 1) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

class Gauge {
 public:
  void inc() { add(1); }
  void dec() { add(-1); }
  void add(int64_t n) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void set(int64_t n) { v_.store(n, std::memory_order_relaxed); }
  int64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

// Named stats of one thread. Lookup by name happens when config is applied;
// the request path holds Counter& and never looks up.
class Store {
 public:
  Counter& counter(const std::string& name);
  Gauge& gauge(const std::string& name);

  // Adds this store's values into the given maps (called from the main thread).
  void collect(std::map<std::string, uint64_t>& counters,
               std::map<std::string, int64_t>& gauges) const;

 private:
  mutable std::mutex mu_;  // Guards the maps' shape (creation), not the values.
  std::map<std::string, Counter*, std::less<>> counters_;
  std::map<std::string, Gauge*, std::less<>> gauges_;
  std::deque<Counter> counter_storage_;  // deque: stable addresses.
  std::deque<Gauge> gauge_storage_;
};

// Renders merged stats as Envoy's admin /stats text (`name: value`, sorted)
// and as Prometheus text (envoy_ prefix, dots to underscores).
std::string renderText(const std::map<std::string, uint64_t>& counters,
                       const std::map<std::string, int64_t>& gauges);
std::string renderPrometheus(const std::map<std::string, uint64_t>& counters,
                             const std::map<std::string, int64_t>& gauges);

}  // namespace skiff::stats
