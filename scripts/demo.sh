#!/usr/bin/env bash
# Installs missing Debian packages, builds heed (Release, Ninja, in build/) and runs the main
# demo: heed_demo (the kernels against the reference, throughput, per-head entropy), then, on the
# real model (stories260K ships in data/; HEED_DATA_DIR picks another folder), a story generated
# through heed, a short perplexity-vs-policy table and a perplexity-vs-budget plot (SVG).
# Arguments go to heed_demo. See scripts/common.sh for the environment variables that change
# the build directory, type and jobs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

heed_deps
heed_configure -DHEED_BUILD_EXAMPLES=ON
cmake --build "$HEED_BUILD_DIR" --target heed_demo heed-eval -j "$HEED_JOBS"

demo="$(find "$HEED_BUILD_DIR" -type f -name heed_demo -perm -u+x | head -n 1)"
if [[ -z "$demo" ]]; then
  echo "demo.sh: heed_demo was not built" >&2
  exit 1
fi
"$demo" "$@"

data="${HEED_DATA_DIR:-$HEED_ROOT/data}"
eval_bin="$(find "$HEED_BUILD_DIR" -type f -name heed-eval -perm -u+x | head -n 1)"
if [[ ! -f "$data/stories260K.bin" || -z "$eval_bin" ]]; then
  echo "demo.sh: no model in $data (set HEED_DATA_DIR): skipping the real-model demo"
  exit 0
fi
model=(--model "$data/stories260K.bin" --tokenizer "$data/tok512.bin")
echo
echo "== stories260K through heed: greedy story (256 tokens, full KV cache)"
"$eval_bin" generate "${model[@]}" --steps 256
echo
echo "== perplexity on tinystories_dev.txt (4 windows of 512 tokens), KV budget 128 = 25%"
printf '%-16s %s\n' policy result
for p in full streaming_llm h2o tova snapkv random; do
  budget=128
  [[ "$p" == full ]] && budget=0
  printf '%-16s %s\n' "$p" "$("$eval_bin" ppl "${model[@]}" --text "$data/tinystories_dev.txt" \
    --windows 4 --policy "$p" --budget "$budget" | tail -n 1)"
done
# The same H2O run on a paged KV cache (64-row pages: exact eviction moves rows within a page).
printf '%-16s %s\n' "h2o (paged)" "$("$eval_bin" ppl "${model[@]}" --text "$data/tinystories_dev.txt" \
  --windows 4 --policy h2o --budget 128 --page-rows 64 | tail -n 1)"
echo
echo "== the same with a quantized KV cache (docs/quantization.md)"
for row in "full q8|--kv-dtype q8" "full q4|--kv-dtype q4" "full q4 rotated|--kv-dtype q4 --rotate-keys 1" \
  "h2o q8|--kv-dtype q8 --policy h2o --budget 128"; do
  # shellcheck disable=SC2086
  printf '%-16s %s\n' "${row%%|*}" "$("$eval_bin" ppl "${model[@]}" --text "$data/tinystories_dev.txt" \
    --windows 4 ${row#*|} | tail -n 1)"
done
# Every policy at 12.5%, 25%, 50% and 100% of the context on 2 windows (the whole text, 371
# windows, takes about 25 minutes: docs/real-model.md); the plot is an SVG beside the CSV.
out="$HEED_BUILD_DIR/demo"
mkdir -p "$out"
echo
echo "== perplexity vs KV budget, every policy (2 windows of 512 tokens)"
"$eval_bin" sweep "${model[@]}" --text "$data/tinystories_dev.txt" --windows 2 --out "$out" |
  tail -n 1
echo "demo.sh: open $out/sweep.svg for the plot (the full-text sweep: docs/real-model.md)"
