// Moving request bodies through buffer chains: what a proxied body costs
// before it reaches a syscall.
#include <benchmark/benchmark.h>

#include <cstring>

#include "proxy/buffer/buffer.h"

namespace skiff {
namespace {

// A 64 KiB body read in 16 KiB slabs, moved downstream→upstream chain,
// turned into iovecs, and drained (as after a write).
void BM_MoveBodyThroughChains(benchmark::State& state) {
  const size_t body = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    ReadBuffer rb;
    BufferChain in, out;
    size_t left = body;
    while (left > 0) {
      auto span = rb.prepare();
      size_t n = std::min(left, span.size());
      rb.commit(n, in);  // The bytes are whatever the slab held: no memset.
      left -= n;
      out.move(in);
    }
    struct iovec iov[64];
    benchmark::DoNotOptimize(out.iovecs(iov, 64));
    out.drain(out.length());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(body));
}
BENCHMARK(BM_MoveBodyThroughChains)->Arg(64)->Arg(16 << 10)->Arg(1 << 20);

// Splitting: an HTTP/1 codec hands out the body part of a read while the
// header part stays with the request.
void BM_SplitMove(benchmark::State& state) {
  BufferChain src;
  src.appendCopy(std::string(4096, 'x'));
  for (auto _ : state) {
    BufferChain a;
    a.append(src.slices()[0]);
    BufferChain b;
    b.move(a, 300);
    benchmark::DoNotOptimize(b.length());
  }
}
BENCHMARK(BM_SplitMove);

// The one copying path: serializing a small header block.
void BM_AppendCopyHeaders(benchmark::State& state) {
  const std::string block =
      "HTTP/1.1 200 OK\r\ncontent-length: 64\r\ncontent-type: text/plain\r\nserver: skiff\r\n\r\n";
  for (auto _ : state) {
    BufferChain b;
    b.appendCopy(block);
    benchmark::DoNotOptimize(b.length());
  }
}
BENCHMARK(BM_AppendCopyHeaders);

}  // namespace
}  // namespace skiff
