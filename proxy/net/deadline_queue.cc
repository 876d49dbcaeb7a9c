#include "proxy/net/deadline_queue.h"

namespace skiff {

void Deadline::cancel() {
  if (!list_) return;
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
  for (Deadline::List& l : lists_) {
    for (Deadline* d = l.head; d;) {
      Deadline* next = d->next_;
      d->prev_ = d->next_ = nullptr;
      d->list_ = nullptr;
      d = next;
    }
  }
}

Deadline::List& DeadlineQueue::listFor(uint64_t ms) {
  for (Deadline::List& l : lists_) {
    if (l.ms == ms) return l;
  }
  return lists_.emplace_back(Deadline::List{this, ms});
}

void DeadlineQueue::append(Deadline::List& l, Deadline& d) {
  d.list_ = &l;
  d.prev_ = l.tail;
  d.next_ = nullptr;
  (l.tail ? l.tail->next_ : l.head) = &d;
  l.tail = &d;
}

void DeadlineQueue::arm(Deadline& d, uint64_t ms) {
  d.cancel();
  if (closed_) return;
  Deadline::List& l = listFor(ms);
  d.due_ms_ = uv_now(loop_) + ms;
  append(l, d);
  // Behind another entry of its list, it is due no earlier than that one,
  // which the timer already covers.
  if (l.head == &d && (!timer_armed_ || d.due_ms_ < timer_due_ms_)) startTimer(d.due_ms_);
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
  Deadline::List firing{this, 0};
  for (Deadline::List& l : lists_) {
    while (l.head && l.head->due_ms_ <= now) {
      Deadline* d = l.head;
      d->cancel();
      append(firing, *d);
    }
  }
  while (Deadline* d = firing.head) {
    d->cancel();
    d->callback_(d->context_);
  }
  rearmTimer();
}

void DeadlineQueue::rearmTimer() {
  if (closed_) return;
  const Deadline* first = nullptr;
  for (const Deadline::List& l : lists_) {
    if (l.head && (!first || l.head->due_ms_ < first->due_ms_)) first = l.head;
  }
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
  for (const Deadline::List& l : lists_) {
    for (const Deadline* d = l.head; d; d = d->next_) ++n;
  }
  return n;
}

}  // namespace skiff
