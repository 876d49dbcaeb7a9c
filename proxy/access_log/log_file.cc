#include "proxy/access_log/log_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace skiff::access_log {

namespace {

constexpr size_t kFlushBytes = 64 * 1024;
constexpr uint64_t kFlushIntervalMs = 1000;  // Envoy's file_flush_interval default.
constexpr int kOpenFlags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC;

// Every file opened by path, so that configurations naming one path share it
// and SIGUSR1 can reopen them all. Leaked on purpose: it outlives workers.
struct Registry {
  std::mutex mu;
  std::map<std::string, std::weak_ptr<LogFile>> files;
};
Registry& registry() {
  static auto* r = new Registry();
  return *r;
}

struct Chunk {
  std::shared_ptr<LogFile> file;
  std::string bytes;
};

// The one thread that writes access logs. Workers only take its mutex to
// hand over a buffer (at most once per 64 KiB or per second each), never
// per line.
class Writer {
 public:
  static Writer& get() {
    static auto* w = new Writer();  // Leaked: a joinable thread must not be destroyed at exit.
    return *w;
  }

  void push(Chunk chunk) {
    {
      std::lock_guard lock(mu_);
      if (!stopped_) {
        start();
        queue_.push_back(std::move(chunk));
        cv_.notify_one();
        return;
      }
    }
    chunk.file->writeAll(chunk.bytes);  // After stop: nobody else is left to write it.
  }

  void reopen() {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    start();
    reopen_ = true;
    cv_.notify_one();
  }

  void wait() {
    std::unique_lock lock(mu_);
    idle_cv_.wait(lock, [&] { return queue_.empty() && !busy_ && !reopen_; });
  }

  void stop() {
    {
      std::lock_guard lock(mu_);
      if (stopped_) return;
      stopped_ = true;
      cv_.notify_one();
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  void start() {
    if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
  }

  void run() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stopped_ || reopen_ || !queue_.empty(); });
      if (reopen_) {
        busy_ = true;
        lock.unlock();
        reopenEverything();
        lock.lock();
        busy_ = false;
        reopen_ = false;
      }
      while (!queue_.empty()) {
        Chunk chunk = std::move(queue_.front());
        queue_.pop_front();
        busy_ = true;
        lock.unlock();
        chunk.file->writeAll(chunk.bytes);
        chunk.file.reset();
        lock.lock();
        busy_ = false;
      }
      idle_cv_.notify_all();
      if (stopped_) return;
    }
  }

  static void reopenEverything() {
    std::vector<std::shared_ptr<LogFile>> files;
    {
      Registry& r = registry();
      std::lock_guard lock(r.mu);
      for (auto& [path, weak] : r.files) {
        if (auto f = weak.lock()) files.push_back(std::move(f));
      }
    }
    for (auto& f : files) f->reopen();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_cv_;
  std::deque<Chunk> queue_;
  bool reopen_ = false;
  bool busy_ = false;
  bool stopped_ = false;
  std::thread thread_;
};

// One thread's buffers, one per file it logs to, and its flush timer.
struct ThreadBuffers {
  struct Entry {
    std::shared_ptr<LogFile> file;
    std::string bytes;
  };
  std::vector<Entry> entries;
  uv_timer_t* timer = nullptr;
  bool timer_armed = false;
};
thread_local ThreadBuffers t_buffers;

void handOver(ThreadBuffers::Entry& e) {
  if (e.bytes.empty()) return;
  Writer::get().push({e.file, std::move(e.bytes)});
  e.bytes.clear();
}

}  // namespace

Result<std::shared_ptr<LogFile>> LogFile::open(const std::string& path) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  if (auto it = r.files.find(path); it != r.files.end()) {
    if (auto f = it->second.lock()) return f;
  }
  int fd = ::open(path.c_str(), kOpenFlags, 0644);
  if (fd < 0) return configError("cannot open '" + path + "': " + std::strerror(errno));
  std::shared_ptr<LogFile> f(new LogFile(path, fd, true));
  r.files[path] = f;
  return f;
}

std::shared_ptr<LogFile> LogFile::standardStream(int fd) {
  static auto* out = new std::shared_ptr<LogFile>(new LogFile("/dev/stdout", 1, false));
  static auto* err = new std::shared_ptr<LogFile>(new LogFile("/dev/stderr", 2, false));
  return fd == 2 ? *err : *out;
}

LogFile::~LogFile() {
  if (owned_) ::close(fd_);
}

void LogFile::append(std::string_view line, uv_loop_t* loop) {
  ThreadBuffers& t = t_buffers;
  ThreadBuffers::Entry* entry = nullptr;
  for (auto& e : t.entries) {
    if (e.file.get() == this) entry = &e;
  }
  if (!entry) {
    // The buffer holds the file until its lines are handed over: a
    // configuration swap that drops the file loses no line.
    t.entries.push_back({shared_from_this(), {}});
    entry = &t.entries.back();
  }
  // A buffer handed over leaves an empty string: give the next one its full
  // size at once rather than a dozen reallocations on the way.
  if (entry->bytes.capacity() < kFlushBytes) entry->bytes.reserve(kFlushBytes + 1024);
  entry->bytes.append(line);
  if (entry->bytes.size() >= kFlushBytes) {
    handOver(*entry);
    return;
  }
  if (!loop || t.timer_armed) return;
  if (!t.timer) {
    t.timer = new uv_timer_t;
    uv_timer_init(loop, t.timer);
    uv_unref(reinterpret_cast<uv_handle_t*>(t.timer));  // Never keeps a loop alive.
  }
  t.timer_armed = true;
  uv_timer_start(
      t.timer,
      [](uv_timer_t*) {
        t_buffers.timer_armed = false;
        flushThread();
      },
      kFlushIntervalMs, 0);
}

void LogFile::flushThread() {
  ThreadBuffers& t = t_buffers;
  for (auto& e : t.entries) handOver(e);
  t.entries.clear();
}

void LogFile::closeThread() {
  flushThread();
  ThreadBuffers& t = t_buffers;
  if (!t.timer) return;
  uv_timer_stop(t.timer);
  uv_close(reinterpret_cast<uv_handle_t*>(t.timer),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  t.timer = nullptr;
  t.timer_armed = false;
}

void LogFile::reopenAll() { Writer::get().reopen(); }
void LogFile::waitWritten() { Writer::get().wait(); }
void LogFile::stopWriter() { Writer::get().stop(); }

void LogFile::writeAll(const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // A full disk or a closed pipe: the lines are lost, as in Envoy.
    }
    done += static_cast<size_t>(n);
  }
}

void LogFile::reopen() {
  if (!owned_) return;
  int fd = ::open(path_.c_str(), kOpenFlags, 0644);
  if (fd < 0) return;  // Keep writing to the old file rather than lose lines.
  // Same descriptor number: only this (writer) thread writes to it.
  ::dup2(fd, fd_);
  ::close(fd);
}

}  // namespace skiff::access_log
