"""Two precisions per head: heed.KVCache(tiered=True).demote / low_length / tiers, the keys and
values readers of demoted heads (float32, dequantized), heed.EvictionLoop's high_budget and
budget_bytes, what a Python policy reads of a tiered head, and the refusals."""

import numpy as np
import pytest

import heed
import reference as ref

RNG = np.random.default_rng(11)
HQ, HKV, D = 4, 2, 32


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def q8_round(x):
    """x through heed's q8 format (groups of 32, docs/quantization.md), back to float32."""
    g = np.asarray(x, np.float32).reshape(-1, 32)
    scale = (np.abs(g).max(axis=1, keepdims=True) / np.float32(127)).astype(np.float16)
    scale = scale.astype(np.float32)
    inv = np.float32(1) / np.where(scale > 0, scale, np.float32(1))
    q = np.clip(np.rint(g * np.where(scale > 0, inv, np.float32(0))), -127, 127)
    return (q.astype(np.float32) * scale).reshape(np.shape(x))


def f16_round(x):
    return np.asarray(x, np.float32).astype(np.float16).astype(np.float32)


@pytest.mark.parametrize("low_type,rounding", [("f16", f16_round), ("q8", q8_round)])
def test_demote_tiers_and_rows(low_type, rounding):
    c = heed.KVCache(2, HKV, D, dtype="f32", tiered=True, low_type=low_type)
    assert c.tiered and c.low_type == low_type
    k, v = rand(12, HKV, D), rand(12, HKV, D)
    c.append(1, k, v)
    used = c.bytes_used
    c.demote(1, 0, [1, 4, 5])                          # a sequence
    c.demote(1, 0, np.array([0, 9], dtype=np.int32))  # a NumPy array, among low entries
    c.demote(1, 1, (11,))
    low0 = [0, 1, 4, 5, 9]
    want = np.zeros(12, np.uint8)
    want[low0] = 1
    np.testing.assert_array_equal(c.tiers(1, 0), want)
    assert c.tiers(1, 0).dtype == np.uint8
    assert c.low_length(1, 0) == 5 and c.low_length(1, 1) == 1 and c.low_length(0, 0) == 0
    assert c.length(1, 0) == 12 and c.positions(1, 0).tolist() == list(range(12))
    assert c.bytes_used < used
    for h, low in ((0, low0), (1, [11])):
        for read, x in ((c.keys, k), (c.values, v)):
            rows = read(1, h)
            assert rows.dtype == np.float32 and rows.shape == (12, D)
            want = x[:, h].copy()
            want[low] = rounding(x[low, h])
            np.testing.assert_array_equal(rows, want)


def test_dtype_rule_and_q4_rows():
    """A head holding low entries reads as float32 (dequantized); the others in the storage
    dtype. The q4 rows equal those of a cache given the same (f16) values in float32."""
    c = heed.KVCache(1, HKV, D, dtype="f16", tiered=True)  # low_type q4
    same = heed.KVCache(1, HKV, D, dtype="f32", tiered=True, low_type="q4")
    k, v = rand(10, HKV, D), rand(10, HKV, D)
    c.append(0, k, v)
    same.append(0, f16_round(k), f16_round(v))
    assert c.keys(0, 0).dtype == np.float16
    c.demote(0, 0, [2, 3, 7])
    same.demote(0, 0, [2, 3, 7])
    assert c.keys(0, 0).dtype == np.float32 and c.values(0, 0).dtype == np.float32
    assert c.keys(0, 1).dtype == np.float16  # nothing demoted there
    np.testing.assert_array_equal(c.keys(0, 0), same.keys(0, 0))
    np.testing.assert_array_equal(c.values(0, 0), same.values(0, 0))
    high = [0, 1, 4, 5, 6, 8, 9]
    np.testing.assert_array_equal(c.keys(0, 0)[high], f16_round(k[high, 0]))
    # q4: within one step of its group's range.
    low = f16_round(k[[2, 3, 7], 0]).reshape(3, -1, 32)
    step = (low.max(axis=2, keepdims=True) - low.min(axis=2, keepdims=True)) / 15
    err = np.abs(c.keys(0, 0)[[2, 3, 7]].reshape(3, -1, 32) - low)
    assert np.all(err <= step * 0.5 + 1e-2)


def test_untiered_cache():
    c = heed.KVCache(1, HKV, D, dtype="f32")
    c.append(0, rand(4, HKV, D), rand(4, HKV, D))
    assert not c.tiered
    assert c.tiers(0, 0).tolist() == [0, 0, 0, 0] and c.low_length(0, 0) == 0
    with pytest.raises(heed.HeedError, match="not tiered"):
        c.demote(0, 0, [1])
    with pytest.raises(heed.HeedError):
        heed.EvictionLoop(c, "h2o", budget=4, q_heads=HQ, high_budget=2)


def test_bad_input_raises_and_changes_nothing():
    with pytest.raises(heed.HeedError):
        heed.KVCache(1, HKV, D, dtype="f16", tiered=True, page_rows=16)  # contiguous only
    with pytest.raises(heed.HeedError):
        heed.KVCache(1, HKV, D, dtype="f16", tiered=True, low_type="f32")  # not smaller
    with pytest.raises(heed.HeedError, match="dtype"):
        heed.KVCache(1, HKV, D, tiered=True, low_type="q2")
    c = heed.KVCache(1, HKV, D, dtype="f16", tiered=True)
    c.append(0, rand(6, HKV, D), rand(6, HKV, D))
    c.demote(0, 0, [2])
    before = (c.tiers(0, 0), c.keys(0, 0), c.values(0, 0))
    for bad in ([2, 3], [4, 3], [1, 6], [-1], [[1, 3]], ["a"]):
        with pytest.raises(ValueError):
            c.demote(0, 0, bad)
    with pytest.raises(ValueError):
        c.demote(0, HKV, [1])
    with pytest.raises(ValueError):
        c.demote(1, 0, [1])
    with pytest.raises(ValueError):
        c.tiers(0, -1)
    with pytest.raises(ValueError):
        c.low_length(2, 0)
    c.demote(0, 0, [])
    for a, b in zip(before, (c.tiers(0, 0), c.keys(0, 0), c.values(0, 0))):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        heed.EvictionLoop(c, "h2o", budget=4, q_heads=HQ, high_budget=5)  # above the budget
    with pytest.raises(ValueError):
        heed.EvictionLoop(c, "h2o", budget=4, q_heads=HQ, high_budget=-2)
    with pytest.raises(ValueError):
        heed.EvictionLoop(c, "h2o", budget=4, q_heads=HQ, budget_bytes=4096)  # both budgets
    with pytest.raises(ValueError):
        heed.EvictionLoop(c, "h2o", q_heads=HQ, high_budget=4, budget_bytes=100)  # too small
    with pytest.raises(ValueError):
        heed.EvictionLoop(c, "h2o", q_heads=HQ, budget_bytes=-1)
    with pytest.raises(ValueError, match="budget"):
        heed.EvictionLoop(c, "h2o", q_heads=HQ)


def steps(loop, cache, n_steps, prefill, check):
    rng = np.random.default_rng(5)
    for n in [prefill] + [1] * n_steps:
        q = rng.standard_normal((n, HQ, D)).astype(np.float32)
        k = rng.standard_normal((n, HKV, D)).astype(np.float32)
        v = rng.standard_normal((n, HKV, D)).astype(np.float32)
        o = loop.step(0, q, k, v)
        assert np.all(np.isfinite(o))
        check(n, q, o)


def high_counts(cache, layer):
    counts = []
    for h in range(cache.kv_heads):
        t = cache.tiers(layer, h)
        assert int(t.sum()) == cache.low_length(layer, h)
        counts.append(int((t == 0).sum()))
    return counts


def test_loop_demotes_only_and_attends_to_both_tiers():
    """budget 0 with high_budget: nothing is evicted; every output equals float64 attention
    over the cache's rows as read back (high f16, low q4 dequantized)."""
    c = heed.KVCache(1, HKV, D, dtype="f16", tiered=True)
    loop = heed.EvictionLoop(c, "h2o", budget=0, q_heads=HQ, high_budget=5)
    assert loop.high_budget == 5

    def check(n, q, o):
        assert max(high_counts(c, 0)) <= 5
        if n == 1:
            kk = np.stack([c.keys(0, h).astype(np.float32) for h in range(HKV)], axis=1)
            vv = np.stack([c.values(0, h).astype(np.float32) for h in range(HKV)], axis=1)
            np.testing.assert_allclose(o, ref.attention(q, kk, vv)[0], atol=2e-3, rtol=2e-3)

    steps(loop, c, 20, 8, check)
    assert c.length(0, 0) == 28 and c.low_length(0, 0) == 23


@pytest.mark.parametrize("policy", ["h2o", "snapkv", "knorm"])
def test_loop_high_budget_keeps_at_most_that_many_high(policy):
    c = heed.KVCache(1, HKV, D, dtype="f16", tiered=True)
    loop = heed.EvictionLoop(c, policy, budget=12, q_heads=HQ, high_budget=4)

    def check(n, q, o):
        assert c.lengths().max() <= 12
        assert max(high_counts(c, 0)) <= 4

    steps(loop, c, 25, 16, check)
    assert c.lengths().tolist() == [[12, 12]] and c.low_length(0, 0) == 8


def test_budget_bytes():
    c = heed.KVCache(1, HKV, D, dtype="f16", tiered=True)
    # An entry: K and V rows, its position, one score channel and its tier byte.
    high, low = 2 * D * 2 + 8 + 4 + 1, 2 * (D // 2 + D // 8) + 8 + 4 + 1
    loop = heed.EvictionLoop(c, "h2o", q_heads=HQ, high_budget=4, budget_bytes=4 * high + 8 * low)
    assert loop.budget(0) == 12

    def check(n, q, o):
        assert max(high_counts(c, 0)) <= 4

    steps(loop, c, 20, 4, check)
    assert c.lengths().tolist() == [[12, 12]]
    assert c.bytes_used == HKV * (4 * high + 8 * low)
    plain = heed.KVCache(1, HKV, D, dtype="f16")
    loop = heed.EvictionLoop(plain, "h2o", q_heads=HQ, budget_bytes=10 * (2 * D * 2 + 12))
    assert loop.budget(0) == 10


def test_python_policy_reads_tiered_heads_as_float32():
    seen = []

    class Probe:
        needs = {"column_mass": True, "keys": True}

        def score(self, inp):
            seen.append((inp.dtype, inp.keys.dtype, inp.keys.shape, inp.values.dtype))
            cache = loop.cache
            np.testing.assert_array_equal(inp.keys, cache.keys(inp.layer, inp.head))
            np.testing.assert_array_equal(inp.values, cache.values(inp.layer, inp.head))
            return inp.accumulated

    c = heed.KVCache(1, HKV, D, dtype="f16", tiered=True)
    loop = heed.EvictionLoop(c, Probe(), budget=8, q_heads=HQ, high_budget=3)
    steps(loop, c, 12, 4, lambda n, q, o: None)
    assert ("f16", np.float16, (4, D), np.float16) in seen   # before any demotion
    assert ("f32", np.float32, (8, D), np.float32) in seen   # a head holding low entries
