#!/usr/bin/env python3
"""Turns a heed_bench JSON run into the ratios of issue 2's targets (medians of repetitions).

  build/bench/heed_bench --benchmark_repetitions=5 --benchmark_format=json > run.json
  python3 bench/ratios.py run.json
"""
import json
import statistics
import sys


UNIT = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def medians(path):
    """Median rate counter (GFLOPS or GBps) of each benchmark, and median real time in seconds."""
    runs = json.load(open(path))["benchmarks"]
    by_name, times = {}, {}
    for b in runs:
        if b.get("run_type") == "aggregate":
            continue
        name = b["run_name"] if "run_name" in b else b["name"]
        name = name.replace("/real_time", "")
        name = name.split("/iterations:")[0]
        times.setdefault(name, []).append(b["real_time"] * UNIT[b.get("time_unit", "ns")])
        for key in ("GFLOPS", "GBps", "fused_over_plain", "observed_speed"):
            if key in b:
                by_name.setdefault(name, []).append(b[key])
    return ({k: statistics.median(v) for k, v in by_name.items()},
            {k: statistics.median(v) for k, v in times.items()})


def main():
    m, t = medians(sys.argv[1])
    for name in sorted(t):
        rate = f"{m[name]:9.2f}" if name in m else " " * 9
        print(f"{name:45s} {rate}   {t[name] * 1e3:10.3f} ms")
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
        ("observed / plain, paired, prefill 4096 1t", get("BM_dense_prefill_observed_paired/4096/1"), "target >= 0.97"),
        ("observed / plain, paired, prefill 4096 2t", get("BM_dense_prefill_observed_paired/4096/2"), "target >= 0.97"),
        ("decode 32768 2t, GB/s ([seq, heads, d])", get("BM_dense_decode/32768/2"), "target 24"),
        ("decode 32768 2t, GB/s ([heads, seq, d])", get("BM_dense_decode_head_major/32768/2"), "target 24"),
        ("decode 32768 2t head-major / machine read 2t", get("BM_dense_decode_head_major/32768/2") / bw2, "target 0.8"),
        ("decode 32768 2t [seq, heads, d] / machine read 2t", get("BM_dense_decode/32768/2") / bw2, "target 0.8"),
        ("decode 32768 2t [seq, heads, d] / strided read 2t", get("BM_dense_decode/32768/2") / get("BM_machine_read_strided/2"), "the layout's own read"),
        ("decode 32768 1t [seq, heads, d] / strided read 1t", get("BM_dense_decode/32768/1") / get("BM_machine_read_strided/1"), ""),
        ("decode 32768 1t head-major / machine read 1t", get("BM_dense_decode_head_major/32768/1") / get("BM_machine_read/1"), ""),
    ]
    def time(n):
        return t.get(n, float("nan"))
    for L in (4096, 32768):
        for th in (1, 2):
            rows.append((f"H2O fused decode / plain, paired, {L} {th}t",
                         get(f"BM_decode_h2o_paired/{L}/{th}"), "target <= 1.10"))
    for L in (4096, 32768):
        for th in (1, 2):
            rows.append((f"H2O fused / plain, separate runs, {L} {th}t",
                         time(f"BM_decode_h2o_fused/{L}/{th}") / time(f"BM_cache_decode/{L}/{th}"),
                         "drifts with the memory bandwidth"))
    rows.append(("evict step 4096 (exact) / cache decode 4096 1t",
                 time("BM_evict_step/4096/0") / time("BM_cache_decode/4096/1"), "target <= 0.05"))
    rows.append(("evict step 4096 (exact, paged) / paged decode 1t",
                 time("BM_evict_step_paged/4096/0") / time("BM_cache_decode_paged/4096/1"),
                 "target <= 0.05"))
    rows.append(("paged / contiguous cache decode 4096 1t",
                 time("BM_cache_decode_paged/4096/1") / time("BM_cache_decode/4096/1"), ""))
    rows.append(("paged / contiguous cache decode 32768 2t",
                 time("BM_cache_decode_paged/32768/2") / time("BM_cache_decode/32768/2"), ""))
    rows.append(("evict step 4096 (slack 64) / cache decode 4096 1t",
                 time("BM_evict_step/4096/64") / time("BM_cache_decode/4096/1"), "periodic"))
    rows.append(("SnapKV window 8192 / prefill 8192 1t, time",
                 time("BM_snapkv_window/8192") / time("BM_dense_prefill/8192/1"), "target <= 0.05"))
    for label, value, target in rows:
        print(f"{label:48s} {value:8.3f}   {target}")


if __name__ == "__main__":
    main()
