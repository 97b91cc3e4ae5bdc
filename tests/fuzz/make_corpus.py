#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets: tests/fuzz/corpus/<target>/.

    python3 tests/fuzz/make_corpus.py     # rewrites every corpus directory

The targets read their input front to back as decisions (tests/fuzz/fuzz_input.hpp), and any
bytes make a valid program, so most seeds are pseudo-random bytes of a length that lets a target
reach its interesting parts (a fixed seed: the files are the same on every run). A few are
written field by field: a valid llama2.c checkpoint, headers whose sizes used to overflow, and a
calibration file.
"""
import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# target: (number of random seeds, their length in bytes)
RANDOM_SEEDS = {
    "dense_c_api": (8, 200),
    "select": (8, 120),
    "kv_cache_ops": (8, 400),
    "eviction_loop": (8, 100),
    "llama2c_files": (6, 100),
    "sparse_inputs": (8, 300),
}


def checkpoint_seed(header, floats, cut=False):
    # llama2c_files: flag 0 = checkpoint, flag 1 = raw header, the header, the float count
    # (a 4-byte range value), then the "cut short" flag.
    return bytes([0, 1]) + struct.pack("<7i", *header) + struct.pack("<I", floats) + bytes([int(cut)])


def calibration_seed(text):
    # sparse_inputs: mode 0 = calibration, flag 1 = the rest of the input is the file text.
    return bytes([0, 1]) + text.encode()


def main():
    rng = random.Random(21)
    for target, (count, length) in RANDOM_SEEDS.items():
        d = os.path.join(HERE, "corpus", target)
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):
            os.remove(os.path.join(d, f))
        for i in range(count):
            with open(os.path.join(d, "random_%02d" % i), "wb") as f:
                f.write(bytes(rng.randrange(256) for _ in range(length)))

    special = {
        # dim 8, hidden 16, 1 layer, 2 heads, 2 KV heads, vocabulary 8 (shared), seq_len 4:
        # 744 floats.
        ("llama2c_files", "checkpoint_valid"): checkpoint_seed([8, 16, 1, 2, 2, 8, 4], 744),
        ("llama2c_files", "checkpoint_truncated"): checkpoint_seed([8, 16, 1, 2, 2, -8, 4], 744),
        # 4 layers of dim 2^30: the size in size_t wrapped around to 0 (see model.cpp).
        ("llama2c_files", "checkpoint_size_overflow"): checkpoint_seed(
            [1 << 30, 1431655764, 4, 1, 1, 1, 6], 64),
        # Vocabulary INT32_MIN: its negation overflowed (UBSan).
        ("llama2c_files", "checkpoint_vocab_int_min"): checkpoint_seed(
            [8, 16, 1, 2, 2, -(1 << 31), 4], 744),
        ("sparse_inputs", "calibration_valid"): calibration_seed(
            "heed-sparse-calibration 1 2 2\n"
            "# layer head kind density samples query_aware_votes mean_sqrt_jsd\n"
            "0 0 query_aware 0.25 4 3 0.125\n"
            "0 1 vertical_slash 0.5 2 1 0\n"
            "1 0 vertical_slash 1 1 0 0.75\n"
            "1 1 query_aware 0.0625 3 2 0.5\n"),
    }
    for (target, name), data in special.items():
        with open(os.path.join(HERE, "corpus", target, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
