"""heed: CPU attention kernels, a KV cache and KV-eviction policies, on NumPy arrays.

The functions and classes come from the C++ module ``heed._heed`` (pybind11, on the compiled
heed library); see docs/python.md. Arrays: queries and outputs are float32; keys and values are
float32, float16 or bfloat16 given as a uint16 array of the bf16 bits (``to_bf16`` /
``from_bf16`` convert). Layout ``[seq, heads, dim]`` (``layout="shd"``, the default) or
``[heads, seq, dim]`` (``layout="hsd"``).
"""

import numpy as _np

from ._heed import (  # noqa: F401
    EvictionLoop,
    HeedError,
    KVCache,
    PolicyError,
    PolicyInput,
    __version__,
    attention,
    best_isa,
    block_sparse_attention,
    caote_scores,
    detect_sinks,
    expected_attention_scores,
    integer_dot_active,
    key_diff_scores,
    key_norm_scores,
    lagkv_scores,
    linear_attention,
    observation_window_scores,
    policy_names,
    set_integer_dot,
    value_norm_scores,
    vertical_slash_attention,
)

__all__ = [
    "EvictionLoop", "HeedError", "KVCache", "PolicyError", "PolicyInput", "attention",
    "best_isa", "block_sparse_attention", "caote_scores", "column_mass", "detect_sinks",
    "expected_attention_scores", "from_bf16", "integer_dot_active", "key_diff_scores",
    "key_norm_scores", "lagkv_scores", "linear_attention", "observation_window_scores",
    "policy_names", "set_integer_dot", "snapkv_scores",
    "to_bf16", "value_norm_scores", "vertical_slash_attention", "csr",
]


def to_bf16(x):
    """float array -> uint16 array of bfloat16 bits (round to nearest even, as heed rounds)."""
    f = _np.ascontiguousarray(x, dtype=_np.float32)
    u = f.view(_np.uint32).astype(_np.uint64)
    nan = _np.isnan(f)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(_np.uint16)
    r[nan] = ((u[nan] >> 16) | 0x40).astype(_np.uint16)
    return r


def from_bf16(bits):
    """uint16 array of bfloat16 bits -> float32 array."""
    b = _np.asarray(bits, dtype=_np.uint16)
    return (b.astype(_np.uint32) << 16).view(_np.float32)


def column_mass(q, k, **kw):
    """Per query head, the attention mass each key receives from the rows of q:
    sum_i p_ij as a [Hq, Lk] array (observation_window_scores' 'vertical' output)."""
    return observation_window_scores(q, k, outputs=("vertical",), **kw)["vertical"]


def snapkv_scores(q, k, window=None, **kw):
    """SnapKV's observation-window score per KV head, [Hkv, Lk]: the last `window` rows of q
    (all of them when None) against every key, pooled (pool='avg' / 'max', pool_kernel)."""
    if window is not None:
        q = q[-window:]
    return observation_window_scores(q, k, outputs=("window",), **kw)["window"]


def csr(lists):
    """A list of integer lists -> (ptr, idx) int32 arrays in CSR form (the sparse layouts)."""
    ptr = _np.zeros(len(lists) + 1, dtype=_np.int32)
    for i, l in enumerate(lists):
        ptr[i + 1] = ptr[i] + len(l)
    idx = (_np.concatenate([_np.asarray(l, dtype=_np.int32) for l in lists])
           if ptr[-1] else _np.zeros(0, dtype=_np.int32))
    return ptr, idx
