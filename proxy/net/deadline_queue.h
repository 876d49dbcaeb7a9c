// Timeouts for the many connections and streams of one worker, on one uv
// timer. A connection's idle timeout, a request head's timeout and a
// stream's request and idle timeouts are each a Deadline: a few words inside
// the object that owns it, with no handle to open, start, stop or close, and
// no allocation.
//
// Deadlines armed with the same duration wait in one list, in the order they
// were armed. The loop clock never goes back, so each list is sorted by due
// time: arming appends to its tail, re-arming moves an entry to the tail,
// cancelling unlinks it, all in constant time, and the uv timer only moves
// when a list that was empty gets an entry due before it. That suits
// durations drawn from configuration (a handful of distinct values); a
// duration computed per request would make a list of its own each time.
//
//   lists_:  [ 300000 ms: a -> b -> c ]   [ 15000 ms: d ]   ...
//                         ^ due first      uv timer armed for min(a, d)
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>

namespace skiff {

class DeadlineQueue;

class Deadline {
 public:
  using Callback = void (*)(void* context);

  Deadline(Callback callback, void* context) : callback_(callback), context_(context) {}
  ~Deadline() { cancel(); }
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

  bool armed() const { return list_ != nullptr; }
  // Loop time (ms) when it fires; meaningful while armed.
  uint64_t due() const { return due_ms_; }
  // Stops it firing. Safe when not armed, and from inside any callback.
  void cancel();

 private:
  friend class DeadlineQueue;
  struct List;

  Callback callback_;
  void* context_;
  Deadline* prev_ = nullptr;
  Deadline* next_ = nullptr;
  List* list_ = nullptr;  // Null: not armed.
  uint64_t due_ms_ = 0;
};

class DeadlineQueue {
 public:
  explicit DeadlineQueue(uv_loop_t* loop);
  // close() first, and let the loop run its close callback.
  ~DeadlineQueue();
  DeadlineQueue(const DeadlineQueue&) = delete;
  DeadlineQueue& operator=(const DeadlineQueue&) = delete;

  // (Re)arms d to fire ms from now (loop time). Fires on a later loop
  // iteration, never from inside this call, even for ms == 0.
  void arm(Deadline& d, uint64_t ms);
  // Closes the uv timer; deadlines still armed never fire.
  void close();

  // Entries armed now, for tests.
  size_t armedCount() const;

 private:
  friend class Deadline;

  Deadline::List& listFor(uint64_t ms);
  static void append(Deadline::List& l, Deadline& d);
  void startTimer(uint64_t due_ms);
  void onTimer();
  // Arms the timer for the earliest head, unless it is armed early enough.
  void rearmTimer();

  uv_loop_t* loop_;
  uv_timer_t timer_;
  bool timer_armed_ = false;
  uint64_t timer_due_ms_ = 0;  // When timer_ fires, while armed.
  bool closed_ = false;
  std::deque<Deadline::List> lists_;  // Stable addresses: entries point at their list.
};

struct Deadline::List {
  DeadlineQueue* queue;
  uint64_t ms;
  Deadline* head = nullptr;
  Deadline* tail = nullptr;
};

}  // namespace skiff
