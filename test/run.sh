#!/usr/bin/env bash
# Sets up the machine, builds skiff and runs every test: unit tests (GoogleTest)
# and the integration suite (real sockets, curl, wrk, nginx), through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."

.ci/setup
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j2
ctest --test-dir build --output-on-failure -j2
