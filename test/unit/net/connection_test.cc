// TcpConnection on a real loop and real loopback sockets: connect, echo,
// partial writes, and what a connection holds once its bytes are consumed.
#include "proxy/net/connection.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proxy/net/listener.h"
#include "proxy/worker/worker.h"

namespace skiff {
namespace {

using CloseReason = TcpConnection::CloseReason;

class Recorder : public TcpConnection::Callbacks {
 public:
  void onRead(BufferChain& data) override {
    received += data.length();
    text += data.toString(std::min<size_t>(data.length(), 64));
    if (keep_all) all += data.toString(data.length());
    if (echo && conn) {
      conn->write(data);
    } else {
      data.clear();
    }
  }
  void onEof() override { eof = true; }
  void onClosed(CloseReason reason) override {
    closed = reason;
    ++closes;
  }
  void onConnected() override {
    connected = true;
    if (on_connected) on_connected();
  }
  void onAboveWriteBufferHighWatermark() override { ++above; }
  void onBelowWriteBufferLowWatermark() override {
    ++below;
    if (on_below) on_below();
  }

  TcpConnection* conn = nullptr;
  bool echo = false;
  bool keep_all = false;  // Keep every byte read in all, not only text's first 64 per read.
  size_t received = 0;
  std::string text;
  std::string all;
  bool eof = false;
  bool connected = false;
  std::optional<CloseReason> closed;
  int closes = 0;
  int above = 0;
  int below = 0;
  std::function<void()> on_below;  // Runs inside the flush that drained the queue.
  std::function<void()> on_connected;
};

class TcpConnectionTest : public ::testing::Test {
 protected:
  TcpConnectionTest()
      : worker_(0, std::make_shared<config::Snapshot>()),
        server_(
            worker_,
            [](void* context, int fd, const sockaddr* peer) {
              auto* self = static_cast<TcpConnectionTest*>(context);
              ++self->accepts_;
              self->accepted_fd_ = fd;
              self->accepted_ =
                  std::make_unique<TcpConnection>(self->worker_, self->server_side_, 1 << 20);
              self->server_side_.conn = self->accepted_.get();
              ASSERT_EQ(self->accepted_->accept(fd, peer), 0);
            },
            this) {
    Result<int> fd = bindTcpSocket("127.0.0.1", 0, /*reuse_port=*/false);
    EXPECT_TRUE(fd.isOk());
    uint32_t port = boundPort(*fd);
    EXPECT_EQ(server_.listen(*fd, 16), 0);
    server_addr_.sin_family = AF_INET;
    server_addr_.sin_port = htons(static_cast<uint16_t>(port));
    server_addr_.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    // Wakes the loop now and then, so that runUntil() never blocks for good.
    uv_timer_init(worker_.loop(), &tick_);
    uv_timer_start(
        &tick_, [](uv_timer_t*) {}, 5, 5);
  }

  ~TcpConnectionTest() override {
    for (TcpConnection* c : {client_.get(), accepted_.get()}) {
      if (c && !c->closing()) c->close();
    }
    runUntil(
        [&] { return (!client_ || client_side_.closed) && (!accepted_ || server_side_.closed); });
    server_.close();
    uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr);
    client_.reset();
    accepted_.reset();
    worker_.shutdown();
  }

  void runUntil(const std::function<bool()>& done) {
    for (int i = 0; i < 2000 && !done(); ++i) uv_run(worker_.loop(), UV_RUN_ONCE);
  }

  // Runs the loop for about ms milliseconds (tick_ wakes it every 5).
  void runFor(uint64_t ms) {
    uv_update_time(worker_.loop());
    uint64_t end = uv_now(worker_.loop()) + ms;
    while (uv_now(worker_.loop()) < end) uv_run(worker_.loop(), UV_RUN_ONCE);
  }

  // Runs the loop for about ms milliseconds and returns how many times it
  // went round: tick_ alone makes it about ms / 5. A socket watched for an
  // event it does not consume (epoll is level-triggered) makes it thousands.
  int iterationsIn(uint64_t ms) {
    uv_update_time(worker_.loop());
    uint64_t end = uv_now(worker_.loop()) + ms;
    int n = 0;
    for (; uv_now(worker_.loop()) < end; ++n) uv_run(worker_.loop(), UV_RUN_ONCE);
    return n;
  }

  void connectClient(uint32_t buffer_limit = 1 << 20) {
    client_ = std::make_unique<TcpConnection>(worker_, client_side_, buffer_limit);
    client_side_.conn = client_.get();
    ASSERT_EQ(client_->connect(reinterpret_cast<const sockaddr*>(&server_addr_), 1000), 0);
    runUntil([&] { return client_side_.connected && accepted_ != nullptr; });
    ASSERT_TRUE(client_side_.connected);
    ASSERT_TRUE(accepted_);
  }

  // The accepted side queues 1 MiB that its peer does not read (the socket
  // buffers are shrunk first) and closes with a 100 ms linger: the linger
  // must end the wait, closing it locally before the peer got everything.
  void expectLingerEndsUnreadQueue() {
    BufferChain out;
    out.appendCopy(std::string(1 << 20, 'x'));
    accepted_->write(out);
    accepted_->closeAfterFlush(CloseReason::kLocal, 100);
    runUntil([&] { return server_side_.closed.has_value(); });
    ASSERT_TRUE(server_side_.closed.has_value());
    EXPECT_EQ(server_side_.closed, CloseReason::kLocal);
    EXPECT_LT(client_side_.received, size_t{1 << 20});
  }

  // Sets SO_SNDBUF and SO_RCVBUF on both ends of the client connection,
  // found among the process's sockets by their loopback addresses.
  void shrinkSocketBuffers(int bytes) {
    uint16_t server_port = server_addr_.sin_port;
    int found = 0;
    for (int fd = 3; fd < 1024; ++fd) {
      sockaddr_in local{}, peer{};
      socklen_t l = sizeof(local), p = sizeof(peer);
      if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &l) != 0 ||
          getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &p) != 0 ||
          local.sin_family != AF_INET) {
        continue;
      }
      if (local.sin_port != server_port && peer.sin_port != server_port) continue;
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
      ++found;
    }
    ASSERT_EQ(found, 2);
  }

  Worker worker_;
  ListeningSocket server_;
  int accepts_ = 0;
  int accepted_fd_ = -1;
  uv_timer_t tick_;
  sockaddr_in server_addr_{};
  Recorder client_side_;
  Recorder server_side_;
  std::unique_ptr<TcpConnection> client_;
  std::unique_ptr<TcpConnection> accepted_;
};

TEST_F(TcpConnectionTest, ConnectsAndEchoes) {
  connectClient();
  server_side_.echo = true;
  BufferChain out;
  out.appendCopy("hello");
  client_->write(out);
  runUntil([&] { return client_side_.received == 5; });
  EXPECT_EQ(client_side_.text, "hello");
  EXPECT_EQ(server_side_.text, "hello");
}

// Nagle's algorithm is off both ways. An accepted socket gets TCP_NODELAY
// from its listening socket, which Linux copies into it; this checks that the
// kernel does.
TEST_F(TcpConnectionTest, BothEndsHaveNoDelay) {
  connectClient();
  int on = 0;
  socklen_t len = sizeof(on);
  ASSERT_EQ(getsockopt(accepted_fd_, IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
  EXPECT_EQ(on, 1);
  // And the connecting end (its fd is the other loopback socket).
  int found = 0;
  for (int fd = 3; fd < 1024; ++fd) {
    sockaddr_in peer{};
    socklen_t p = sizeof(peer);
    if (fd == accepted_fd_ || getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &p) != 0 ||
        peer.sin_family != AF_INET || peer.sin_port != server_addr_.sin_port) {
      continue;
    }
    on = 0;
    len = sizeof(on);
    ASSERT_EQ(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
    EXPECT_EQ(on, 1);
    ++found;
  }
  EXPECT_EQ(found, 1);
}

TEST_F(TcpConnectionTest, ConnectToAClosedPortFails) {
  // A port that was free a moment ago: nobody listens there.
  uv_tcp_t probe;
  uv_tcp_init(worker_.loop(), &probe);
  sockaddr_in addr{};
  uv_ip4_addr("127.0.0.1", 0, &addr);
  uv_tcp_bind(&probe, reinterpret_cast<const sockaddr*>(&addr), 0);
  sockaddr_storage ss{};
  int len = sizeof(ss);
  uv_tcp_getsockname(&probe, reinterpret_cast<sockaddr*>(&ss), &len);
  uv_close(reinterpret_cast<uv_handle_t*>(&probe), nullptr);
  uv_run(worker_.loop(), UV_RUN_NOWAIT);

  client_ = std::make_unique<TcpConnection>(worker_, client_side_, 1 << 20);
  ASSERT_EQ(client_->connect(reinterpret_cast<const sockaddr*>(&ss), 1000), 0);
  runUntil([&] { return client_side_.closed.has_value(); });
  EXPECT_FALSE(client_side_.connected);
  EXPECT_EQ(client_side_.closed, CloseReason::kConnectFailure);
}

TEST_F(TcpConnectionTest, ClosingWhileConnectingReportsTheLocalClose) {
  client_ = std::make_unique<TcpConnection>(worker_, client_side_, 1 << 20);
  ASSERT_EQ(client_->connect(reinterpret_cast<const sockaddr*>(&server_addr_), 1000), 0);
  client_->close();
  runUntil([&] { return client_side_.closed.has_value(); });
  EXPECT_FALSE(client_side_.connected);
  EXPECT_EQ(client_side_.closed, CloseReason::kLocal);
}

TEST_F(TcpConnectionTest, ConnectionsHoldNoSlabOnceTheirBytesAreConsumed) {
  connectClient();
  server_side_.echo = true;
  for (int i = 0; i < 3; ++i) {
    BufferChain out;
    out.appendCopy("GET / HTTP/1.1\r\nhost: a\r\n\r\n");
    client_->write(out);
    runUntil([&] { return client_side_.received == 27u * static_cast<size_t>(i + 1); });
  }
  ASSERT_EQ(client_side_.received, 81u);
  // Both ends read, the server wrote back and the client consumed it: only
  // the pool still refers to its shared slab, so idle connections cost no
  // buffer memory.
  SlabPool& pool = SlabPool::local();
  ASSERT_NE(pool.current(), nullptr);
  EXPECT_EQ(pool.current()->refs, 1u);
  EXPECT_EQ(pool.liveCount(), 1u);
}

TEST_F(TcpConnectionTest, WritesMoreThanTheKernelTakesAtOnce) {
  connectClient(64 << 20);
  // Far more than a loopback socket buffer: the first send takes part, and
  // the rest leaves as the socket turns writable while the reader drains.
  std::string big(8 << 20, 'x');
  BufferChain out;
  out.appendCopy(big);
  client_->write(out);
  runUntil([&] { return server_side_.received == big.size(); });
  EXPECT_EQ(server_side_.received, big.size());
  runUntil([&] { return client_->queuedBytes() == 0; });
  EXPECT_EQ(client_->queuedBytes(), 0u);
}

// A chain of several slices leaves whole and in order, whether it is short
// enough to go out as one copied buffer or goes out as an iovec per slice.
TEST_F(TcpConnectionTest, WritesChainsOfSeveralSlicesInOrder) {
  connectClient(64 << 20);
  server_side_.keep_all = true;
  std::string expected;
  // 15, 600 and 192 bytes go out as one copied buffer, 5,100 and 12,288 as iovecs.
  for (size_t piece : {size_t{5}, size_t{200}, size_t{64}, size_t{1700}, size_t{4096}}) {
    BufferChain out;
    for (int i = 0; i < 3; ++i) {
      // A fresh slab per piece, so that each is a slice of its own.
      SlabPool::local().retireCurrent();
      std::string bytes(piece, static_cast<char>('a' + (expected.size() + i) % 26));
      out.appendCopy(bytes);
      expected += bytes;
    }
    ASSERT_EQ(out.slices().size(), 3u);
    client_->write(out);
    // Each chain leaves in a flush of its own.
    runUntil([&] { return client_->queuedBytes() == 0; });
  }
  runUntil([&] { return server_side_.received == expected.size(); });
  EXPECT_EQ(server_side_.all, expected);
}

TEST_F(TcpConnectionTest, ShutdownAfterFlushIsAHalfClose) {
  connectClient(64 << 20);
  // More than the kernel takes at once: the FIN waits for every byte.
  std::string big(8 << 20, 'x');
  BufferChain out;
  out.appendCopy(big);
  client_->write(out);
  client_->shutdownAfterFlush();
  BufferChain late;
  late.appendCopy("dropped");
  client_->write(late);  // Nothing goes out after the FIN.
  runUntil([&] { return server_side_.eof; });
  EXPECT_TRUE(server_side_.eof);
  EXPECT_EQ(server_side_.received, big.size());
  // The other direction still works.
  BufferChain back;
  back.appendCopy("still open");
  server_side_.conn->write(back);
  runUntil([&] { return client_side_.received == 10; });
  EXPECT_EQ(client_side_.text, "still open");
  EXPECT_FALSE(client_side_.closed.has_value());
}

TEST_F(TcpConnectionTest, ClosesWithAWriteStillPending) {
  connectClient(64 << 20);
  server_side_.conn->readDisable(true);  // The peer stops reading.
  BufferChain out;
  out.appendCopy(std::string(8 << 20, 'x'));
  client_->write(out);
  runUntil([&] { return client_->queuedBytes() < (8u << 20); });
  ASSERT_GT(client_->queuedBytes(), 0u);
  client_->close();
  runUntil([&] { return client_side_.closed.has_value(); });
  EXPECT_EQ(client_side_.closed, CloseReason::kLocal);
}

TEST_F(TcpConnectionTest, WatermarksFollowTheWriteQueue) {
  connectClient(64 << 10);
  server_side_.conn->readDisable(true);
  BufferChain out;
  out.appendCopy(std::string(8 << 20, 'x'));
  client_->write(out);
  EXPECT_EQ(client_side_.above, 1);
  server_side_.conn->readDisable(false);
  runUntil([&] { return client_side_.below == 1; });
  EXPECT_EQ(client_side_.below, 1);
}

TEST_F(TcpConnectionTest, BelowLowWatermarkWhenOneWriteCarriedTheWholeQueue) {
  // The write that passed the high-water mark leaves in part at once and in
  // part as the socket turns writable: the send that empties the queue must
  // alone tell the producer to resume. It did not (when the rest left as one
  // uv_write), and an HTTP/2 upload to an HTTP/1 upstream stalled until the
  // upstream gave up.
  connectClient(64 << 10);
  // Small socket buffers both ways keep the kernel from taking the whole
  // megabyte at once (a fresh loopback connection takes more than that).
  shrinkSocketBuffers(16 << 10);
  server_side_.conn->readDisable(true);
  BufferChain out;
  out.appendCopy(std::string(1 << 20, 'x'));  // 64 slices.
  client_->write(out);
  EXPECT_EQ(client_side_.above, 1);
  uv_run(worker_.loop(), UV_RUN_NOWAIT);  // The first flush: the kernel takes part.
  // The case under test needs bytes left over for a writable event.
  ASSERT_GT(client_->queuedBytes(), size_t{64 << 10});
  server_side_.conn->readDisable(false);
  runUntil([&] { return server_side_.received == size_t{1 << 20} && client_side_.below == 1; });
  EXPECT_EQ(server_side_.received, size_t{1 << 20});
  EXPECT_EQ(client_->queuedBytes(), 0u);
  EXPECT_EQ(client_side_.below, 1);
}

TEST_F(TcpConnectionTest, ClosedWhileTheWorkersFlushPassStillHoldsItClosesOnce) {
  // The worker writes each iteration's queued bytes in one pass over the
  // connections that asked (Worker::onPrepare). A callback made during one
  // connection's flush may close another connection still waiting in the
  // same pass: that one must finish its close from its socket's close
  // callback only, once. It was flushed all the same and finished closing
  // there too, so its owner heard onClosed twice and, for an upstream
  // connection that deletes itself on onClosed, the close callback then ran
  // on freed memory (found by test_hostile_peers under ASan).
  connectClient(/*buffer_limit=*/1024);
  client_side_.on_below = [&] { accepted_->close(); };
  BufferChain out;
  out.appendCopy(std::string(2048, 'x'));
  client_->write(out);  // Above the high-water mark: its flush drains it below.
  ASSERT_EQ(client_side_.above, 1);
  BufferChain reply;
  reply.appendCopy("queued behind the client's flush");
  accepted_->write(reply);
  runUntil([&] { return client_side_.below == 1 && server_side_.closed.has_value(); });
  ASSERT_EQ(client_side_.below, 1);
  runFor(20);  // Any second close would come from the close callback by now.
  EXPECT_EQ(server_side_.closes, 1);
  EXPECT_EQ(server_side_.closed, CloseReason::kLocal);
}

// Runs a function from the worker's scheduled work (before its flush pass).
class ScheduledCall : public Schedulable {
 public:
  explicit ScheduledCall(std::function<void()> fn) : fn_(std::move(fn)) {}
  void onScheduled() override { fn_(); }

 private:
  std::function<void()> fn_;
};

TEST_F(TcpConnectionTest, ClosedAfterADirectFlushClosesOnce) {
  // What the owner writes when it hears the connect is done asks for the
  // worker's flush pass, and the finished connect also flushes it at once.
  // Scheduled work closes the connection before the pass: the pass's entry
  // must go with the close. It stayed (the direct flush had cleared the mark
  // close() looks at), the pass finished the close before the socket's close
  // callback and onClosed came twice: an upstream connection, deleted on the
  // first, then had its close callback run on freed memory.
  client_ = std::make_unique<TcpConnection>(worker_, client_side_, 1 << 20);
  client_side_.conn = client_.get();
  ScheduledCall closer([&] { client_->close(); });
  client_side_.on_connected = [&] {
    BufferChain out;
    out.appendCopy("written once connected");
    client_->write(out);
    worker_.schedule(&closer);
  };
  ASSERT_EQ(client_->connect(reinterpret_cast<const sockaddr*>(&server_addr_), 1000), 0);
  runUntil([&] { return client_side_.closed.has_value(); });
  ASSERT_TRUE(client_side_.connected);
  runFor(20);
  EXPECT_EQ(client_side_.closes, 1);
  EXPECT_EQ(client_side_.closed, CloseReason::kLocal);
}

// A lingering close (closeAfterFlush with a linger time, a downstream HTTP
// connection's delayed_close_timeout) whose peer never reads what is queued:
// the connection and its queue were held for as long as the peer kept the
// socket open. The linger time bounds that wait too, as in Envoy.
TEST_F(TcpConnectionTest, LingeringCloseGivesUpOnAPeerThatNeverReads) {
  connectClient();
  shrinkSocketBuffers(16 << 10);
  client_->readDisable(true);  // The peer never reads.
  expectLingerEndsUnreadQueue();
}

// A peer that reads, with pauses shorter than the linger time, gets all of
// it however long that takes: progress restarts the wait.
TEST_F(TcpConnectionTest, LingeringCloseWaitsForAPeerThatReadsSlowly) {
  connectClient();
  shrinkSocketBuffers(16 << 10);
  client_->readDisable(true);
  const size_t total = 512 << 10;
  BufferChain out;
  out.appendCopy(std::string(total, 'x'));
  accepted_->write(out);
  uv_update_time(worker_.loop());
  uint64_t start = uv_now(worker_.loop());
  accepted_->closeAfterFlush(CloseReason::kLocal, 200);
  for (int pauses = 0; pauses < 100 && !client_side_.eof && !server_side_.closed; ++pauses) {
    runFor(120);  // Less than the linger time.
    client_->readDisable(false);
    size_t before = client_side_.received;
    runUntil([&] { return client_side_.received >= before + (32 << 10) || client_side_.eof; });
    client_->readDisable(true);
  }
  EXPECT_TRUE(client_side_.eof);  // The FIN, after the last byte.
  EXPECT_EQ(client_side_.received, total);
  // Longer than two linger times in all: without the restarts it would
  // have been closed on.
  EXPECT_GT(uv_now(worker_.loop()) - start, 400u);
  // The FIN is out; the peer's close ends it.
  client_->close();
  runUntil([&] { return server_side_.closed.has_value(); });
  EXPECT_EQ(server_side_.closed, CloseReason::kLocal);
}

// The peer half-closed (its request was whole) and then stopped reading:
// nothing is read any more, and the wait for the queue is bounded all the
// same.
TEST_F(TcpConnectionTest, LingeringCloseAfterThePeersFinIsBoundedToo) {
  connectClient();
  shrinkSocketBuffers(16 << 10);
  client_->readDisable(true);
  client_->shutdownAfterFlush();
  runUntil([&] { return server_side_.eof; });
  ASSERT_TRUE(server_side_.eof);
  expectLingerEndsUnreadQueue();
}

// Bytes that arrive while reading is disabled stay in the socket, and the
// loop does not spin on them (the socket stays readable); they are read once
// reading is enabled again.
TEST_F(TcpConnectionTest, ReadDisabledConnectionLeavesArrivingBytesAlone) {
  connectClient();
  server_side_.conn->readDisable(true);
  BufferChain out;
  out.appendCopy("waits");
  client_->write(out);
  EXPECT_LT(iterationsIn(100), 200);
  EXPECT_EQ(server_side_.received, 0u);
  server_side_.conn->readDisable(false);
  runUntil([&] { return server_side_.received == 5; });
  EXPECT_EQ(server_side_.text, "waits");
}

// After the peer's FIN the socket is readable for good: it is no longer
// watched for that, and the other direction still works.
TEST_F(TcpConnectionTest, PeersFinIsReadOnce) {
  connectClient();
  client_->shutdownAfterFlush();
  runUntil([&] { return server_side_.eof; });
  ASSERT_TRUE(server_side_.eof);
  EXPECT_LT(iterationsIn(100), 200);
  BufferChain back;
  back.appendCopy("reply");
  server_side_.conn->write(back);
  runUntil([&] { return client_side_.received == 5; });
  EXPECT_EQ(client_side_.text, "reply");
}

// Out of file descriptors, the listener stops watching its socket for a
// while instead of waking the loop without end, and accepts the waiting
// connection once descriptors are free again.
TEST_F(TcpConnectionTest, ListenerWaitsOutRunningOutOfFileDescriptors) {
  int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(client, 0);
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  // UBSan (the sanitizer build) checks a member call's dynamic type the
  // first time it meets that type, through a pipe: with no descriptor left
  // it reports a false "invalid vptr". Make the calls once while descriptors
  // are free, so that the checks below hit its cache.
  iterationsIn(1);
  rlimit low = saved;
  low.rlim_cur = std::min<rlim_t>(saved.rlim_cur, 1024);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  std::vector<int> filler;
  for (int fd; (fd = ::dup(client)) >= 0;) filler.push_back(fd);
  int dup_error = errno;
  // The handshake completes in the kernel; accept4 then fails with EMFILE.
  int rc =
      ::connect(client, reinterpret_cast<const sockaddr*>(&server_addr_), sizeof(server_addr_));
  int iterations = iterationsIn(60);
  for (int fd : filler) ::close(fd);
  setrlimit(RLIMIT_NOFILE, &saved);
  ASSERT_EQ(dup_error, EMFILE);
  ASSERT_EQ(rc, 0);
  EXPECT_LT(iterations, 200);
  EXPECT_EQ(accepts_, 0);
  runUntil([&] { return accepts_ == 1; });
  EXPECT_EQ(accepts_, 1);
  ::close(client);
  runUntil([&] { return server_side_.eof; });
}

// A reset (POLLERR) that comes while reading is disabled waits, without
// spinning the loop, until reading resumes, and then closes the connection
// as a remote close.
TEST_F(TcpConnectionTest, ResetWhileReadDisabledClosesOnceReadingResumes) {
  int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(client, 0);
  ASSERT_EQ(
      ::connect(client, reinterpret_cast<const sockaddr*>(&server_addr_), sizeof(server_addr_)), 0);
  runUntil([&] { return accepted_ != nullptr; });
  ASSERT_TRUE(accepted_);
  accepted_->readDisable(true);
  linger reset{1, 0};  // close() sends RST.
  ::setsockopt(client, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
  ::close(client);
  EXPECT_LT(iterationsIn(100), 200);
  EXPECT_FALSE(server_side_.closed.has_value());
  accepted_->readDisable(false);
  runUntil([&] { return server_side_.closed.has_value(); });
  EXPECT_EQ(server_side_.closed, CloseReason::kRemote);
}

}  // namespace
}  // namespace skiff
