#include "proxy/worker/worker.h"

#include <algorithm>
#include <chrono>

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
  rng_ = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
         (0x9e3779b97f4a7c15ULL * (index + 1));
  cluster_manager_ = std::make_unique<upstream::ClusterManager>(*this, snapshot_->clusters);
}

Worker::~Worker() {
  // The loop is left to the process exit once it has run: connections still
  // alive at a forced stop own handles on it.
}

void Worker::start(std::function<void(const std::string&)> ready, std::function<void()> done) {
  thread_ = std::thread([this, ready = std::move(ready), done = std::move(done)]() mutable {
    run(std::move(ready), std::move(done));
  });
}

void Worker::run(std::function<void(const std::string&)> ready, std::function<void()> done) {
  std::string error;
  for (const auto& listener : snapshot_->listeners) {
    auto l = std::make_unique<TcpListener>(*this, listener, listener->address.port);
    Status s = l->listen();
    if (!s) {
      error = s.message();
      break;
    }
    listeners_.push_back(std::move(l));
  }
  ready(error);
  uv_run(&loop_, UV_RUN_DEFAULT);
  done();
}

void Worker::post(std::function<void()> fn) {
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
}

void Worker::cancel(Schedulable* item) {
  std::replace(scheduled_.begin(), scheduled_.end(), item, static_cast<Schedulable*>(nullptr));
}

void Worker::onPrepare() {
  // Scheduled work first, then the writes made during this iteration leave,
  // one syscall per connection. Each step may cause more, so loop until quiet.
  while (!scheduled_.empty() || !flush_list_.empty() || !deferred_.empty()) {
    std::vector<Schedulable*> items;
    items.swap(scheduled_);
    for (Schedulable* item : items) {
      if (item) item->onScheduled();
    }
    std::vector<TcpConnection*> flush;
    flush.swap(flush_list_);
    for (TcpConnection* c : flush) {
      if (c) c->flush();
    }
    std::vector<std::unique_ptr<Deletable>> dead;
    dead.swap(deferred_);
    dead.clear();
  }
  if (draining_) maybeStop();
}

void Worker::addDrainCallback(void* key, std::function<void()> cb) {
  drain_callbacks_.emplace_back(key, std::move(cb));
}

void Worker::removeDrainCallback(void* key) {
  std::erase_if(drain_callbacks_, [key](const auto& p) { return p.first == key; });
}

void Worker::removeDownstream() {
  if (downstream_count_ > 0) --downstream_count_;
}

void Worker::drain(uint64_t deadline_ms) {
  if (draining_) return;
  draining_ = true;
  for (auto& l : listeners_) l->close();
  auto callbacks = drain_callbacks_;
  for (auto& [key, cb] : callbacks) cb();
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

void Worker::maybeStop() {
  if (stopping_ || downstream_count_ > 0) return;
  stopping_ = true;
  uv_stop(&loop_);
}

uint64_t Worker::random() {
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  return rng_;
}

}  // namespace skiff
