// Timeouts for the many connections and streams of one worker, on one uv
// timer. A connection's idle timeout, a request head's timeout, a stream's
// request and idle timeouts, the router's route and stream-duration timeouts
// and an upstream connection's connect and idle timeouts are each a
// Deadline: a few words inside the object that owns it, with no handle to
// open, start, stop or close, and no allocation.
//
// Deadlines armed with the same duration wait in one list, in the order they
// were armed. The loop clock never goes back, so each list is sorted by due
// time: arming appends to its tail, re-arming moves an entry to the tail,
// cancelling unlinks it, all in constant time, and the uv timer only moves
// when a list that was empty gets an entry due before it. That suits
// durations drawn from configuration (a handful of distinct values). A
// duration computed per request (from a grpc-timeout header) goes to one
// more list kept sorted by due time instead (armComputed), so that such
// values never make a list each.
//
//   lists_:  [ 300000 ms: a -> b -> c ]   [ 15000 ms: d ]   ...
//   computed_: [ e (due 1040) -> f (due 2310) ]
//                         ^ due first      uv timer armed for min(a, d, e)
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <vector>

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
  // Inline: most cancels (a stream's and a router's, at their end) find it
  // unarmed.
  void cancel() {
    if (list_) unlink();
  }

 private:
  friend class DeadlineQueue;
  struct List;

  void unlink();

  Callback callback_;
  void* context_;
  Deadline* prev_ = nullptr;
  Deadline* next_ = nullptr;
  List* list_ = nullptr;  // Null: not armed.
  uint64_t due_ms_ = 0;
};

struct Deadline::List {
  // ms of the lists that hold more than one duration (computed_, and the
  // entries firing now).
  static constexpr uint64_t kMixedDurations = UINT64_MAX;
  uint64_t ms;  // The duration of every entry.
  Deadline* head = nullptr;
  Deadline* tail = nullptr;
};

class DeadlineQueue {
 public:
  explicit DeadlineQueue(uv_loop_t* loop);
  // close() first, and let the loop run its close callback.
  ~DeadlineQueue();
  DeadlineQueue(const DeadlineQueue&) = delete;
  DeadlineQueue& operator=(const DeadlineQueue&) = delete;

  // (Re)arms d to fire ms from now (loop time), for a duration drawn from
  // configuration. Fires on a later loop iteration, never from inside this
  // call, even for ms == 0.
  void arm(Deadline& d, uint64_t ms);
  // The same for a duration computed per request (a grpc-timeout): the entry
  // is placed by due time in one list, walking back from its tail, which is
  // cheap while such durations are alike.
  void armComputed(Deadline& d, uint64_t ms);
  // Closes the uv timer; deadlines still armed never fire.
  void close();

  // Entries armed now, for tests.
  size_t armedCount() const;

 private:
  friend class Deadline;

  Deadline::List& listFor(uint64_t ms);
  // listFor's scan, when cache_ misses: updates cached.
  Deadline::List& findList(uint64_t ms, Deadline::List*& cached);
  static void append(Deadline::List& l, Deadline& d);
  // d is now at the head of its list: the timer must cover it.
  void coverHead(const Deadline& d) {
    if (!timer_armed_ || d.due_ms_ < timer_due_ms_) startTimer(d.due_ms_);
  }
  void startTimer(uint64_t due_ms);
  void onTimer();
  // Arms the timer for the earliest head, unless it is armed early enough.
  void rearmTimer();
  template <typename F>
  void forEachList(F f) {
    for (const std::unique_ptr<Deadline::List>& l : lists_) f(*l);
    f(computed_);
  }

  uv_loop_t* loop_;
  uv_timer_t timer_;
  bool timer_armed_ = false;
  uint64_t timer_due_ms_ = 0;  // When timer_ fires, while armed.
  bool closed_ = false;
  // Boxed: entries point at their list. Found through cache_, else by a
  // scan (there are only a few).
  std::vector<std::unique_ptr<Deadline::List>> lists_;
  // The list last found for each hash of a duration: a request arms half a
  // dozen deadlines of a few durations, and a scan per arm cost more than
  // the rest of arm.
  static constexpr int kCacheBits = 4;
  Deadline::List* cache_[1 << kCacheBits] = {};
  Deadline::List computed_{Deadline::List::kMixedDurations};  // Sorted by due time (armComputed).
};

}  // namespace skiff
