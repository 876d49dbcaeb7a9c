// Timeouts for the many connections and streams of one worker, on one uv
// timer. A connection's idle timeout, a request head's timeout, a stream's
// request and idle timeouts, the router's route and stream-duration timeouts
// and an upstream connection's connect and idle timeouts are each a
// Deadline: a few words inside the object that owns it, with no handle to
// open, start, stop or close, and no allocation.
//
// Deadlines armed with the same duration wait in one list, in the order they
// were armed. The loop clock never goes back, so each list is sorted by due
// time: arming appends to its tail in constant time, and the uv timer only
// moves when a list that was empty gets an entry due before it. That suits
// durations drawn from configuration (a handful of distinct values). A
// duration computed per request (from a grpc-timeout header) goes to one
// more list kept sorted by due time instead (armComputed), so that such
// values never make a list each.
//
//   lists_:  [ 300000 ms: a -> b -> c ]   [ 15000 ms: d ]   ...
//   computed_: [ e (due 1040) -> f (due 2310) ]
//                         ^ due first      uv timer armed for min(a, d, e)
//
// Cancelling and re-arming are lazy. An entry keeps its place (its slot, the
// due time it was placed for) when it is cancelled or re-armed with its
// list's duration; only its due time changes, and the timer, on reaching the
// slot, drops the entry or places it again by its new due time. A connection
// cancels its idle timeout when a request starts and re-arms it when the
// response ends, and a pooled upstream connection does the same: unlinking
// and appending each time wrote to two neighbours, other connections'
// objects (bench/probe.sh instr: 14,742 -> 14,672 instructions per request).
// Destroying an entry still unlinks it. The price: a timer wakeup at the
// slot of an entry cancelled lazily. (A Deadline stays 48 bytes: its lists
// are circular, so it needs no pointer to its list, and its due time is kept
// as 32 bits after its slot.)
//
// That lazy re-arm, the common arm (a connection's idle timeout between
// keep-alive requests, a stream's idle timeout on each body), is inline in
// arm(): an entry knows its list's duration, so it needs no lookup of the
// list and no call (bench/probe.sh instr: three of the five arms of a
// proxied request take it; about 40 fewer instructions per request).
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace skiff {

class DeadlineQueue;

namespace deadline_detail {
// A place in a circular list. Each list has one that is no Deadline (its
// sentinel), so an entry unlinks itself without knowing its list.
struct Link {
  Link* prev_ = nullptr;  // Null: in no list.
  Link* next_ = nullptr;
};
}  // namespace deadline_detail

class Deadline : private deadline_detail::Link {
 public:
  using Callback = void (*)(void* context);

  Deadline(Callback callback, void* context) : callback_(callback), context_(context) {}
  ~Deadline() {
    if (prev_) unlink();
  }
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

  bool armed() const { return prev_ != nullptr && delta_ms_ != kCancelled; }
  // Loop time (ms) when it fires; meaningful while armed.
  uint64_t due() const { return slot_ms_ + delta_ms_; }
  // Stops it firing. Safe when not armed, and from inside any callback.
  // The entry stays in its list until the timer reaches its slot (lazy: see
  // the top of this file), or until it is destroyed.
  void cancel() { delta_ms_ = kCancelled; }

 private:
  friend class DeadlineQueue;
  struct List;
  static constexpr uint32_t kCancelled = UINT32_MAX;

  void unlink();

  Callback callback_;
  void* context_;
  uint64_t slot_ms_ = 0;  // Its place in its list (sorted by it): a due time.
  // When it fires, after its slot; kCancelled when it does not (a re-arm
  // further off than that places it again).
  uint32_t delta_ms_ = 0;
  // Its list's duration (List::key), while in one: arm() keeps its place
  // when this is the duration it is armed with.
  uint32_t list_key_ = 0;
};

struct Deadline::List {
  // ms of the lists that hold more than one duration (computed_, and the
  // entries firing now).
  static constexpr uint64_t kMixedDurations = UINT64_MAX;
  // The key of those lists, and of any list whose duration does not fit 32
  // bits: arm() never keeps an entry's place in them.
  static constexpr uint32_t kNoKey = UINT32_MAX;
  explicit List(uint64_t duration)
      : ms(duration), key(duration < kNoKey ? static_cast<uint32_t>(duration) : kNoKey) {
    sentinel.prev_ = sentinel.next_ = &sentinel;
  }
  List(const List&) = delete;
  List& operator=(const List&) = delete;
  Deadline* head() const {
    return sentinel.next_ == &sentinel ? nullptr : static_cast<Deadline*>(sentinel.next_);
  }
  uint64_t ms;                     // The duration of every entry.
  uint32_t key;                    // Deadline::list_key_ of its entries.
  deadline_detail::Link sentinel;  // prev_ is the tail, next_ the head.
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
  void arm(Deadline& d, uint64_t ms) {
    uint64_t due = uv_now(loop_) + ms;
    if (d.prev_ && d.list_key_ == ms && d.list_key_ != Deadline::List::kNoKey &&
        due - d.slot_ms_ < Deadline::kCancelled && !closed_) [[likely]] {
      // Still in the list of this duration (armed, or cancelled lazily): its
      // slot is no later than the new due time, so it keeps its place, and
      // onTimer places it again when the timer reaches the slot.
      d.delta_ms_ = static_cast<uint32_t>(due - d.slot_ms_);
      return;
    }
    armInList(d, ms, due);
  }
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

  // arm() when d must move: to the tail of the list of ms.
  void armInList(Deadline& d, uint64_t ms, uint64_t due);
  Deadline::List& listFor(uint64_t ms);
  // listFor's scan, when cache_ misses: updates cached.
  Deadline::List& findList(uint64_t ms, Deadline::List*& cached);
  static void append(Deadline::List& l, Deadline& d);
  // Links d into l after the last entry whose slot is no later than due,
  // walking back from the tail; d's slot becomes due.
  static void insertByDue(Deadline::List& l, Deadline& d, uint64_t due);
  // d is now at the head of its list: the timer must cover it.
  void coverHead(const Deadline& d) {
    if (!timer_armed_ || d.slot_ms_ < timer_due_ms_) startTimer(d.slot_ms_);
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
  // Sorted by due time (armComputed).
  Deadline::List computed_{Deadline::List::kMixedDurations};
};

}  // namespace skiff
