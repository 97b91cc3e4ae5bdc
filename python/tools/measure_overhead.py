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
    cache = heed.KVCache(1, HKV, D, dtype="f16", reserve=L + 80)
    loop = heed.EvictionLoop(cache, policy, budget=L, slack=64, q_heads=HQ)
    loop.step(0, q, k, v)
    qs = rng.standard_normal((steps, 1, HQ, D), dtype=np.float32)
    ks = rng.standard_normal((steps, 1, HKV, D), dtype=np.float32).astype(np.float16)
    t0 = time.perf_counter()
    for t in range(steps):
        loop.step(0, qs[t], ks[t], ks[t])
    return time.perf_counter() - t0


for _ in range(2):
    t_builtin = decode("h2o")
    pol = PyMass()
    t_py = decode(pol)
evictions = pol.calls // HKV
print(f"decode 650 steps at {L} keys, 1 layer, evicting every 65 steps: built-in h2o "
      f"{t_builtin * 1e3:.1f} ms, Python policy {t_py * 1e3:.1f} ms "
      f"({(t_py / t_builtin - 1) * 100:+.1f}%); {evictions} evictions x {HKV} score() calls, "
      f"{pol.seconds / pol.calls * 1e6:.1f} us inside each score(), "
      f"{(t_py - t_builtin) / evictions * 1e3:.2f} ms extra per eviction")
