"""The scores of include/heed/scoring against float64 NumPy references."""

import numpy as np
import pytest

import heed
import reference as ref

RNG = np.random.default_rng(11)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def close(a, b, tol=2e-4):
    np.testing.assert_allclose(np.asarray(a, np.float64), b, atol=tol, rtol=tol)


def test_norms():
    k = rand(33, 3, 40)
    close(heed.key_norm_scores(k), -np.linalg.norm(k.astype(np.float64), axis=2).T)
    close(heed.value_norm_scores(k.astype(np.float16)),
          np.linalg.norm(k.astype(np.float16).astype(np.float64), axis=2).T)


def test_key_diff():
    k = rand(57, 3, 24) + 0.5
    k64 = k.astype(np.float64)
    norms = np.maximum(np.linalg.norm(k64, axis=2, keepdims=True), 1e-8)
    anchor = (k64 / norms).mean(axis=0, keepdims=True)
    a_norm = np.maximum(np.linalg.norm(anchor, axis=2, keepdims=True), 1e-8)
    want = -((k64 * anchor).sum(axis=2, keepdims=True) / (norms * a_norm))[..., 0].T
    close(heed.key_diff_scores(k), want)
    close(heed.key_diff_scores(np.ascontiguousarray(k.transpose(1, 0, 2)), layout="hsd"), want)


def pool_avg(x, kernel):
    pad = kernel // 2
    xp = np.concatenate([np.zeros(pad), x, np.zeros(pad)])
    return np.array([xp[j:j + kernel].sum() / kernel for j in range(len(x))])


def pool_max(x, kernel):
    pad = kernel // 2
    xp = np.concatenate([np.full(pad, -np.inf), x, np.full(pad, -np.inf)])
    return np.array([xp[j:j + kernel].max() for j in range(len(x))])


@pytest.mark.parametrize("pool", ["avg", "max", "none"])
def test_observation_window(pool):
    w, lk, hq, hkv, d = 6, 50, 4, 2, 32
    q, k = rand(w, hq, d), rand(lk, hkv, d)
    out = heed.observation_window_scores(q, k, pool=pool, pool_kernel=5,
                                         outputs=("window", "vertical", "slash", "colmean"))
    p = ref.probs(q, k)  # [Hq, W, Lk]
    g = hq // hkv
    vertical = p.sum(axis=1)
    close(out["vertical"], vertical)
    close(heed.column_mass(q, k), vertical)
    mean_rows = p.mean(axis=1)
    f = {"avg": lambda x: pool_avg(x, 5), "max": lambda x: pool_max(x, 5), "none": lambda x: x}
    pooled = np.array([f[pool](r) for r in mean_rows])
    close(out["window"], pooled.reshape(hkv, g, lk).mean(axis=1))
    seen = (np.arange(lk)[None, :] <= (lk - w) + np.arange(w)[:, None]).sum(axis=0)
    colmean = np.where(seen > 0, vertical / np.maximum(seen, 1), 0)
    close(out["colmean"], colmean.reshape(hkv, g, lk).mean(axis=1))
    slash = np.zeros((hq, lk))
    for i in range(w):
        for j in range(lk):
            t = (lk - w + i) - j
            if 0 <= t < lk:
                slash[:, t] += p[:, i, j]
    close(out["slash"], slash)
    # SnapKV's helper and the max reduction.
    close(heed.snapkv_scores(q, k, pool=pool, pool_kernel=5), out["window"])
    mx = heed.observation_window_scores(q, k, pool=pool, pool_kernel=5, reduce="max")["window"]
    close(mx, pooled.reshape(hkv, g, lk).max(axis=1))


def test_observation_window_with_lse():
    q, k, v = rand(8, 4, 32), rand(40, 2, 32), rand(40, 2, 32)
    _, lse = heed.attention(q, k, v, return_lse=True)
    a = heed.column_mass(q, k, lse=lse)
    close(a, ref.probs(q, k).sum(axis=1))


@pytest.mark.parametrize("cov", [True, False])
def test_expected_attention(cov):
    n, lk, hq, hkv, d = 12, 30, 4, 2, 16
    q, k, v = rand(n, hq, d), rand(lk, hkv, d), rand(lk, hkv, d)
    got = heed.expected_attention_scores(q, k, v, use_covariance=cov)
    scale = 1 / np.sqrt(d)
    g = hq // hkv
    want = np.zeros((hkv, lk))
    for h in range(hq):
        qh = q[:, h].astype(np.float64)
        kh = k[:, h // g].astype(np.float64)
        mu = qh.mean(axis=0)
        sig = (qh - mu).T @ (qh - mu) / n
        z = scale * kh @ mu
        if cov:
            z += scale ** 2 / 2 * np.einsum("jd,de,je->j", kh, sig, kh)
        a = np.exp(z - z.max())
        want[h // g] += a / a.sum() / g
    want *= np.linalg.norm(v.astype(np.float64), axis=2).T
    close(got, want, 1e-4)
    close(heed.expected_attention_scores(q, k, weight_by_value_norm=False, use_covariance=cov),
          want / np.linalg.norm(v.astype(np.float64), axis=2).T, 1e-4)


def test_lagkv():
    lk, hkv, d, sinks, lag = 45, 2, 16, 3, 8
    k, v = rand(lk, hkv, d), rand(lk, hkv, d)
    got = heed.lagkv_scores(k, v, sinks=sinks, lag=lag)
    want = np.full((hkv, lk), np.inf)
    for h in range(hkv):
        for x, w in ((k, 0.5), (v, 0.5)):
            xh = x[:, h].astype(np.float64)
            for b in range(sinks, lk, lag):
                e, fe = min(b + lag, lk), min(b + 2 * lag, lk)
                if e >= lk:
                    break
                fol = xh[e:fe]
                mn, mxx = fol.min(axis=0), fol.max(axis=0)
                s = ((xh[b:e] - mn) / (mxx - mn + 1e-6)).std(axis=1)
                s = np.exp(s - s.max())
                part = w * s / s.sum()
                want[h, b:e] = np.where(np.isinf(want[h, b:e]), part, want[h, b:e] + part)
    close(got, want, 1e-4)


def test_detect_sinks_and_caote():
    colmean = np.array([[0.5, 0.01, 0.2, 0.0], [0.0, 0.05, 0.0, 0.3]], np.float32)
    found = heed.detect_sinks(colmean, threshold=0.1)
    assert [list(f) for f in found] == [[0, 2], [3]]
    lk, hq, hkv, d = 20, 4, 2, 16
    q, k, v = rand(1, hq, d), rand(lk, hkv, d), rand(lk, hkv, d)
    p = ref.probs(q, k)[:, 0]  # [Hq, Lk]
    o = heed.attention(q, k, v)
    got = heed.caote_scores(p.astype(np.float32), o, v)
    g = hq // hkv
    want = np.zeros((hkv, lk))
    for h in range(hq):
        dist = np.linalg.norm(o[0, h].astype(np.float64) - v[:, h // g], axis=1)
        want[h // g] += p[h] / (1 - p[h]) * dist / g
    close(got, want, 1e-4)


def test_score_errors():
    k = rand(10, 2, 16)
    with pytest.raises(heed.HeedError):
        heed.observation_window_scores(rand(4, 3, 16), k)  # 3 heads over 2
    with pytest.raises(heed.HeedError, match="unknown output"):
        heed.observation_window_scores(rand(4, 2, 16), k, outputs=("nope",))
    with pytest.raises(heed.HeedError):
        heed.observation_window_scores(rand(4, 2, 16), k, pool_kernel=4)  # even kernel
    with pytest.raises(heed.HeedError):
        heed.lagkv_scores(k, k, lag=0)
    with pytest.raises(heed.HeedError, match="dtype"):
        heed.key_norm_scores(k.astype(np.int32))
