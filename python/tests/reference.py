"""Float64 NumPy references for heed's Python bindings (the definitions of tests/reference/)."""

import numpy as np


def attention(q, k, v, causal=True, window=None, softcap=None, alibi=None, sinks=None,
              scale=None, q_offset=None, keep=None):
    """q [Lq, Hq, d], k / v [Lk, Hkv, d] (any float dtype) -> o [Lq, Hq, d], lse and entropy
    [Hq, Lq], all float64. keep(h, q_pos, k_pos) -> bool masks further (sparse layouts)."""
    q = np.asarray(q, np.float64)
    k = np.asarray(k, np.float64)
    v = np.asarray(v, np.float64)
    lq, hq, d = q.shape
    lk, hkv, _ = k.shape
    g = hq // hkv
    scale = 1.0 / np.sqrt(d) if scale is None else scale
    off = lk - lq if q_offset is None else q_offset
    o = np.zeros((lq, hq, v.shape[2]))
    lse = np.full((hq, lq), -np.inf)
    ent = np.zeros((hq, lq))
    kpos = np.arange(lk)
    for h in range(hq):
        kh = k[:, h // g]
        vh = v[:, h // g]
        for i in range(lq):
            qpos = off + i
            s = scale * (kh @ q[i, h])
            if alibi is not None:
                s = s - alibi[h] * (qpos - kpos)
            if softcap:
                s = softcap * np.tanh(s / softcap)
            vis = np.ones(lk, bool)
            if causal:
                vis &= kpos <= qpos
            if window is not None:
                vis &= qpos - kpos <= window
            if keep is not None:
                vis &= np.array([keep(h, qpos, j) for j in range(lk)])
            s = np.where(vis, s, -np.inf)
            if sinks is not None:
                s = np.append(s, sinks[h])
            m = s.max()
            if m == -np.inf:
                continue
            p = np.exp(s - m)
            z = p.sum()
            p /= z
            o[i, h] = p[:lk] @ vh
            lse[h, i] = m + np.log(z)
            nz = p > 0
            ent[h, i] = -(p[nz] * np.log(p[nz])).sum()
    return o, lse, ent


def probs(q, k, scale=None, q_offset=None, causal=True):
    """[Hq, Lq, Lk] attention probabilities (float64)."""
    q = np.asarray(q, np.float64)
    k = np.asarray(k, np.float64)
    lq, hq, d = q.shape
    lk, hkv, _ = k.shape
    g = hq // hkv
    scale = 1.0 / np.sqrt(d) if scale is None else scale
    off = lk - lq if q_offset is None else q_offset
    out = np.zeros((hq, lq, lk))
    for h in range(hq):
        s = scale * np.einsum("id,jd->ij", q[:, h], k[:, h // g])
        if causal:
            s = np.where(np.arange(lk)[None, :] <= off + np.arange(lq)[:, None], s, -np.inf)
        s = s - s.max(axis=1, keepdims=True)
        p = np.exp(s)
        out[h] = p / p.sum(axis=1, keepdims=True)
    return out


def bf16_round(x):
    """float64 values of x rounded to bfloat16 (nearest even)."""
    f = np.asarray(x, np.float32)
    u = f.view(np.uint32).astype(np.uint64)
    r = (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16).astype(np.uint32)
    return r.view(np.float32).astype(np.float64)
