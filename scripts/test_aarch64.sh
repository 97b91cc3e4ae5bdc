#!/usr/bin/env bash
# Cross-compiles heed and its tests for aarch64 (Debian's g++-aarch64-linux-gnu, the NEON
# kernels) in build-aarch64/ and runs the tests under qemu-user. Installs the cross compiler and
# qemu-user when missing. Arguments go to ctest: with none, the whole suite runs (.ci/run does
# that; about 5 minutes of tests under emulation on 2 cores after a 6-minute build, see
# docs/arm64.md).
#
#   scripts/test_aarch64.sh                 # the whole suite under qemu
#   scripts/test_aarch64.sh -R 'DenseCases' # some of it
#
# HEED_AARCH64_BUILD_DIR (default build-aarch64/ under the repository root) and HEED_JOBS change
# the build; HEED_AARCH64_FEW_HEAD_DIMS=ON specializes head_dim 128 only (the other sizes run the
# generic path: .ci/run does that to halve the kernels' compile time; without it every
# specialization is built and tested); HEED_TEST_SHARDS=N runs each test executable as N
# GoogleTest shards instead of one process per test; HEED_SKIP_DEPS=1 skips the package check.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

HEED_EXTRA_PACKAGES="${HEED_EXTRA_PACKAGES:-} g++-aarch64-linux-gnu qemu-user"
export HEED_EXTRA_PACKAGES
heed_deps

dir="${HEED_AARCH64_BUILD_DIR:-$HEED_ROOT/build-aarch64}"
gen=()
[[ -f "$dir/CMakeCache.txt" ]] || gen=(-G Ninja)
cmake -S "$HEED_ROOT" -B "$dir" "${gen[@]}" \
  -DCMAKE_TOOLCHAIN_FILE="$HEED_ROOT/cmake/toolchain-aarch64-linux-gnu.cmake" \
  -DCMAKE_BUILD_TYPE=Release -DHEED_BUILD_TESTS=ON -DHEED_BUILD_BENCHMARKS=OFF \
  -DHEED_BUILD_EXAMPLES=OFF -DHEED_INSTALL=OFF -DHEED_TEST_NATIVE=OFF -DHEED_TEST_CXX20=OFF \
  -DHEED_FEW_HEAD_DIMS="${HEED_AARCH64_FEW_HEAD_DIMS:-OFF}" -DHEED_TEST_SHARDS="${HEED_TEST_SHARDS:-0}"
cmake --build "$dir" -j "$HEED_JOBS"
cd "$dir"
ctest --output-on-failure -j "$HEED_JOBS" "$@"
