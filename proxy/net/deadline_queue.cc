#include "proxy/net/deadline_queue.h"

namespace skiff {

void Deadline::unlink() {
  prev_->next_ = next_;
  next_->prev_ = prev_;
  prev_ = next_ = nullptr;
}

DeadlineQueue::DeadlineQueue(uv_loop_t* loop) : loop_(loop) {
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
}

DeadlineQueue::~DeadlineQueue() {
  // Whatever is still in a list is detached, so that a late cancel() or
  // destruction is harmless.
  forEachList([](Deadline::List& l) {
    while (Deadline* d = l.head()) d->unlink();
  });
}

// Kept small enough to inline into arm(): the scan is the rare path.
inline Deadline::List& DeadlineQueue::listFor(uint64_t ms) {
  Deadline::List*& cached = cache_[(ms * 0x9e3779b97f4a7c15ULL) >> (64 - kCacheBits)];
  if (cached && cached->ms == ms) [[likely]]
    return *cached;
  return findList(ms, cached);
}

Deadline::List& DeadlineQueue::findList(uint64_t ms, Deadline::List*& cached) {
  for (const std::unique_ptr<Deadline::List>& l : lists_) {
    if (l->ms == ms) return *(cached = l.get());
  }
  return *(cached = lists_.emplace_back(std::make_unique<Deadline::List>(ms)).get());
}

void DeadlineQueue::append(Deadline::List& l, Deadline& d) {
  d.list_key_ = l.key;
  d.prev_ = l.sentinel.prev_;
  d.next_ = &l.sentinel;
  l.sentinel.prev_->next_ = &d;
  l.sentinel.prev_ = &d;
}

void DeadlineQueue::insertByDue(Deadline::List& l, Deadline& d, uint64_t due) {
  d.slot_ms_ = due;
  d.delta_ms_ = 0;
  d.list_key_ = l.key;
  // After the last entry due no later than d: equal due times fire in the
  // order they were armed.
  deadline_detail::Link* before = l.sentinel.prev_;
  while (before != &l.sentinel && static_cast<Deadline*>(before)->slot_ms_ > due) {
    before = before->prev_;
  }
  d.prev_ = before;
  d.next_ = before->next_;
  before->next_->prev_ = &d;
  before->next_ = &d;
}

void DeadlineQueue::armInList(Deadline& d, uint64_t ms, uint64_t due) {
  if (closed_) {
    d.cancel();
    return;
  }
  Deadline::List& l = listFor(ms);
  if (d.prev_) d.unlink();
  d.slot_ms_ = due;
  d.delta_ms_ = 0;
  append(l, d);
  // Behind another entry of its list, its slot is no earlier than that
  // one's, which the timer already covers.
  if (l.head() == &d) coverHead(d);
}

void DeadlineQueue::armComputed(Deadline& d, uint64_t ms) {
  if (d.prev_) d.unlink();
  if (closed_) return;
  insertByDue(computed_, d, uv_now(loop_) + ms);
  if (computed_.head() == &d) coverHead(d);
}

void DeadlineQueue::startTimer(uint64_t due_ms) {
  uint64_t now = uv_now(loop_);
  timer_armed_ = true;
  timer_due_ms_ = due_ms;
  uv_timer_start(
      &timer_, [](uv_timer_t* t) { static_cast<DeadlineQueue*>(t->data)->onTimer(); },
      due_ms > now ? due_ms - now : 0, 0);
}

void DeadlineQueue::onTimer() {
  timer_armed_ = false;
  uint64_t now = uv_now(loop_);
  // Everything due moves to a list of its own first: a callback may arm,
  // cancel or destroy any deadline, and what it arms now (even for 0 ms)
  // waits for the next round. An entry whose slot came but that was
  // cancelled leaves its list; one re-armed since it was placed goes back by
  // its new due time.
  Deadline::List firing{Deadline::List::kMixedDurations};
  forEachList([&](Deadline::List& l) {
    Deadline* d;
    while ((d = l.head()) && d->slot_ms_ <= now) {
      d->unlink();
      if (d->delta_ms_ == Deadline::kCancelled) continue;
      if (d->due() <= now) {
        append(firing, *d);
      } else {
        insertByDue(l, *d, d->due());
      }
    }
  });
  while (Deadline* d = firing.head()) {
    d->unlink();
    // Cancelled by a callback that ran before it.
    if (d->delta_ms_ == Deadline::kCancelled) continue;
    d->callback_(d->context_);
  }
  rearmTimer();
}

void DeadlineQueue::rearmTimer() {
  if (closed_) return;
  const Deadline* first = nullptr;
  forEachList([&](const Deadline::List& l) {
    const Deadline* h = l.head();
    if (h && (!first || h->slot_ms_ < first->slot_ms_)) first = h;
  });
  if (!first || (timer_armed_ && timer_due_ms_ <= first->slot_ms_)) return;
  startTimer(first->slot_ms_);
}

void DeadlineQueue::close() {
  if (closed_) return;
  closed_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
}

size_t DeadlineQueue::armedCount() const {
  size_t n = 0;
  auto count = [&](const Deadline::List& l) {
    for (const deadline_detail::Link* p = l.sentinel.next_; p != &l.sentinel; p = p->next_) {
      n += static_cast<const Deadline*>(p)->armed();
    }
  };
  for (const std::unique_ptr<Deadline::List>& l : lists_) count(*l);
  count(computed_);
  return n;
}

}  // namespace skiff
