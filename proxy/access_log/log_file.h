// Where access log lines go: a file opened for appending, or stdout/stderr.
// A worker never writes to disk itself (DESIGN.md: never block a worker):
// each thread appends whole lines to a buffer of its own per file, and hands
// a buffer to one writer thread when it passes 64 KiB, or a second after its
// first line (Envoy's file_flush_interval), or when the worker stops. The
// writer write()s each buffer whole, in order, to an O_APPEND descriptor.
// SIGUSR1 makes the writer reopen every file (log rotation, as in Envoy).
#pragma once

#include <uv.h>

#include <memory>
#include <string>
#include <string_view>

#include "proxy/common/status.h"

namespace skiff::access_log {

class LogFile : public std::enable_shared_from_this<LogFile> {
 public:
  // The file at path, opened (created, 0644) for appending; every
  // configuration that names the same path shares one LogFile. On the main
  // thread (configuration).
  static Result<std::shared_ptr<LogFile>> open(const std::string& path);
  // Descriptor 1 or 2 (StdoutAccessLog, StderrAccessLog).
  static std::shared_ptr<LogFile> standardStream(int fd);

  ~LogFile();
  LogFile(const LogFile&) = delete;
  LogFile& operator=(const LogFile&) = delete;

  // Appends a whole line to this thread's buffer for this file. loop (the
  // calling worker's) runs the one-second flush timer; null: lines wait for
  // a full buffer or flushThread().
  void append(std::string_view line, uv_loop_t* loop);
  const std::string& path() const { return path_; }

  // Hands every buffer of the calling thread to the writer.
  static void flushThread();
  // flushThread(), then closes this thread's timer: a worker calls it before
  // its loop closes.
  static void closeThread();
  // Asks the writer to reopen every file (SIGUSR1). Thread-safe.
  static void reopenAll();
  // Blocks until everything handed to the writer so far is written.
  static void waitWritten();
  // Writes what is queued and stops the writer thread (process exit).
  static void stopWriter();

  // Used by the writer thread.
  void writeAll(const std::string& bytes);
  void reopen();

 private:
  LogFile(std::string path, int fd, bool owned) : path_(std::move(path)), fd_(fd), owned_(owned) {}
  std::string path_;
  int fd_;
  bool owned_;  // Ours to close and reopen (not stdout/stderr).
};

}  // namespace skiff::access_log
