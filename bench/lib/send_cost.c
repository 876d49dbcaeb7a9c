/* What one send costs the kernel, by the syscall that makes it (bench/probe.sh send-cost).
 *
 * A connected loopback TCP pair in one thread (plus one idle thread, since skiff is
 * multi-threaded and the kernel takes a file reference per call then): each iteration
 * sends a 200-byte head and a BODY-byte body and reads it back, so it pays what a proxy
 * pays per response, minus the wakeups. Variants: writev of two iovecs (what
 * uv_try_write does), sendmsg of two iovecs, both copied into one buffer then write or
 * send, and the head alone with write or send. Prints the thread CPU time per
 * iteration, best of ROUNDS rounds of 10,000, the variants taking turns.
 *
 *   cc -O2 -o send_cost send_cost.c -lpthread && taskset -c 1 ./send_cost 64 15
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static double thread_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

static void* idle(void* arg) {
  (void)arg;
  pause();
  return NULL;
}

enum { kHead = 200, kMaxBody = 65536, kIters = 10000, kVariants = 6 };
static char head[kHead], body[kMaxBody], joined[kHead + kMaxBody], sink[kHead + kMaxBody];

int main(int argc, char** argv) {
  int body_len = argc > 1 ? atoi(argv[1]) : 64;
  int rounds = argc > 2 ? atoi(argv[2]) : 15;
  if (body_len < 0 || body_len > kMaxBody) return 2;
  pthread_t t;
  pthread_create(&t, NULL, idle, NULL);
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof a;
  if (bind(ls, (struct sockaddr*)&a, sizeof a) || listen(ls, 1) ||
      getsockname(ls, (struct sockaddr*)&a, &alen))
    return 1;
  int c = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(c, (struct sockaddr*)&a, sizeof a)) return 1;
  int s = accept(ls, NULL, NULL);
  int one = 1;
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  memset(head, 'h', sizeof head);
  memset(body, 'b', sizeof body);
  const char* names[kVariants] = {"writev(2)", "sendmsg(2)", "copy+write", "copy+send",
                                  "head write", "head send"};
  double best[kVariants];
  for (int v = 0; v < kVariants; ++v) best[v] = 1e18;
  for (int r = 0; r < rounds; ++r) {
    for (int v = 0; v < kVariants; ++v) {
      int total = v >= 4 ? kHead : kHead + body_len;
      double t0 = thread_ns();
      for (int i = 0; i < kIters; ++i) {
        struct iovec iov[2] = {{head, kHead}, {body, (size_t)body_len}};
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
        switch (v) {
          case 0: writev(c, iov, 2); break;
          case 1: sendmsg(c, &msg, MSG_NOSIGNAL); break;
          case 2:
          case 3:
            memcpy(joined, head, kHead);
            memcpy(joined + kHead, body, body_len);
            if (v == 2) write(c, joined, total);
            else send(c, joined, total, MSG_NOSIGNAL);
            break;
          case 4: write(c, head, kHead); break;
          case 5: send(c, head, kHead, MSG_NOSIGNAL); break;
        }
        for (int got = 0; got < total;) {
          ssize_t k = read(s, sink, sizeof sink);
          if (k <= 0) return 1;
          got += (int)k;
        }
      }
      double ns = (thread_ns() - t0) / kIters;
      if (ns < best[v]) best[v] = ns;
    }
  }
  printf("body %5d B:", body_len);
  for (int v = 0; v < kVariants; ++v) printf("  %s %.0f", names[v], best[v]);
  printf("  (ns per send and read back, best of %d)\n", rounds);
  return 0;
}
