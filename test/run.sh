#!/usr/bin/env bash
# Sets up the machine, builds skiff and runs every test through ctest: unit
# tests (GoogleTest) and the integration suite (real sockets, curl, wrk,
# nginx, h2load, openssl), first on the release build, then again on a build
# with AddressSanitizer and UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."

.ci/setup
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j2
ctest --test-dir build --output-on-failure -j2

cmake -S . -B build-asan -DSKIFF_SANITIZE=ON -DSKIFF_BENCH=OFF
cmake --build build-asan -j2
ctest --test-dir build-asan --output-on-failure -j2
