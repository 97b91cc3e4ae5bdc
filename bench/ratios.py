#!/usr/bin/env python3
"""Turns a heed_bench JSON run into the ratios of issue 2's targets (medians of repetitions).

  build/bench/heed_bench --benchmark_repetitions=5 --benchmark_format=json > run.json
  python3 bench/ratios.py run.json
"""
import json
import statistics
import sys


def medians(path):
    runs = json.load(open(path))["benchmarks"]
    by_name = {}
    for b in runs:
        if b.get("run_type") == "aggregate":
            continue
        name = b["run_name"] if "run_name" in b else b["name"]
        name = name.replace("/real_time", "")
        for key in ("GFLOPS", "GBps"):
            if key in b:
                by_name.setdefault(name, []).append(b[key])
    return {k: statistics.median(v) for k, v in by_name.items()}


def main():
    m = medians(sys.argv[1])
    for name in sorted(m):
        print(f"{name:45s} {m[name]:9.2f}")
    def get(n):
        return m.get(n, float("nan"))
    peak1, peak2 = get("BM_machine_fma/1"), get("BM_machine_fma/2")
    bw2 = get("BM_machine_read/2")
    print()
    rows = [
        ("prefill 4096 1t, GFLOP/s", get("BM_dense_prefill/4096/1"), "target 110 (issue), i.e. 75% of a 147 peak"),
        ("prefill 4096 1t / machine FMA peak 1t", get("BM_dense_prefill/4096/1") / peak1, "target 0.75"),
        ("prefill 4096 1t / naive Eigen 1t", get("BM_dense_prefill/4096/1") / get("BM_naive_prefill/4096/1"), "target 1.5"),
        ("prefill 4096 2t / 1t", get("BM_dense_prefill/4096/2") / get("BM_dense_prefill/4096/1"), "target 1.85"),
        ("prefill 4096 2t / machine FMA peak 2t", get("BM_dense_prefill/4096/2") / peak2, ""),
        ("observed / plain, prefill 4096 1t", get("BM_dense_prefill_observed/4096/1") / get("BM_dense_prefill/4096/1"), "target >= 0.97"),
        ("observed / plain, prefill 4096 2t", get("BM_dense_prefill_observed/4096/2") / get("BM_dense_prefill/4096/2"), "target >= 0.97"),
        ("decode 32768 2t, GB/s ([seq, heads, d])", get("BM_dense_decode/32768/2"), "target 24"),
        ("decode 32768 2t, GB/s ([heads, seq, d])", get("BM_dense_decode_head_major/32768/2"), "target 24"),
        ("decode 32768 2t head-major / machine read 2t", get("BM_dense_decode_head_major/32768/2") / bw2, "target 0.8"),
    ]
    for label, value, target in rows:
        print(f"{label:48s} {value:8.3f}   {target}")


if __name__ == "__main__":
    main()
