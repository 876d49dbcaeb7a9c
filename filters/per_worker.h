// State that a filter's configuration keeps per worker (its stats blocks),
// made when a worker installs that configuration (Worker::applySnapshot, a
// listener opening or taking new chains: HttpFilterFactory::installOn,
// router::PerFilterConfig::installOn, and HttpConnectionManager::installOn
// for the listener's, connection managers' and TCP proxies' own stats in
// proxy/config), so that the stats exist, at 0, from then on, as Envoy's do
// from config load. The request path finds its worker's state by the
// worker's index: an atomic load and an array read, no lookup and no lock.
//
// Workers are numbered from 0 (Worker::index()); the main loop runs no HTTP
// filter and installs nothing.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace skiff::filters {

template <class T>
class PerWorker {
 public:
  PerWorker() = default;
  // A copy starts empty: it belongs to another config (a listener copied to
  // carry the port it was bound to), which each worker installs when it
  // takes that config.
  PerWorker(const PerWorker& /*other*/) {}
  PerWorker& operator=(const PerWorker&) = delete;

  // Runs on worker `index`'s thread: makes its T with make() (which returns
  // a std::unique_ptr<T>) unless it has one. Workers install at once, each
  // on its own thread, so a new array is published for each (a few per
  // config, never per request); the old arrays stay until this dies, since a
  // worker may still be reading one.
  template <class Make>
  T& install(uint32_t index, Make&& make) const {
    if (T* t = find(index)) return *t;
    if (index >= kMaxWorkers) std::abort();  // Not a worker (the main loop's index).
    std::lock_guard lock(mu_);
    const Slots* current = slots_.load(std::memory_order_relaxed);
    auto next = std::make_unique<Slots>(current != nullptr ? *current : Slots{});
    if (next->size() <= index) next->resize(index + 1, nullptr);
    owned_.push_back(std::forward<Make>(make)());
    (*next)[index] = owned_.back().get();
    slots_.store(next.get(), std::memory_order_release);
    versions_.push_back(std::move(next));
    return *owned_.back();
  }

  // Worker `index`'s T, or null when that worker has not installed this.
  T* find(uint32_t index) const {
    const Slots* s = slots_.load(std::memory_order_acquire);
    return s != nullptr && index < s->size() ? (*s)[index] : nullptr;
  }

 private:
  using Slots = std::vector<T*>;
  static constexpr uint32_t kMaxWorkers = 1u << 16;

  mutable std::atomic<const Slots*> slots_{nullptr};  // The latest array.
  mutable std::mutex mu_;                             // Serialises install.
  mutable std::vector<std::unique_ptr<Slots>> versions_;
  mutable std::vector<std::unique_ptr<T>> owned_;
};

}  // namespace skiff::filters
