// One event loop on one thread (DESIGN.md: per-core workers, share nothing).
// A worker owns its listeners' sockets, its downstream connections, its
// upstream pools and its stats. The main thread talks to it only by posting
// closures to its mailbox; the worker runs them between events.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "proxy/common/status.h"
#include "proxy/config/config.h"
#include "proxy/net/deadline_queue.h"
#include "proxy/stats/stats.h"

namespace skiff {

class TcpConnection;
class TcpListener;
namespace upstream {
class ClusterManager;
}

// Something whose destruction waits for the end of the loop iteration, so
// that no callback still on the stack touches freed memory (STYLE.md: never
// `delete this` inside a callback).
class Deletable {
 public:
  virtual ~Deletable() = default;
};

// Work that must run soon but not inside the current callback (HTTP/1
// resuming a pipelined request). Runs before the loop next polls.
class Schedulable {
 public:
  virtual ~Schedulable() = default;
  virtual void onScheduled() = 0;
};

// A downstream connection as the worker sees it: something a drain can ask
// to go away, and that knows which listener and filter chain took it (a
// listener update drains only the connections whose chain changed).
// A Deletable itself, so that an implementation carries one vtable pointer
// for both (8 bytes per connection).
class DownstreamConnection : public Deletable {
 public:
  virtual ~DownstreamConnection() = default;
  // Go away gracefully: finish what is in flight, take nothing new.
  virtual void drain() = 0;
  // Close now (shutdown, after the drain time).
  virtual void close() = 0;
  // The listener that accepted it; null for the admin's own connections.
  virtual const config::ListenerConfig* listenerConfig() const = 0;
  // The chain that took the connection; null until one is chosen (TLS).
  virtual const config::FilterChainConfig* filterChain() const = 0;

 private:
  friend class Worker;
  // Position in the worker's list (swap-and-pop removal). 32 bits (a worker's
  // connections are bounded by its descriptors) leave 4 bytes of tail
  // padding that an implementation's first small fields fill.
  uint32_t drain_index_ = 0;
};

class Worker {
 public:
  Worker(uint32_t index, std::shared_ptr<const config::Snapshot> snapshot);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Starts the thread; listeners open on it. ready is called (on the worker
  // thread) once every listener is listening, with an error message or "";
  // done is called on the worker thread when its loop has stopped.
  void start(std::function<void(const std::string&)> ready, std::function<void()> done);
  // Runs fn on the worker thread (thread-safe).
  void post(std::function<void()> fn);
  // Stops accepting, lets connections finish, and ends the loop once the
  // last one is gone or the deadline passes. Called on the worker thread.
  void drain(uint64_t deadline_ms);
  // The admin's /drain_listeners: closes every listener (and opens none that
  // a later configuration adds) and drains every downstream connection; the
  // loop goes on (upstream pools, the admin, xDS), unlike drain(). Called
  // on the worker thread.
  void stopListeners();
  void join();

  uint32_t index() const { return index_; }
  uv_loop_t* loop() { return &loop_; }
  stats::Store& stats() { return stats_; }
  const std::shared_ptr<const config::Snapshot>& snapshot() const { return snapshot_; }
  // A new configuration from the main thread (posted). Clusters are updated
  // first, then listeners open, close or change, and the snapshot (with its
  // RDS route tables) is swapped for new streams. A stream keeps what it
  // started with; connections on a removed listener, or on a filter chain
  // that changed, drain (DESIGN.md, "Configuration is data, swapped whole").
  void applySnapshot(std::shared_ptr<const config::Snapshot> next);
  // An RDS route table by name, or null when it has not arrived.
  std::shared_ptr<const router::RouteTable> routeTable(std::string_view name) const;
  upstream::ClusterManager& clusterManager() { return *cluster_manager_; }
  // Connection and stream timeouts, all on one uv timer.
  DeadlineQueue& deadlines() { return *deadlines_; }
  bool draining() const { return draining_; }

  // Destroys obj after the current loop iteration's callbacks.
  void deferDelete(std::unique_ptr<Deletable> obj);
  // Asks for conn's queued bytes to be written before the loop next polls,
  // so that several writes in one iteration leave in one syscall.
  void scheduleFlush(TcpConnection* conn);
  void cancelFlush(TcpConnection* conn);
  // Runs item->onScheduled() before the loop next polls. cancel() before
  // item is destroyed.
  void schedule(Schedulable* item) { scheduled_.push_back(item); }
  void cancel(Schedulable* item);

  // Connections alive on this worker (downstream), for drain.
  void addDownstream() { ++downstream_count_; }
  void removeDownstream();
  size_t downstreamCount() const { return downstream_count_; }
  // Registered by downstream connections for drains and shutdown.
  void addConnection(DownstreamConnection& conn);
  void removeConnection(DownstreamConnection& conn);
  // Ends what the loop still holds once it has stopped: closes connections,
  // then upstream pools, then the worker's own handles, runs the loop until
  // every close has completed, and closes the loop. Called on the loop's
  // thread after uv_run returns (run() does it for workers).
  void shutdown();

  // The original destinations that listeners' original_dst filters restored,
  // by connection (HttpConnectionManager::restoredLocalAddress): kept here
  // rather than in every connection, since few connections have one.
  // Setting null forgets conn's.
  void setRestoredLocalAddress(const DownstreamConnection& conn, const sockaddr_storage* addr);
  void setRestoredLocalAddress(const DownstreamConnection& conn, const sockaddr_storage& addr) {
    setRestoredLocalAddress(conn, &addr);
  }
  const sockaddr* restoredLocalAddress(const DownstreamConnection& conn) const;

  // A fast per-worker random number (xorshift; not for secrets).
  uint64_t random();

  // Listener.use_original_dst: the listener a connection whose original
  // destination is dst goes to, as Envoy finds it: the one on that exact
  // address and port, else one on a wildcard address of dst's family and
  // that port; null for none. A scan of this worker's listeners, once per
  // redirected connection on such a listener.
  TcpListener* handOffTarget(const sockaddr_storage& dst);

 private:
  void run(std::function<void(const std::string&)> ready, std::function<void()> done);
  void onPrepare();
  void runMailbox();
  void maybeStop();
  // Runs the loop without blocking until done() or nothing is left to run.
  void spin(const std::function<bool()>& done);
  void runDeferred();
  Status openListener(std::shared_ptr<const config::ListenerConfig> config);
  // Lets a listener, its chains' connection managers or TCP proxies
  // (HttpConnectionManager::installOn) and their filters (factories and
  // inline route tables' per-filter configs: HttpFilterFactory::installOn)
  // make this worker's state.
  void installFilters(const config::ListenerConfig& listener);
  // The same for RDS route tables: those named (null: all of them).
  void installRouteTables(const config::Snapshot& snapshot, const std::vector<std::string>* names);
  // Drains the connections of listener `name` whose filter chain is not in
  // next (null: the listener is gone, all of them).
  void drainListener(const std::string& name, const config::ListenerConfig* next);
  // Opens, swaps or closes one listener to match cfg (null: removed).
  void updateListener(const std::string& name, std::shared_ptr<const config::ListenerConfig> cfg);

  uint32_t index_;
  uv_loop_t loop_;
  uv_async_t wakeup_;
  uv_prepare_t prepare_;
  uv_timer_t drain_timer_;
  std::unique_ptr<DeadlineQueue> deadlines_;  // Made once loop_ is.
  std::thread thread_;
  std::shared_ptr<const config::Snapshot> snapshot_;
  stats::Store stats_;
  std::unique_ptr<upstream::ClusterManager> cluster_manager_;
  std::map<std::string, std::unique_ptr<TcpListener>> listeners_;  // By name.

  std::mutex mailbox_mu_;
  std::vector<std::function<void()>> mailbox_;  // Guarded by mailbox_mu_.

  std::vector<std::unique_ptr<Deletable>> deferred_;
  std::vector<TcpConnection*> flush_list_;
  std::vector<Schedulable*> scheduled_;
  // The batches onPrepare is working through: cancel() and cancelFlush() null
  // an entry here as well, since a callback made for one entry may close or
  // destroy what a later one points to.
  std::vector<TcpConnection*> flushing_;
  std::vector<Schedulable*> running_;
  std::vector<DownstreamConnection*> connections_;  // Downstream, for drains.
  std::unordered_map<const DownstreamConnection*, sockaddr_storage> restored_local_;
  std::mutex closed_mu_;
  bool closed_ = false;  // The loop is closed: post() drops work. Guarded by closed_mu_.
  size_t downstream_count_ = 0;
  bool draining_ = false;
  bool listeners_stopped_ = false;  // stopListeners(): no listener opens again.
  bool stopping_ = false;
  uint64_t rng_;
};

}  // namespace skiff
