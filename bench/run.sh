#!/usr/bin/env bash
# One command for skiff's HTTP/1.1 and HTTP/2 benchmarks against HAProxy, nginx
# and no proxy.
#
#   bench/run.sh                      # full run (about 15 minutes at the defaults)
#   BENCH_DURATION=3 bench/run.sh     # smoke run
#
# It installs the missing Debian packages, builds skiff if it is not built,
# then hands over to bench/lib/bench.py, which starts every server on
# 127.0.0.1 only, measures, and writes bench/results/. Environment knobs are
# listed in bench/README.md. This measures; it asserts nothing about timings.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

# Setup: install only what is missing. Each entry is "package:command".
need=()
for pair in haproxy:haproxy nginx-light:nginx wrk:wrk nghttp2-client:h2load \
            gnuplot-nox:gnuplot procps:ps util-linux:taskset python3:python3; do
  pkg="${pair%%:*}" cmd="${pair##*:}"
  if ! command -v "$cmd" >/dev/null 2>&1 && [[ ! -x "/usr/sbin/$cmd" ]]; then
    need+=("$pkg")
  fi
done
if ((${#need[@]})); then
  echo "bench: installing ${need[*]}" >&2
  if [[ $(id -u) -ne 0 ]]; then
    echo "bench: missing packages ${need[*]}; run as root or install them" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

# The Debian packages start system services; the harness uses its own
# instances on free ports, so stopping those is not needed, and it never
# touches them.

build_dir="${SKIFF_BUILD_DIR:-$root/build-bench}"
export SKIFF_BIN="${SKIFF_BIN:-$build_dir/skiff}"
export SKIFF_MICROBENCH_BIN="${SKIFF_MICROBENCH_BIN:-$build_dir/bench/skiff_microbench}"
if [[ ! -x "$SKIFF_BIN" || "${BENCH_BUILD:-0}" == 1 ]]; then
  echo "bench: building skiff in $build_dir" >&2
  cmake -S "$root" -B "$build_dir" -DSKIFF_BENCH=ON -DCMAKE_BUILD_TYPE=Release >&2
  cmake --build "$build_dir" -j"$(nproc)" --target skiff skiff_microbench >&2
fi

# 10,000 held connections need far more than the default 1024 descriptors,
# for the client and for every proxy (downstream + upstream sockets).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# bench.py kills everything it starts; this trap is the second line of
# defence for anything left in our process group (Ctrl-C, a crash).
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n "${bench_pid:-}" ]] && kill -0 "$bench_pid" 2>/dev/null; then
    kill -TERM "$bench_pid" 2>/dev/null || true
    wait "$bench_pid" 2>/dev/null || true
  fi
  exit "$rc"
}
trap cleanup EXIT INT TERM

python3 "$here/lib/bench.py" "$@" &
bench_pid=$!
wait "$bench_pid"
