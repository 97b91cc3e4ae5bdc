#!/usr/bin/env python3
"""Binding overheads (docs/python.md, "Overhead"); no assertions, numbers only.

1. heed.attention on a prefill of L = 4096 (Hq 32, Hkv 8, d 128, f16 K/V, 1 thread), median of
   5; compare with python/tools/time_attention.cpp, the same call in C++.
2. A small call (decode: 1 query over 4096 keys) to see the fixed per-call cost.
3. A Python policy evicting every ~64 steps at 4096 keys (budget 4096, slack 64), against the
   same loop with the built-in H2O: total decode time over 650 steps of one layer, and the time
   spent inside the Python score() calls.
"""

import statistics
import time

import numpy as np

import heed

HQ, HKV, D = 32, 8, 128
rng = np.random.default_rng(1)


def med(fn, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts)


L = 4096
q = rng.standard_normal((L, HQ, D), dtype=np.float32)
k = rng.standard_normal((L, HKV, D), dtype=np.float32).astype(np.float16)
v = rng.standard_normal((L, HKV, D), dtype=np.float32).astype(np.float16)
m, lo = med(lambda: heed.attention(q, k, v), 5)
print(f"python heed.attention prefill L={L} f16, 1 thread: median {m * 1e3:.2f} ms (min {lo * 1e3:.2f})")
q1 = q[-1:]
m, lo = med(lambda: heed.attention(q1, k, v), 200)
print(f"python heed.attention decode 1 x {L} keys: median {m * 1e6:.1f} us (min {lo * 1e6:.1f})")
q0 = q[:1, :, :]
k0 = k[:1]
m, lo = med(lambda: heed.attention(q0, k0, v[:1]), 2000)
print(f"python heed.attention 1 query x 1 key (fixed cost): median {m * 1e6:.1f} us")


class PyMass:
    needs = {"column_mass": "sum"}
    protect = {"recent": 2048}

    def __init__(self):
        self.calls = 0
        self.seconds = 0.0

    def score(self, inp):
        t0 = time.perf_counter()
        age = (inp.positions[-1] - inp.positions).astype(np.float32)
        s = inp.accumulated + 0.1 * np.exp2(-age / 64.0)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return s


def decode(policy, steps=650):
    """Per-step times, split into steps that evicted first and steps that did not."""
    cache = heed.KVCache(1, HKV, D, dtype="f16", reserve=L + 80)
    loop = heed.EvictionLoop(cache, policy, budget=L, slack=64, q_heads=HQ)
    loop.step(0, q, k, v)
    qs = rng.standard_normal((steps, 1, HQ, D), dtype=np.float32)
    ks = rng.standard_normal((steps, 1, HKV, D), dtype=np.float32).astype(np.float16)
    plain, evicting = [], []
    for t in range(steps):
        before = cache.length(0, 0)
        t0 = time.perf_counter()
        loop.step(0, qs[t], ks[t], ks[t])
        dt = time.perf_counter() - t0
        (evicting if cache.length(0, 0) <= before else plain).append(dt)
    return statistics.median(plain), statistics.median(evicting), len(evicting), sum(plain) + sum(evicting)


for _ in range(2):  # the second round is reported (warm)
    b_plain, b_evict, n_evict, b_total = decode("h2o")
    pol = PyMass()
    p_plain, p_evict, _, p_total = decode(pol)
print(f"decode at {L} keys (Hq {HQ}, Hkv {HKV}, d {D}, f16, 1 layer, 1 thread), budget {L} + slack 64: "
      f"{n_evict} evictions of 65 entries in 650 steps")
print(f"  built-in h2o:  step {b_plain * 1e3:.3f} ms, evicting step {b_evict * 1e3:.3f} ms "
      f"(eviction {(b_evict - b_plain) * 1e3:.3f} ms), total {b_total * 1e3:.1f} ms")
print(f"  Python policy: step {p_plain * 1e3:.3f} ms, evicting step {p_evict * 1e3:.3f} ms "
      f"(eviction {(p_evict - p_plain) * 1e3:.3f} ms), total {p_total * 1e3:.1f} ms")
per_eviction = (p_evict - p_plain) - (b_evict - b_plain)
print(f"  Python policy extra per eviction: {per_eviction * 1e3:.3f} ms "
      f"({pol.seconds / pol.calls * 1e6:.1f} us inside each of the {HKV} score() calls); "
      f"per 65 decode steps: {per_eviction / (65 * p_plain) * 100:.2f}% of the decode time")
