#!/usr/bin/env bash
# Builds heed's libFuzzer targets (tests/fuzz/, docs/fuzzing.md) in build-fuzz/ with clang-14
# (ASan + UBSan), runs each for a bounded time from its seed corpus and fails on any finding.
#
#   bash scripts/fuzz.sh                    # every target, 30 s each
#   bash scripts/fuzz.sh select kv_cache_ops
#   HEED_FUZZ_SECONDS=600 bash scripts/fuzz.sh dense_c_api
#
# Environment:
#   HEED_FUZZ_SECONDS    seconds per target (default 30; libFuzzer's -max_total_time)
#   HEED_FUZZ_JOBS       targets run at once (default HEED_JOBS, else 2): each is one process
#   HEED_JOBS            parallel build jobs (default 2)
#   HEED_FUZZ_DIR        build directory (default build-fuzz/ under the repository root)
#   HEED_FUZZ_AVX2       ON (default): the AVX2 kernels too; OFF: only the SSE2 ones (the generic
#                        head-dim path), which halves the build (the CI stage's choice)
#   HEED_FUZZ_CMAKE_ARGS extra configure arguments
#   HEED_SKIP_DEPS=1     do not check / install the Debian packages (clang-14, its runtimes)
#
# Each run starts from a scratch copy of tests/fuzz/corpus/<target>/ (the committed corpus is not
# modified) in $HEED_FUZZ_DIR/runs/<target>/; a finding leaves its input there as crash-*,
# timeout-*, leak-* or oom-*, and the script prints the command that reproduces it.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

seconds="${HEED_FUZZ_SECONDS:-30}"
fuzz_jobs="${HEED_FUZZ_JOBS:-${HEED_JOBS:-2}}"
dir="${HEED_FUZZ_DIR:-$HEED_ROOT/build-fuzz}"
all_targets=(dense_c_api select kv_cache_ops eviction_loop llama2c_files sparse_inputs)
if [[ $# -gt 0 ]]; then targets=("$@"); else targets=("${all_targets[@]}"); fi

if [[ "${HEED_SKIP_DEPS:-0}" != 1 ]]; then
  # shellcheck source=install_deps.sh
  HEED_EXTRA_PACKAGES="${HEED_EXTRA_PACKAGES:-} $HEED_FUZZ_PACKAGES" \
    source "$HEED_ROOT/scripts/install_deps.sh"
fi

# A lean build: only heed::heed and the fuzz targets; head_dim 128 is the only specialized size
# (HEED_FEW_HEAD_DIMS), no AVX-512 kernels (AVX2 as HEED_FUZZ_AVX2 says). -O1: instrumented
# kernels compile in a fraction of the -O3 time and still run fast enough.
gen=()
[[ -f "$dir/CMakeCache.txt" ]] || gen=(-G Ninja)
# shellcheck disable=SC2086
cmake -S "$HEED_ROOT" -B "$dir" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
  -DHEED_BUILD_FUZZERS=ON -DHEED_FEW_HEAD_DIMS=ON -DHEED_ENABLE_AVX512=OFF \
  -DHEED_ENABLE_AVX2="${HEED_FUZZ_AVX2:-ON}" \
  -DHEED_BUILD_TESTS=OFF -DHEED_BUILD_BENCHMARKS=OFF -DHEED_BUILD_EXAMPLES=OFF \
  -DHEED_BUILD_PYTHON=OFF -DHEED_INSTALL=OFF ${HEED_FUZZ_CMAKE_ARGS:-}
build_targets=()
for t in "${targets[@]}"; do build_targets+=(--target "heed_fuzz_$t"); done
cmake --build "$dir" -j "$HEED_JOBS" "${build_targets[@]}"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

# run_one <target>: the fuzzer in its scratch dir, output in its log; returns its status.
run_one() {
  local t="$1" work="$dir/runs/$1"
  rm -rf "$work"
  mkdir -p "$work/corpus"
  cp "$HEED_ROOT/tests/fuzz/corpus/$t/"* "$work/corpus/"
  # -timeout: one input running 10 s is a hang; -rss_limit_mb: 2 GB is an out-of-memory finding.
  (cd "$work" && "$dir/tests/fuzz/heed_fuzz_$t" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/" corpus \
    >"$work/log" 2>&1)
}

echo "fuzz: ${targets[*]}: ${seconds} s each, $fuzz_jobs at a time"
declare -A pids=()
failed=()
for t in "${targets[@]}"; do
  while [[ $(jobs -rp | wc -l) -ge $fuzz_jobs ]]; do sleep 1; done
  run_one "$t" &
  pids[$t]=$!
done
for t in "${targets[@]}"; do
  if ! wait "${pids[$t]}"; then failed+=("$t"); fi
done

# Per target: executions, exec/s and coverage (the last line libFuzzer printed with cov:).
echo
printf '%-16s %10s %8s %8s %8s  %s\n' target execs exec/s cov ft result
for t in "${targets[@]}"; do
  log="$dir/runs/$t/log"
  last="$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1 || true)"
  execs="$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log" | tail -n 1)"
  rate="$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+)/\1/p' "$log" | tail -n 1)"
  cov="$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")"
  ft="$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")"
  result=ok
  [[ " ${failed[*]} " == *" $t "* ]] && result=FINDING
  printf '%-16s %10s %8s %8s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" \
    "$result"
done

if [[ ${#failed[@]} -gt 0 ]]; then
  for t in "${failed[@]}"; do
    echo
    echo "fuzz: FINDING in $t (log: $dir/runs/$t/log):"
    grep -E 'ERROR|runtime error|check failed|SUMMARY' "$dir/runs/$t/log" | head -n 10 || true
    for a in "$dir/runs/$t"/crash-* "$dir/runs/$t"/timeout-* "$dir/runs/$t"/leak-* \
      "$dir/runs/$t"/oom-*; do
      [[ -e "$a" ]] && echo "  reproduce: HEED_FUZZ_VERBOSE=1 $dir/tests/fuzz/heed_fuzz_$t $a"
    done
  done
  exit 1
fi
echo "fuzz: no findings"
