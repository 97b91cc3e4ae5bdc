"""heed.KVCache round trips and heed.EvictionLoop: outputs against float64 attention over the
kept entries, keep-sets of Python policies against the built-in ones, every registered policy,
and the error paths of Python policies."""

import numpy as np
import pytest

import heed
import reference as ref

RNG = np.random.default_rng(3)
HQ, HKV, D = 4, 2, 32


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def close(a, b, tol=2e-4):
    np.testing.assert_allclose(np.asarray(a, np.float64), b, atol=tol, rtol=tol)


@pytest.mark.parametrize("dtype,page_rows", [("f32", 0), ("f16", 0), ("bf16", 0), ("f16", 16)])
def test_cache_round_trip(dtype, page_rows):
    c = heed.KVCache(2, HKV, D, dtype=dtype, page_rows=page_rows)
    assert (c.layers, c.kv_heads, c.head_dim, c.dtype) == (2, HKV, D, dtype)
    k, v = rand(40, HKV, D), rand(40, HKV, D)
    c.append(1, k[:25], v[:25])
    c.append(1, k[25:], v[25:], positions=np.arange(100, 115))
    assert c.lengths().tolist() == [[0, 0], [40, 40]]
    conv = {"f32": lambda x: x, "f16": lambda x: x.astype(np.float16),
            "bf16": heed.to_bf16}[dtype]
    for h in range(HKV):
        np.testing.assert_array_equal(c.keys(1, h), conv(k[:, h]))
        np.testing.assert_array_equal(c.values(1, h), conv(v[:, h]))
        assert c.positions(1, h).tolist() == list(range(25)) + list(range(100, 115))
    item = {"f32": 4, "f16": 2, "bf16": 2}[dtype]
    assert c.bytes_used == 2 * 40 * (2 * D * item + 8 + 4)  # K, V, position, 1 score channel
    c.keep(1, 0, [0, 5, 39])
    np.testing.assert_array_equal(c.keys(1, 0), conv(k[[0, 5, 39], 0]))
    assert c.positions(1, 0).tolist() == [0, 5, 114]
    assert c.length(1, 0) == 3 and c.length(1, 1) == 40
    c.shrink_to_fit()
    assert c.bytes_reserved >= c.bytes_used
    c.clear()
    assert c.lengths().sum() == 0


def test_cache_errors():
    c = heed.KVCache(1, HKV, D)
    with pytest.raises(heed.HeedError, match="kv_heads"):
        c.append(0, rand(3, 3, D), rand(3, 3, D))
    with pytest.raises(heed.HeedError, match="layer"):
        c.append(1, rand(3, HKV, D), rand(3, HKV, D))
    c.append(0, rand(3, HKV, D), rand(3, HKV, D))
    with pytest.raises(heed.HeedError):
        c.keep(0, 0, [2, 1])  # not ascending
    with pytest.raises(heed.HeedError):
        c.append(0, rand(1, HKV, D), rand(1, HKV, D), positions=[1])  # not ascending
    with pytest.raises(heed.HeedError):
        heed.KVCache(0, 1, 8)
    with pytest.raises(heed.HeedError, match="dtype"):
        heed.KVCache(1, 1, 8, dtype="f64")
    assert c.lengths().tolist() == [[3, 3]]


def run(loop, cache, layer, steps, prefill=0, seed=0):
    """Prefill `prefill` tokens then decode `steps`; checks every output against float64
    attention over what the cache holds after the step (positions give the causal order)."""
    rng = np.random.default_rng(seed)
    n = prefill
    chunks = ([prefill] if prefill else []) + [1] * steps
    for n in chunks:
        q = rng.standard_normal((n, HQ, D)).astype(np.float32)
        k = rng.standard_normal((n, HKV, D)).astype(np.float32)
        v = rng.standard_normal((n, HKV, D)).astype(np.float32)
        held = cache.lengths()[layer].min()
        o = loop.step(layer, q, k, v)
        if n == 1 and held + 1 == cache.length(layer, 0):  # no eviction after the append
            kk = np.stack([cache.keys(layer, h) for h in range(HKV)], axis=1)
            vv = np.stack([cache.values(layer, h) for h in range(HKV)], axis=1)
            close(o, ref.attention(q, kk, vv)[0], 2e-3)


def test_loop_output_matches_attention_over_the_cache():
    c = heed.KVCache(1, HKV, D, dtype="f32")
    loop = heed.EvictionLoop(c, "h2o", budget=16, q_heads=HQ)
    run(loop, c, 0, steps=30, prefill=10)
    assert c.lengths().tolist() == [[16, 16]]
    o, lse, ent = loop.step(0, rand(1, HQ, D), rand(1, HKV, D), rand(1, HKV, D), return_lse=True,
                            return_entropy=True)
    assert o.shape == (1, HQ, D) and lse.shape == (HQ, 1) and ent.shape == (HQ, 1)


class PyH2O:
    """H2O written in Python: the accumulated column mass, half the budget kept as recent."""
    needs = {"column_mass": "sum"}

    def __init__(self, budget):
        self.protect = {"recent": budget // 2}

    def score(self, inp):
        return inp.accumulated


class PyKNorm:
    """KNorm written in Python: low key norm = important."""
    needs = ("keys",)

    def score(self, inp):
        return -np.linalg.norm(inp.keys.astype(np.float32), axis=1)


class PyStreaming:
    """StreamingLLM: 4 sinks, then the most recent."""
    protect = {"sinks": 4}

    def score(self, inp):
        return inp.positions.astype(np.float32)


@pytest.mark.parametrize("name,make,params,page_rows", [
    ("h2o", lambda b: PyH2O(b), {}, 0),
    ("knorm", lambda b: PyKNorm(), {}, 0),
    ("knorm", lambda b: PyKNorm(), {}, 16),  # paged: keys gathered for the policy
    ("streaming_llm", lambda b: PyStreaming(), {"sinks": 4}, 0),
])
def test_python_policy_keeps_what_the_builtin_keeps(name, make, params, page_rows):
    budget = 20
    caches = [heed.KVCache(2, HKV, D, dtype="f16", page_rows=page_rows) for _ in range(2)]
    loops = [heed.EvictionLoop(caches[0], name, budget=budget, q_heads=HQ, **params),
             heed.EvictionLoop(caches[1], make(budget), budget=budget, q_heads=HQ)]
    for c, lp in zip(caches, loops):
        for layer in range(2):
            run(lp, c, layer, steps=40, prefill=12, seed=layer)
    for layer in range(2):
        for h in range(HKV):
            assert caches[0].length(layer, h) == budget
            np.testing.assert_array_equal(caches[0].positions(layer, h),
                                          caches[1].positions(layer, h))


def test_policy_input_views():
    seen = {}

    class Probe:
        needs = {"column_mass": True, "query_window": 3, "keys": True, "last_output": True}

        def score(self, inp):
            seen.update(layer=inp.layer, head=inp.head, length=inp.length, group=inp.group,
                        budget=inp.budget, dtype=inp.dtype, keys=inp.keys.copy(),
                        positions=inp.positions.copy(), queries=inp.queries.copy(),
                        writeable=inp.keys.flags.writeable, out=inp.last_output.shape,
                        mass=inp.accumulated.copy())
            return np.zeros(inp.length)

    c = heed.KVCache(1, HKV, D, dtype="f32")
    loop = heed.EvictionLoop(c, Probe(), budget=6, q_heads=HQ)
    qs = []
    for t in range(7):
        q = rand(1, HQ, D)
        qs.append(q)
        loop.step(0, q, rand(1, HKV, D), rand(1, HKV, D))
    assert seen["length"] == 6 and seen["budget"] == 6 and seen["group"] == 2
    assert seen["dtype"] == "f32" and not seen["writeable"]
    assert seen["queries"].shape == (3, HQ, D)
    np.testing.assert_array_equal(seen["queries"], np.concatenate(qs[3:6]))
    assert seen["out"] == (HQ, D) and seen["mass"].shape == (6,)
    assert seen["keys"].shape == (6, D)


def test_python_policy_errors_leave_the_cache_unchanged():
    c = heed.KVCache(1, HKV, D, dtype="f32")

    class Boom:
        def score(self, inp):
            if inp.head == 1:
                raise KeyError("no such thing")
            return np.zeros(inp.length)

    class WrongLength:
        def score(self, inp):
            return np.zeros(inp.length + 1)

    for policy, cause in ((Boom(), KeyError), (WrongLength(), ValueError)):
        c.clear()
        loop = heed.EvictionLoop(c, policy, budget=5, q_heads=HQ)
        for _ in range(5):
            loop.step(0, rand(1, HQ, D), rand(1, HKV, D), rand(1, HKV, D))
        before = [(c.keys(0, h).copy(), c.positions(0, h).copy()) for h in range(HKV)]
        with pytest.raises(heed.PolicyError) as e:
            loop.step(0, rand(1, HQ, D), rand(1, HKV, D), rand(1, HKV, D))
        assert isinstance(e.value.__cause__, cause)
        assert isinstance(e.value, heed.HeedError) and e.value.status == "invalid argument"
        for h in range(HKV):
            np.testing.assert_array_equal(c.keys(0, h), before[h][0])
            np.testing.assert_array_equal(c.positions(0, h), before[h][1])
        with pytest.raises(heed.PolicyError):
            loop.evict_to(0, 2)
        assert c.length(0, 0) == 5


def test_cache_cannot_change_inside_a_callback():
    c = heed.KVCache(1, HKV, D, dtype="f32")

    class Meddler:
        def score(self, inp):
            c.clear()
            return np.zeros(inp.length)

    loop = heed.EvictionLoop(c, Meddler(), budget=3, q_heads=HQ)
    for _ in range(3):
        loop.step(0, rand(1, HQ, D), rand(1, HKV, D), rand(1, HKV, D))
    with pytest.raises(heed.PolicyError, match="inside a policy callback"):
        loop.step(0, rand(1, HQ, D), rand(1, HKV, D), rand(1, HKV, D))
    assert c.length(0, 0) == 3


PARAMS = {"duo_attention": {"sinks": 2, "recent": 4, "retrieval": [1]}, "snapkv": {"window": 4},
          "expected_attention": {"window": 4}, "lagkv": {"lag": 4}, "a2sf": {"lambda": 0.9}}


@pytest.mark.parametrize("name", heed.policy_names() + ["caote_h2o"])
def test_every_builtin_policy_by_name(name):
    c = heed.KVCache(2, HKV, D, dtype="f16")
    loop = heed.EvictionLoop(c, name, budget=12, q_heads=HQ, **PARAMS.get(name, {}))
    assert loop.policy_name
    run(loop, c, 0, steps=10, prefill=16)
    lens = c.lengths()[0]
    assert (lens <= 16 + 10).all()
    if name != "duo_attention":  # its retrieval head (layer 0, head 1) keeps everything
        assert (lens == 12).all()
    loop.evict_to(0, 8)


def test_loop_errors():
    c = heed.KVCache(1, HKV, D)
    with pytest.raises(heed.HeedError, match="policy 'nope'"):
        heed.EvictionLoop(c, "nope", budget=4, q_heads=HQ)
    with pytest.raises(heed.HeedError):
        heed.EvictionLoop(c, "h2o", budget=4, q_heads=HQ, recent_fraction=2.0)
    with pytest.raises(heed.HeedError, match="score channels"):
        heed.EvictionLoop(heed.KVCache(1, HKV, D, score_channels=0), "h2o", budget=4, q_heads=HQ)
    with pytest.raises(heed.HeedError):
        heed.EvictionLoop(c, "h2o", budget=4, q_heads=3)
    with pytest.raises(heed.HeedError, match="unknown need"):
        heed.EvictionLoop(c, type("P", (), {"needs": ("x",), "score": lambda s, i: 0})(),
                          budget=4, q_heads=HQ)
    loop = heed.EvictionLoop(c, "h2o", budget=4, q_heads=HQ)
    with pytest.raises(heed.HeedError, match="q must be"):
        loop.step(0, rand(1, 2, D), rand(1, HKV, D), rand(1, HKV, D))
    with pytest.raises(heed.HeedError, match="k and v"):
        loop.step(0, rand(1, HQ, D), rand(2, HKV, D), rand(2, HKV, D))
    with pytest.raises(heed.HeedError, match="dtype"):
        loop.step(0, rand(1, HQ, D).astype(np.float16), rand(1, HKV, D), rand(1, HKV, D))
    assert c.lengths().sum() == 0
