"""heed.attention and its sparse / linear siblings against float64 NumPy references."""

import numpy as np
import pytest

import heed
import reference as ref

RNG = np.random.default_rng(7)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def close(a, b, tol=2e-4):
    np.testing.assert_allclose(np.asarray(a, np.float64), b, atol=tol, rtol=tol)


@pytest.mark.parametrize("lq,lk,hq,hkv,d", [(1, 300, 4, 2, 64), (37, 37, 4, 1, 128),
                                            (20, 90, 6, 3, 48)])
@pytest.mark.parametrize("causal", [True, False])
def test_dense_shapes(lq, lk, hq, hkv, d, causal):
    q, k, v = rand(lq, hq, d), rand(lk, hkv, d), rand(lk, hkv, d)
    o, lse, ent = heed.attention(q, k, v, causal=causal, return_lse=True, return_entropy=True)
    ro, rl, re = ref.attention(q, k, v, causal=causal)
    assert o.dtype == np.float32 and o.shape == (lq, hq, d)
    assert lse.shape == (hq, lq) and ent.shape == (hq, lq)
    close(o, ro)
    close(lse, rl)
    close(ent, re, 5e-4)


OPTIONS = [
    dict(window=5),
    dict(softcap=1.5),
    dict(alibi=np.linspace(0.05, 0.4, 4).astype(np.float32)),
    dict(sinks=np.array([0.5, -1.0, 2.0, 0.0], np.float32)),
    dict(scale=0.3),
    dict(q_offset=10),
    dict(window=8, softcap=2.0, alibi=np.full(4, 0.1, np.float32), sinks=np.ones(4, np.float32)),
]


@pytest.mark.parametrize("opts", OPTIONS)
@pytest.mark.parametrize("lq", [1, 24])
def test_dense_options(opts, lq):
    q, k, v = rand(lq, 4, 64), rand(40, 2, 64), rand(40, 2, 64)
    o, lse, ent = heed.attention(q, k, v, return_lse=True, return_entropy=True, **opts)
    ro, rl, re = ref.attention(q, k, v, **opts)
    close(o, ro)
    close(lse, rl)
    close(ent, re, 5e-4)


def test_kv_dtypes():
    q, k, v = rand(9, 4, 64), rand(50, 2, 64), rand(50, 2, 64)
    o16 = heed.attention(q, k.astype(np.float16), v.astype(np.float16))
    close(o16, ref.attention(q, k.astype(np.float16), v.astype(np.float16))[0])
    ob = heed.attention(q, heed.to_bf16(k), heed.to_bf16(v))
    close(ob, ref.attention(q, ref.bf16_round(k), ref.bf16_round(v))[0])
    np.testing.assert_array_equal(heed.from_bf16(heed.to_bf16(k)), ref.bf16_round(k))


def test_layouts_and_strides():
    q, k, v = rand(16, 4, 64), rand(30, 2, 64), rand(30, 2, 64)
    want = heed.attention(q, k, v)
    # [H, L, d] arrays: zero-copy through the layout argument; the output comes back [H, L, d].
    o_hsd = heed.attention(np.ascontiguousarray(q.transpose(1, 0, 2)),
                           np.ascontiguousarray(k.transpose(1, 0, 2)),
                           np.ascontiguousarray(v.transpose(1, 0, 2)), layout="hsd")
    assert o_hsd.shape == (4, 16, 64)
    close(o_hsd.transpose(1, 0, 2), want, 1e-6)
    # A transposed view of a [H, L, d] buffer, read in place as [L, H, d].
    kt = np.ascontiguousarray(k.transpose(1, 0, 2)).transpose(1, 0, 2)
    close(heed.attention(q, kt, v), want, 1e-6)
    # Padded rows (a slice of a wider buffer) and a sliced sequence.
    big = rand(60, 2, 80)
    big[:30, :, :64] = k
    close(heed.attention(q, big[:30, :, :64], v), want, 1e-6)
    close(heed.attention(q[:8], k[::2], v[::2]), ref.attention(q[:8], k[::2], v[::2])[0])
    # Layouts that need a copy: a non-contiguous last dim, negative strides, float32 big-endian.
    kd = np.ascontiguousarray(np.repeat(k, 2, axis=2))[:, :, ::2]
    close(heed.attention(q, kd, v), want, 1e-6)
    close(heed.attention(q, k[::-1], v[::-1]), ref.attention(q, k[::-1], v[::-1])[0], 1e-5)
    close(heed.attention(q, k.astype(">f4"), v), want, 1e-6)


def test_zero_copy_rules():
    zc = heed._heed._reads_in_place
    k = rand(30, 2, 64)
    assert zc(k)
    assert zc(k.astype(np.float16)) and zc(heed.to_bf16(k))
    assert zc(k[::2]) and zc(k[3:9]) and zc(k[:, 1:]) and zc(rand(30, 2, 80)[:, :, :64])
    assert zc(np.ascontiguousarray(k.transpose(1, 0, 2)).transpose(1, 0, 2))
    assert zc(np.ascontiguousarray(k.transpose(1, 0, 2)), "hsd")
    assert not zc(k[:, :, ::2])  # the head dim must be contiguous
    assert not zc(k[::-1])  # negative strides
    assert not zc(k.astype(">f4"))  # non-native byte order
    assert not zc(np.broadcast_to(k[:1], k.shape))  # rows that overlap


def test_threads_are_bitwise_equal():
    q, k, v = rand(70, 8, 128), rand(200, 2, 128), rand(200, 2, 128)
    a = heed.attention(q, k, v, threads=1)
    b = heed.attention(q, k, v, threads=2)
    c = heed.attention(q, k, v, threads=0)  # the machine's cores
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_block_sparse():
    lq = lk = 96
    q, k, v = rand(lq, 2, 64), rand(lk, 1, 64), rand(lk, 1, 64)
    # Per (head, query block of 32): the listed key blocks of 32 (ascending).
    lists = [[0], [1], [0, 2], [], [0, 1], [1, 2]]  # head 0: qb 0..2, head 1: qb 0..2
    ptr, idx = heed.csr(lists)
    o = heed.block_sparse_attention(q, k, v, ptr, idx, block_q=32, block_k=32, force_sink=False,
                                    force_diagonal=False)

    def keep(h, qpos, j):
        return (j // 32) in lists[h * 3 + qpos // 32]
    ro, _, _ = ref.attention(q, k, v, keep=keep)
    close(o, ro)
    with pytest.raises(heed.HeedError):
        heed.block_sparse_attention(q, k, v, ptr[:-1], idx, block_q=32, block_k=32)


def test_vertical_slash():
    q, k, v = rand(40, 2, 64), rand(40, 2, 64), rand(40, 2, 64)
    verts = [[0, 3, 10], [1]]
    slashes = [[0, 1, 2], [0, 5]]
    vp, vi = heed.csr(verts)
    sp, so = heed.csr(slashes)
    o = heed.vertical_slash_attention(q, k, v, vp, vi, sp, so)

    def keep(h, qpos, j):
        return j in verts[h] or (qpos - j) in slashes[h]
    close(o, ref.attention(q, k, v, keep=keep)[0])


def linear_ref(q, k, v, phi, causal=True, eps=1e-6, state=None):
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    L, hq, _ = q.shape
    hkv = k.shape[1]
    g = hq // hkv
    o = np.zeros((L, hq, v.shape[2]))
    for h in range(hq):
        fq, fk, vh = phi(q[:, h]), phi(k[:, h // g]), v[:, h // g]
        a = fq @ fk.T
        if causal:
            a = np.tril(a)
        o[:, h] = (a @ vh) / (a.sum(axis=1, keepdims=True) + eps)
    return o


def test_linear():
    def elu1(x):
        return np.where(x > 0, x + 1, np.exp(x))
    q, k, v = rand(50, 4, 32), rand(50, 2, 32), rand(50, 2, 32)
    for causal in (True, False):
        o = heed.linear_attention(q, k, v, causal=causal)
        close(o, linear_ref(q, k, v, elu1, causal), 1e-3)
    o = heed.linear_attention(q, k, v, feature_map="relu")
    close(o, linear_ref(q, k, v, lambda x: np.maximum(x, 0)), 1e-3)
    # A decode step continues a prefill's state.
    o1, st = heed.linear_attention(q[:49], k[:49], v[:49], return_state=True)
    o2 = heed.linear_attention(q[49:], k[49:], v[49:], state=st)
    close(np.concatenate([o1, o2]), linear_ref(q, k, v, elu1), 1e-3)


def test_errors_before_the_kernel():
    q, k, v = rand(4, 4, 64), rand(8, 2, 64), rand(8, 2, 64)
    with pytest.raises(heed.HeedError, match="dtype") as e:
        heed.attention(q.astype(np.float64), k, v)
    assert e.value.status == "unsupported dtype"
    assert isinstance(e.value, ValueError)
    with pytest.raises(heed.HeedError, match="same dtype"):
        heed.attention(q, k, v.astype(np.float16))
    with pytest.raises(heed.HeedError, match="multiple"):
        heed.attention(rand(4, 3, 64), k, v)
    with pytest.raises(heed.HeedError, match="head_dim"):
        heed.attention(rand(4, 4, 32), k, v)
    with pytest.raises(heed.HeedError, match="3 dimensions"):
        heed.attention(q[0], k, v)
    with pytest.raises(heed.HeedError, match="alibi"):
        heed.attention(q, k, v, alibi=np.ones(3, np.float32))
    with pytest.raises(heed.HeedError) as e:  # heed's own validation: negative softcap
        heed.attention(q, k, v, softcap=-1.0)
    assert e.value.status == "invalid argument"
    with pytest.raises(heed.HeedError):
        heed.attention(q, k, v, layout="xyz")
    with pytest.raises(heed.HeedError, match="NumPy"):
        heed.attention([1.0], k, v)


def test_integer_dot_switch():
    """heed.set_integer_dot returns the previous setting; off, no path uses integer products."""
    assert heed.set_integer_dot(False) is True
    assert heed.integer_dot_active() is False
    assert heed.set_integer_dot(True) is False
