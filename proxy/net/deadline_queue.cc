#include "proxy/net/deadline_queue.h"

namespace skiff {

void Deadline::unlink() {
  (prev_ ? prev_->next_ : list_->head) = next_;
  (next_ ? next_->prev_ : list_->tail) = prev_;
  prev_ = next_ = nullptr;
  list_ = nullptr;
}

DeadlineQueue::DeadlineQueue(uv_loop_t* loop) : loop_(loop) {
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
}

DeadlineQueue::~DeadlineQueue() {
  // Whatever is still armed is detached, so that a late cancel() is harmless.
  forEachList([](Deadline::List& l) {
    for (Deadline* d = l.head; d;) {
      Deadline* next = d->next_;
      d->prev_ = d->next_ = nullptr;
      d->list_ = nullptr;
      d = next;
    }
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
  return *(cached =
               lists_.emplace_back(std::make_unique<Deadline::List>(Deadline::List{ms})).get());
}

void DeadlineQueue::append(Deadline::List& l, Deadline& d) {
  d.list_ = &l;
  d.prev_ = l.tail;
  d.next_ = nullptr;
  (l.tail ? l.tail->next_ : l.head) = &d;
  l.tail = &d;
}

void DeadlineQueue::arm(Deadline& d, uint64_t ms) {
  // Re-armed with the duration it had (a stream's idle timeout on each
  // read): its list is known.
  Deadline::List* l = d.list_ && d.list_->ms == ms ? d.list_ : nullptr;
  d.cancel();
  if (closed_) return;
  if (!l) l = &listFor(ms);
  d.due_ms_ = uv_now(loop_) + ms;
  append(*l, d);
  // Behind another entry of its list, it is due no earlier than that one,
  // which the timer already covers.
  if (l->head == &d) coverHead(d);
}

void DeadlineQueue::armComputed(Deadline& d, uint64_t ms) {
  d.cancel();
  if (closed_) return;
  d.due_ms_ = uv_now(loop_) + ms;
  // After the last entry due no later than d: equal due times fire in the
  // order they were armed.
  Deadline* before = computed_.tail;
  while (before && before->due_ms_ > d.due_ms_) before = before->prev_;
  d.list_ = &computed_;
  d.prev_ = before;
  d.next_ = before ? before->next_ : computed_.head;
  (d.next_ ? d.next_->prev_ : computed_.tail) = &d;
  (before ? before->next_ : computed_.head) = &d;
  if (computed_.head == &d) coverHead(d);
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
  // waits for the next round.
  Deadline::List firing{Deadline::List::kMixedDurations};
  forEachList([&](Deadline::List& l) {
    while (l.head && l.head->due_ms_ <= now) {
      Deadline* d = l.head;
      d->cancel();
      append(firing, *d);
    }
  });
  while (Deadline* d = firing.head) {
    d->cancel();
    d->callback_(d->context_);
  }
  rearmTimer();
}

void DeadlineQueue::rearmTimer() {
  if (closed_) return;
  const Deadline* first = nullptr;
  forEachList([&](const Deadline::List& l) {
    if (l.head && (!first || l.head->due_ms_ < first->due_ms_)) first = l.head;
  });
  if (!first || (timer_armed_ && timer_due_ms_ <= first->due_ms_)) return;
  startTimer(first->due_ms_);
}

void DeadlineQueue::close() {
  if (closed_) return;
  closed_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
}

size_t DeadlineQueue::armedCount() const {
  size_t n = 0;
  auto count = [&](const Deadline::List& l) {
    for (const Deadline* d = l.head; d; d = d->next_) ++n;
  };
  for (const std::unique_ptr<Deadline::List>& l : lists_) count(*l);
  count(computed_);
  return n;
}

}  // namespace skiff
