#!/usr/bin/env bash
# Single-proxy probes for working on skiff's costs (see bench/README.md):
#   bench/probe.sh mem [N] [h1|h2]  idle RSS and bytes per idle keep-alive connection (h2: h2c)
#   bench/probe.sh cpu [R]      CPU us per request (wrk -c64, GET /64), R runs per proxy
#   bench/probe.sh cap [R]      requests per core with each proxy held to half a core (root)
#   bench/probe.sh instr [N] [h1|h2]   instructions per proxied request under callgrind
#   bench/probe.sh instr-h2 [N] [CxM] [h1|h2]   the same over h2c (h2load -cC -mM)
# Uses the binary in build-bench/ unless SKIFF_BIN names another.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
export SKIFF_BIN="${SKIFF_BIN:-$root/build-bench/skiff}"
export BENCH_PROXIES="${BENCH_PROXIES:-skiff}"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec python3 "$here/lib/probe.py" "$@"
