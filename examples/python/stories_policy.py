#!/usr/bin/env python3
"""A KV-eviction policy written in Python against H2O on the shipped model (stories260K).

A NumPy forward pass of the llama2.c model in data/ (the same architecture as
examples/llama2c: RMSNorm, RoPE on pairs, GQA attention, SwiGLU), with every layer's attention
run by heed.EvictionLoop on a heed.KVCache: the model's K/V live in heed's cache and the policy
decides what stays. The text is data/tinystories_dev.txt tokenized with data/tok512.bin
(llama2.c's BPE: a dummy-prefix space, characters or byte fallback, then the best-scoring
merges), paragraphs split on blank lines, each starting with BOS, cut into windows of the
model's 512-token context as heed-eval does. Each window is decoded token by token (the cache
fills and is evicted as it goes); the loss is the mean negative log-likelihood of each next
token.

Policies at a budget of 128 entries per (layer, KV head), 25% of a window:
  full                  no eviction (budget 0)
  h2o                   heed's built-in H2O (accumulated attention, half the budget recent)
  RecencyWeightedMass   written here: the decayed attention mass the loop keeps for it
                        (needs={"column_mass": "decay"}) plus a bonus for the newest tokens

The full-cache loss matches heed-eval's (`build/examples/llama2c/heed-eval ppl --windows N`)
to about 1e-4: the same model in float32 with NumPy matmuls instead of Eigen's.

Run from the build tree (PYTHONPATH=<build>/python) or with heed installed:
    /usr/bin/python3 examples/python/stories_policy.py [--windows 1] [--budget 128]
"""

import argparse
import pathlib
import struct
import time

import numpy as np

import heed

DATA = pathlib.Path(__file__).resolve().parents[2] / "data"


class Model:
    def __init__(self, path):
        raw = path.read_bytes()
        dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack("7i", raw[:28])
        self.shared = vocab > 0
        vocab = abs(vocab)
        self.dim, self.hidden, self.layers = dim, hidden, layers
        self.heads, self.kv_heads, self.vocab, self.seq_len = heads, kv_heads, vocab, seq_len
        self.hs = dim // heads
        w = np.frombuffer(raw, dtype=np.float32, offset=28)
        at = 0

        def take(*shape):
            nonlocal at
            n = int(np.prod(shape))
            a = w[at:at + n].reshape(shape)
            at += n
            return a

        kv = kv_heads * self.hs
        self.emb = take(vocab, dim)
        self.rms_att = take(layers, dim)
        self.wq = take(layers, dim, dim)
        self.wk = take(layers, kv, dim)
        self.wv = take(layers, kv, dim)
        self.wo = take(layers, dim, dim)
        self.rms_ffn = take(layers, dim)
        self.w1 = take(layers, hidden, dim)
        self.w2 = take(layers, dim, hidden)
        self.w3 = take(layers, hidden, dim)
        self.rms_final = take(dim)
        take(seq_len * self.hs)  # freq_cis (recomputed below)
        self.wcls = self.emb if self.shared else take(vocab, dim)
        i = np.arange(0, self.hs, 2, dtype=np.float32)
        self.freq = (1.0 / np.power(np.float32(10000.0), i / np.float32(self.hs))).astype(
            np.float32)


def rmsnorm(x, w):
    ss = np.float32(np.mean(x.astype(np.float64) ** 2))
    return w * (np.float32(1.0) / np.sqrt(ss + np.float32(1e-5)) * x)


def rope(v, pos, m):
    """v [heads, hs]: pairs (2i, 2i + 1) rotated by pos * freq_i."""
    a = np.float32(pos) * m.freq
    c, s = np.cos(a), np.sin(a)
    v0, v1 = v[:, 0::2].copy(), v[:, 1::2].copy()
    v[:, 0::2] = v0 * c - v1 * s
    v[:, 1::2] = v0 * s + v1 * c
    return v


def forward(m, loop, token, pos):
    x = m.emb[token].copy()
    for l in range(m.layers):
        xb = rmsnorm(x, m.rms_att[l])
        q = rope((m.wq[l] @ xb).reshape(m.heads, m.hs), pos, m)
        k = rope((m.wk[l] @ xb).reshape(m.kv_heads, m.hs), pos, m)
        v = (m.wv[l] @ xb).reshape(m.kv_heads, m.hs)
        o = loop.step(l, q[None], k[None], v[None])  # heed: append, attend, evict
        x = x + m.wo[l] @ o.reshape(-1)
        xb = rmsnorm(x, m.rms_ffn[l])
        h1, h3 = m.w1[l] @ xb, m.w3[l] @ xb
        x = x + m.w2[l] @ (h1 / (np.float32(1.0) + np.exp(-h1)) * h3)
    return m.wcls @ rmsnorm(x, m.rms_final)


class Tokenizer:
    def __init__(self, path, vocab):
        raw = path.read_bytes()
        at = 4  # max_token_length
        self.pieces, self.scores = [], []
        for _ in range(vocab):
            score, n = struct.unpack_from("fi", raw, at)
            at += 8
            self.pieces.append(raw[at:at + n])
            self.scores.append(score)
            at += n
        self.ids = {p: i for i, p in enumerate(self.pieces)}

    def encode(self, text):
        """llama2.c's encode with BOS (1) and the dummy-prefix space, no EOS."""
        toks = [1]
        if text:
            toks.append(self.ids[b" "])
        for ch in text:
            b = ch.encode("utf-8")
            toks.extend([self.ids[b]] if b in self.ids else [c + 3 for c in b])
        while True:  # merge the best-scoring adjacent pair until none is in the vocabulary
            best, best_i, best_id = -1e10, -1, -1
            for i in range(1, len(toks) - 1):
                merged = self.pieces[toks[i]] + self.pieces[toks[i + 1]]
                j = self.ids.get(merged)
                if j is not None and self.scores[j] > best:
                    best, best_i, best_id = self.scores[j], i, j
            if best_i < 0:
                return toks
            toks[best_i:best_i + 2] = [best_id]


class RecencyWeightedMass:
    """score = decayed attention mass + bonus * 2^(-(newest - position) / half_life)."""

    name = "py_recency_mass"
    needs = {"column_mass": "decay", "lambda": 0.98}
    protect = {"sinks": 1}

    def __init__(self, bonus=0.5, half_life=32.0):
        self.bonus, self.half_life = bonus, half_life

    def score(self, inp):
        pos = inp.positions  # read-only views of the cache's memory during the call
        return inp.accumulated + self.bonus * np.exp2(-(pos[-1] - pos) / self.half_life)


def loss_of(m, windows, policy, budget):
    nll, n = 0.0, 0
    for w in windows:
        cache = heed.KVCache(m.layers, m.kv_heads, m.hs, dtype="f32")
        loop = heed.EvictionLoop(cache, policy, budget=budget, q_heads=m.heads)
        for pos in range(len(w) - 1):
            logits = forward(m, loop, w[pos], pos).astype(np.float64)
            top = logits.max()
            nll += top + np.log(np.exp(logits - top).sum()) - logits[w[pos + 1]]
            n += 1
        if budget:
            assert (cache.lengths() <= budget).all()
    return nll / n, n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--windows", type=int, default=1)
    ap.add_argument("--budget", type=int, default=128)
    args = ap.parse_args()
    m = Model(DATA / "stories260K.bin")
    tok = Tokenizer(DATA / "tok512.bin", m.vocab)
    paragraphs = [p.strip() for p in (DATA / "tinystories_dev.txt").read_text().split("\n\n")]
    stream = [t for p in paragraphs if p for t in tok.encode(p)]
    windows = [stream[i * m.seq_len:(i + 1) * m.seq_len] for i in range(args.windows)]
    print(f"stories260K (dim {m.dim}, {m.layers} layers, {m.heads} / {m.kv_heads} heads), "
          f"{args.windows} window(s) of {m.seq_len} tokens, budget {args.budget}")
    print(f"{'policy':<24} {'loss':>9} {'ppl':>8} {'time':>8}")
    for label, policy, budget in [("full", "h2o", 0), ("h2o (built-in)", "h2o", args.budget),
                                  ("RecencyWeightedMass (py)", RecencyWeightedMass(),
                                   args.budget)]:
        t0 = time.perf_counter()
        loss, n = loss_of(m, windows, policy, budget)
        print(f"{label:<24} {loss:9.6f} {np.exp(loss):8.4f} {time.perf_counter() - t0:7.1f}s")


if __name__ == "__main__":
    main()
