#!/usr/bin/env bash
# HTTP/2 through skiff, h2c and h2 over TLS, against h2load direct to nginx
# (issue 4), with skiff on 1 worker.
#
#   bench/h2_tls.sh                          # 2 load points x 6 runs of 1 + 10 s
#   H2TLS_DURATION=2 bench/h2_tls.sh         # smoke run
#   H2TLS_WRITE=1 bench/h2_tls.sh            # also writes bench/results/h2_tls.md
#
# Knobs: H2TLS_DURATION (s, 10), H2TLS_WARMUP (s, 1), H2TLS_POINTS ("8x10 64x100"),
# H2TLS_WRITE (0), H2TLS_LOAD_CPUS (0), H2TLS_PROXY_CPUS (1), SKIFF_BIN
# (build/skiff). Needs nginx-light, nghttp2-client (h2load), openssl,
# util-linux (taskset), python3. It measures; it asserts nothing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
export SKIFF_BIN="${SKIFF_BIN:-$root/build/skiff}"

for cmd in nginx h2load openssl taskset python3; do
  if ! command -v "$cmd" >/dev/null 2>&1 && [[ ! -x "/usr/sbin/$cmd" ]]; then
    echo "h2_tls: $cmd is missing (apt-get install nginx-light nghttp2-client openssl" \
      "util-linux python3)" >&2
    exit 1
  fi
done
export PATH="$PATH:/usr/sbin"

# h2_tls.py kills everything it starts (its own process groups); this trap
# stops h2_tls.py itself on Ctrl-C or TERM, with a bounded wait.
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n "${py_pid:-}" ]] && kill -0 "$py_pid" 2>/dev/null; then
    kill -TERM "$py_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$py_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$py_pid" 2>/dev/null || true
  fi
  exit "$rc"
}
trap cleanup EXIT INT TERM

python3 "$here/lib/h2_tls.py" "$@" &
py_pid=$!
wait "$py_pid"
