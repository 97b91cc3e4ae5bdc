#!/usr/bin/env python3
"""Turns a heed_bench JSON run into the target ratios (medians of the repetitions).

  build/bench/heed_bench --benchmark_repetitions=3 --benchmark_format=json > run.json
  python3 bench/ratios.py run.json

Prints every benchmark's median rate and time, then the roofline fractions per ISA and layout
(counter `roofline`: t_roof / t, t_roof = max(bytes / read bandwidth, flops / FMA peak), limits
measured in the same process just before each benchmark, see bench/roofline.hpp), then the
ratios the issues target.
"""
import json
import re
import statistics
import sys


UNIT = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
COUNTERS = ("GFLOPS", "GBps", "roofline", "read_GBps", "fma_GFLOPS", "fused_over_plain",
            "observed_speed")


def medians(path):
    """{name: {counter: median}} and {name: median real time in seconds}."""
    runs = json.load(open(path))["benchmarks"]
    values, times = {}, {}
    for b in runs:
        if b.get("run_type") == "aggregate":
            continue
        name = b["run_name"] if "run_name" in b else b["name"]
        name = name.replace("/real_time", "").replace("/manual_time", "")
        name = re.sub(r"/iterations:\d+", "", name)
        times.setdefault(name, []).append(b["real_time"] * UNIT[b.get("time_unit", "ns")])
        for key in COUNTERS:
            if key in b:
                values.setdefault(name, {}).setdefault(key, []).append(b[key])
    med = {n: {k: statistics.median(v) for k, v in c.items()} for n, c in values.items()}
    return med, {k: statistics.median(v) for k, v in times.items()}


def main():
    m, t = medians(sys.argv[1])
    nan = float("nan")

    def get(name, key):
        return m.get(name, {}).get(key, nan)

    def time(name):
        return t.get(name, nan)

    print(f"{'benchmark':60s} {'rate':>9s} {'roofline':>8s} {'time':>12s}")
    for name in sorted(t):
        c = m.get(name, {})
        rate = next((c[k] for k in ("GFLOPS", "GBps") if k in c), None)
        rate = f"{rate:9.2f}" if rate is not None else " " * 9
        roof = f"{c['roofline']:8.3f}" if "roofline" in c else " " * 8
        print(f"{name:60s} {rate} {roof} {t[name] * 1e3:9.3f} ms")

    isas = sorted({n.split("/")[1] for n in m if n.startswith("BM_machine_fma/")})
    print("\nroofline fractions (t_roof / t), f16 K/V, GQA 4, per ISA")
    print(f"{'':44s}" + "".join(f"{i:>10s}" for i in isas))
    rows = []
    for layout, label in (("head_seq", "head-major"), ("seq_head", "[seq, heads, d]")):
        for L, th in ((32768, 2), (32768, 1), (4096, 1), (4096, 2)):
            rows.append((f"decode {L} {th}t {label}",
                         [get(f"BM_dense_decode/{i}/{layout}/f16/g4/{L}/{th}", "roofline")
                          for i in isas]))
    for L, th in ((4096, 1), (4096, 2)):
        rows.append((f"prefill {L} {th}t (of the FMA peak)",
                     [get(f"BM_dense_prefill/{i}/{L}/{th}", "roofline") for i in isas]))
    rows.append(("prefill 4096 2t / 1t",
                 [get(f"BM_dense_prefill/{i}/4096/2", "GFLOPS") /
                  get(f"BM_dense_prefill/{i}/4096/1", "GFLOPS") for i in isas]))
    for label, vals in rows:
        print(f"{label:44s}" + "".join(f"{v:10.3f}" for v in vals))

    print("\ndecode matrix, 32768 keys (roofline 1t / 2t)")
    for i in isas:
        for layout in ("head_seq", "seq_head"):
            cells = []
            for dt, g in (("f16", 1), ("f16", 2), ("f16", 4), ("f16", 8), ("bf16", 4),
                          ("f32", 4)):
                base = f"BM_dense_decode/{i}/{layout}/{dt}/g{g}/32768"
                cells.append(f"{dt} g{g} {get(base + '/1', 'roofline'):.2f}/"
                             f"{get(base + '/2', 'roofline'):.2f}")
            print(f"  {i:7s} {layout:9s} " + "  ".join(cells))

    print("\nmachine limits (1t / 2t)")
    for i in isas:
        print(f"  FMA peak {i:8s} {get(f'BM_machine_fma/{i}/1', 'GFLOPS'):8.1f} / "
              f"{get(f'BM_machine_fma/{i}/2', 'GFLOPS'):8.1f} GFLOP/s")
    print(f"  read               {get('BM_machine_read/1', 'GBps'):8.1f} / "
          f"{get('BM_machine_read/2', 'GBps'):8.1f} GB/s")
    print(f"  strided read       {get('BM_machine_read_strided/1', 'GBps'):8.1f} / "
          f"{get('BM_machine_read_strided/2', 'GBps'):8.1f} GB/s")

    print("\nother targets")
    best = isas[-1] if isas else ""
    best = "avx512" if "avx512" in isas else best
    rows = [
        ("prefill 4096 1t / naive Eigen 1t",
         get(f"BM_dense_prefill/{best}/4096/1", "GFLOPS") / get("BM_naive_prefill/4096/1", "GFLOPS"),
         "target >= 1.5"),
    ]
    for i in isas:
        for th in (1, 2):
            rows.append((f"observed / plain, paired, prefill 4096 {th}t {i}",
                         get(f"BM_dense_prefill_observed_paired/{i}/4096/{th}", "observed_speed"),
                         "target >= 0.97"))
    for L in (4096, 32768):
        for th in (1, 2):
            rows.append((f"H2O fused decode / plain, paired, {L} {th}t",
                         get(f"BM_decode_h2o_paired/{L}/{th}", "fused_over_plain"),
                         "target <= 1.10"))
    for L in (4096, 32768):
        for th in (1, 2):
            rows.append((f"cache decode {L} {th}t roofline", get(f"BM_cache_decode/{L}/{th}", "roofline"),
                         ""))
    rows.append(("evict step 4096 (exact) / cache decode 4096 1t",
                 time("BM_evict_step/4096/0") / time("BM_cache_decode/4096/1"), "target <= 0.05"))
    rows.append(("evict step 4096 (exact, paged) / paged decode 1t",
                 time("BM_evict_step_paged/4096/0") / time("BM_cache_decode_paged/4096/1"),
                 "target <= 0.05"))
    rows.append(("paged / contiguous cache decode 4096 1t",
                 time("BM_cache_decode_paged/4096/1") / time("BM_cache_decode/4096/1"), ""))
    rows.append(("evict step 4096 (slack 64) / cache decode 4096 1t",
                 time("BM_evict_step/4096/64") / time("BM_cache_decode/4096/1"), "periodic"))
    rows.append(("SnapKV window 8192 / prefill 8192 1t, time",
                 time("BM_snapkv_window/8192") / time("BM_dense_prefill/automatic/8192/1"),
                 "target <= 0.05"))
    for label, value, target in rows:
        print(f"{label:52s} {value:8.3f}   {target}")


if __name__ == "__main__":
    main()
