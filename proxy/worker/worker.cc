#include "proxy/worker/worker.h"

#include <algorithm>
#include <chrono>
#include <map>

#include "proxy/access_log/log_file.h"
#include "proxy/common/log.h"
#include "proxy/http/connection_manager.h"
#include "proxy/http/http2/http2_codec.h"
#include "proxy/net/connection.h"
#include "proxy/net/listener.h"
#include "proxy/upstream/cluster_manager.h"

namespace skiff {

Worker::Worker(uint32_t index, std::shared_ptr<const config::Snapshot> snapshot)
    : index_(index), snapshot_(std::move(snapshot)) {
  uv_loop_init(&loop_);
  uv_async_init(&loop_, &wakeup_,
                [](uv_async_t* a) { static_cast<Worker*>(a->data)->runMailbox(); });
  wakeup_.data = this;
  uv_prepare_init(&loop_, &prepare_);
  prepare_.data = this;
  uv_prepare_start(&prepare_, [](uv_prepare_t* p) { static_cast<Worker*>(p->data)->onPrepare(); });
  uv_timer_init(&loop_, &drain_timer_);
  drain_timer_.data = this;
  deadlines_ = std::make_unique<DeadlineQueue>(&loop_);
  rng_ = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
         (0x9e3779b97f4a7c15ULL * (index + 1));
  cluster_manager_ = std::make_unique<upstream::ClusterManager>(*this, snapshot_->clusters);
}

// shutdown() has closed the loop and everything on it by now (run() calls it
// for workers, the server for the main loop).
Worker::~Worker() = default;

void Worker::start(std::function<void(const std::string&)> ready, std::function<void()> done) {
  thread_ = std::thread([this, ready = std::move(ready), done = std::move(done)]() mutable {
    run(std::move(ready), std::move(done));
  });
}

void Worker::run(std::function<void(const std::string&)> ready, std::function<void()> done) {
  std::string error;
  installRouteTables(*snapshot_, nullptr);
  for (const auto& [name, listener] : snapshot_->listeners) {
    Status s = openListener(listener);
    if (!s) {
      error = s.message();
      break;
    }
  }
  ready(error);
  uv_run(&loop_, UV_RUN_DEFAULT);
  shutdown();
  done();
}

void Worker::runDeferred() {
  // HTTP/2 frames still waiting for their flush may read what these objects
  // own (HEADERS are serialized from the stream's header map where it lies,
  // see Http2Codec::submitHeaders): they leave first.
  http::Http2Codec::flushWaiting();
  while (!deferred_.empty()) {
    std::vector<std::unique_ptr<Deletable>> dead;
    dead.swap(deferred_);
  }
}

void Worker::spin(const std::function<bool()>& done) {
  // Bounded: each round is one non-blocking loop iteration; closes complete
  // within a couple of rounds.
  for (int round = 0; round < 10000; ++round) {
    int alive = uv_run(&loop_, UV_RUN_NOWAIT);
    runDeferred();
    if (done() || alive == 0) return;
  }
}

void Worker::shutdown() {
  stopping_ = true;
  for (auto& [name, l] : listeners_) l->close();
  listeners_.clear();
  // Connections still open when the drain time ran out close now; their
  // streams give their upstream connections back as they go.
  auto open = connections_;
  for (DownstreamConnection* c : open) c->close();
  spin([this] { return downstream_count_ == 0 && connections_.empty(); });
  // Then the pools: every upstream connection closes before the clusters
  // it points at are destroyed.
  cluster_manager_->retireAll();
  spin([this] { return cluster_manager_->connections() == 0; });
  cluster_manager_.reset();
  {
    std::lock_guard lock(closed_mu_);
    closed_ = true;
  }
  // Access log lines still buffered on this thread go to the writer.
  access_log::LogFile::closeThread();
  uv_close(reinterpret_cast<uv_handle_t*>(&wakeup_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&prepare_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&drain_timer_), nullptr);
  deadlines_->close();
  spin([] { return false; });
  runDeferred();
  uv_loop_close(&loop_);
}

void Worker::post(std::function<void()> fn) {
  std::lock_guard closed_lock(closed_mu_);
  if (closed_) return;  // The loop is gone; so is whatever fn would change.
  {
    std::lock_guard lock(mailbox_mu_);
    mailbox_.push_back(std::move(fn));
  }
  uv_async_send(&wakeup_);
}

void Worker::runMailbox() {
  std::vector<std::function<void()>> work;
  {
    std::lock_guard lock(mailbox_mu_);
    work.swap(mailbox_);
  }
  for (auto& fn : work) fn();
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::deferDelete(std::unique_ptr<Deletable> obj) { deferred_.push_back(std::move(obj)); }

void Worker::scheduleFlush(TcpConnection* conn) { flush_list_.push_back(conn); }

void Worker::cancelFlush(TcpConnection* conn) {
  std::replace(flush_list_.begin(), flush_list_.end(), conn, static_cast<TcpConnection*>(nullptr));
  std::replace(flushing_.begin(), flushing_.end(), conn, static_cast<TcpConnection*>(nullptr));
}

void Worker::cancel(Schedulable* item) {
  std::replace(scheduled_.begin(), scheduled_.end(), item, static_cast<Schedulable*>(nullptr));
  std::replace(running_.begin(), running_.end(), item, static_cast<Schedulable*>(nullptr));
}

void Worker::onPrepare() {
  // Scheduled work first, then the writes made during this iteration leave,
  // one syscall per connection. Each step may cause more, so loop until quiet.
  // Each batch is a member while it runs, so that cancelling an entry from a
  // callback of an earlier one reaches it (the vectors' capacity is kept).
  while (!scheduled_.empty() || !flush_list_.empty() || !deferred_.empty()) {
    running_.swap(scheduled_);
    for (size_t i = 0; i < running_.size(); ++i) {
      if (Schedulable* item = running_[i]) item->onScheduled();
    }
    running_.clear();
    // What HTTP/2 codecs queued since their last flush joins this round's
    // writes.
    http::Http2Codec::flushWaiting();
    flushing_.swap(flush_list_);
    for (size_t i = 0; i < flushing_.size(); ++i) {
      if (TcpConnection* c = flushing_[i]) c->onFlushScheduled();
    }
    flushing_.clear();
    runDeferred();
  }
  if (draining_) maybeStop();
}

void Worker::addConnection(DownstreamConnection& conn) {
  conn.drain_index_ = static_cast<uint32_t>(connections_.size());
  connections_.push_back(&conn);
}

void Worker::removeConnection(DownstreamConnection& conn) {
  size_t i = conn.drain_index_;
  if (i >= connections_.size() || connections_[i] != &conn) return;
  connections_[i] = connections_.back();
  connections_[i]->drain_index_ = static_cast<uint32_t>(i);
  connections_.pop_back();
}

// Filters, the connection manager and the listener keep per-worker state
// (their stats) in their configs; a worker makes its own when it takes a
// configuration, before any connection uses it.
void Worker::installFilters(const config::ListenerConfig& listener) {
  HttpConnectionManager::installOn(*this, listener);
  installListenerFilterStats(*this, listener);
  auto installChain = [this](const config::FilterChainConfig* chain) {
    if (chain == nullptr) return;
    for (const config::HttpFilterConfig& f : chain->http.http_filters) f.factory->installOn(*this);
    if (chain->http.route_table) chain->http.route_table->installOn(*this);
  };
  for (const auto& chain : listener.filter_chains) installChain(chain.get());
  installChain(listener.default_filter_chain.get());
}

void Worker::installRouteTables(const config::Snapshot& snapshot,
                                const std::vector<std::string>* names) {
  if (names == nullptr) {
    for (const auto& [name, table] : snapshot.route_tables) table->installOn(*this);
    return;
  }
  for (const std::string& name : *names) {
    if (const auto* table = snapshot.route_tables.get(name)) (*table)->installOn(*this);
  }
}

TcpListener* Worker::handOffTarget(const sockaddr_storage& dst) {
  for (bool exact : {true, false}) {
    for (const auto& [name, l] : listeners_) {
      if (l->takes(dst, exact)) return l.get();
    }
  }
  return nullptr;
}

Status Worker::openListener(std::shared_ptr<const config::ListenerConfig> config) {
  installFilters(*config);
  uint32_t port = config->address.port;
  auto l = std::make_unique<TcpListener>(*this, std::move(config), port);
  Status s = l->listen();
  if (s) listeners_[l->config().name] = std::move(l);
  return s;
}

// A snapshot that lists its changes against the one this worker holds costs
// what changed; any other is compared name by name.
void Worker::applySnapshot(std::shared_ptr<const config::Snapshot> next) {
  if (draining_) return;
  std::vector<std::string> listener_names;
  if (next->changed_since == snapshot_->generation && next->generation != snapshot_->generation) {
    cluster_manager_->update(next->clusters, next->changed_clusters);
    listener_names = next->changed_listeners;
    installRouteTables(*next, &next->changed_route_tables);
  } else {
    cluster_manager_->update(next->clusters);
    installRouteTables(*next, nullptr);
    for (const auto& [name, l] : listeners_) listener_names.push_back(name);
    for (const auto& [name, l] : next->listeners) listener_names.push_back(name);
  }
  for (const std::string& name : listener_names) {
    const auto* cfg = next->listeners.get(name);
    updateListener(name, cfg != nullptr ? *cfg : nullptr);
  }
  snapshot_ = std::move(next);
}

void Worker::updateListener(const std::string& name,
                            std::shared_ptr<const config::ListenerConfig> cfg) {
  auto it = listeners_.find(name);
  if (it != listeners_.end()) {
    TcpListener& current = *it->second;
    if (cfg.get() == &current.config()) return;
    if (cfg && cfg->address.address == current.config().address.address &&
        cfg->address.port == current.config().address.port) {
      // Same socket, new chains: new connections take the new config.
      installFilters(*cfg);
      current.setConfig(cfg);
      drainListener(name, cfg.get());
      return;
    }
    current.close();
    listeners_.erase(it);
    drainListener(name, nullptr);
  }
  if (!cfg || listeners_stopped_) return;
  Status s = openListener(std::move(cfg));
  if (!s) SKIFF_LOG(kError, "listener " + name + ": " + s.message());
}

void Worker::drainListener(const std::string& name, const config::ListenerConfig* next) {
  auto open = connections_;
  for (DownstreamConnection* c : open) {
    if (c->listenerConfig() == nullptr || c->listenerConfig()->name != name) continue;
    const config::FilterChainConfig* chain = c->filterChain();
    if (next != nullptr) {
      // Still choosing its chain: it will choose from the config it started with.
      if (chain == nullptr) continue;
      bool kept =
          std::any_of(next->filter_chains.begin(), next->filter_chains.end(),
                      [&](const auto& n) { return n->definition_hash == chain->definition_hash; });
      if (next->default_filter_chain &&
          next->default_filter_chain->definition_hash == chain->definition_hash) {
        kept = true;
      }
      if (kept) continue;
    }
    SKIFF_LOG(kDebug, "listener " + name + ": draining a connection (" +
                          (next == nullptr ? "listener gone" : "its filter chain changed") + ")");
    c->drain();
  }
}

std::shared_ptr<const router::RouteTable> Worker::routeTable(std::string_view name) const {
  const auto* table = snapshot_->route_tables.get(name);
  return table == nullptr ? nullptr : *table;
}

void Worker::removeDownstream() {
  if (downstream_count_ > 0) --downstream_count_;
}

void Worker::drain(uint64_t deadline_ms) {
  if (draining_) return;
  draining_ = true;
  for (auto& [name, l] : listeners_) l->close();
  auto open = connections_;
  for (DownstreamConnection* c : open) c->drain();
  uv_timer_start(
      &drain_timer_,
      [](uv_timer_t* t) {
        auto* self = static_cast<Worker*>(t->data);
        self->stopping_ = true;
        uv_stop(&self->loop_);
      },
      deadline_ms, 0);
  maybeStop();
}

void Worker::stopListeners() {
  listeners_stopped_ = true;
  for (auto& [name, l] : listeners_) l->close();
  listeners_.clear();
  auto open = connections_;
  for (DownstreamConnection* c : open) c->drain();
}

void Worker::maybeStop() {
  if (stopping_ || downstream_count_ > 0) return;
  stopping_ = true;
  uv_stop(&loop_);
}

void Worker::setRestoredLocalAddress(const DownstreamConnection& conn,
                                     const sockaddr_storage* addr) {
  if (addr) {
    restored_local_[&conn] = *addr;
  } else {
    restored_local_.erase(&conn);
  }
}

const sockaddr* Worker::restoredLocalAddress(const DownstreamConnection& conn) const {
  auto it = restored_local_.find(&conn);
  return it == restored_local_.end() ? nullptr : reinterpret_cast<const sockaddr*>(&it->second);
}

uint64_t Worker::random() {
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  return rng_;
}

}  // namespace skiff
