#!/usr/bin/env python3
"""Checks that an nnc checkpoint is an ordinary safetensors file that other tools read.

Loads the checkpoint with Python's `safetensors` package (numpy flavour), prints its metadata
and tensors, and checks that every tensor the metadata lists is there, f32 and finite. With
--mnist DIR, it also runs the weights of a dense ReLU network (such as models/mlp.nn) over the
MNIST test set in numpy and prints the accuracy, which should equal `nnc eval`'s.

Not part of `cargo test` (CI has no Python packages); run it by hand:

    python3 -m venv /tmp/st-venv && /tmp/st-venv/bin/pip install safetensors numpy
    cargo run --release -- train models/mlp.nn --epochs 1
    /tmp/st-venv/bin/python scripts/check_safetensors.py runs/mlp/checkpoint.safetensors \
        --mnist data/mnist
"""

import argparse
import gzip
import os
import struct
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def mnist_test(directory):
    def find(name):
        for candidate in (name, name + ".gz"):
            path = os.path.join(directory, candidate)
            if os.path.exists(path):
                return path
        sys.exit(f"error: {directory} has no {name}")

    images = read_idx(find("t10k-images-idx3-ubyte"))
    labels = read_idx(find("t10k-labels-idx1-ubyte"))
    return images.reshape(len(images), -1).astype(np.float32) / 255.0, labels


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--mnist", help="MNIST directory: evaluate a dense ReLU network")
    args = parser.parse_args()

    tensors = load_file(args.checkpoint)
    with safe_open(args.checkpoint, framework="numpy") as f:
        meta = f.metadata() or {}
    if meta.get("format") != "nnc-checkpoint":
        sys.exit(f"error: {args.checkpoint} has no nnc metadata")
    for key in ("model", "nnc_version", "source_sha256", "seed", "epoch", "step"):
        print(f"{key:>14}: {meta.get(key)}")
    params = [n for n in meta["params"].split(",") if n]
    states = [n for n in meta["states"].split(",") if n]
    problems = []
    print(f"\n{'tensor':<28} {'dtype':<8} {'shape':<14} {'norm':>10}")
    for name in params + states:
        t = tensors.get(name)
        if t is None:
            problems.append(f"{name} is listed in the metadata but missing")
            continue
        if t.dtype != np.float32:
            problems.append(f"{name} is {t.dtype}, not float32")
        if not np.isfinite(t).all():
            problems.append(f"{name} holds non-finite values")
        shape = "x".join(map(str, t.shape)) or "scalar"
        print(f"{name:<28} {str(t.dtype):<8} {shape:<14} {np.linalg.norm(t):>10.4f}")
    extra = sorted(set(tensors) - set(params) - set(states))
    if extra:
        print(f"\nother tensors: {', '.join(extra)}")

    layers = [n[: -len(".weight")] for n in params if n.endswith(".weight")]
    if args.mnist and any(tensors[layer + ".weight"].ndim != 2 for layer in layers):
        print("\n--mnist evaluates dense networks only; this one has other layers")
    elif args.mnist:
        x, labels = mnist_test(args.mnist)
        for i, layer in enumerate(layers):
            x = x @ tensors[layer + ".weight"]
            if layer + ".bias" in tensors:
                x = x + tensors[layer + ".bias"]
            if i + 1 < len(layers):
                x = np.maximum(x, 0.0)
        accuracy = float((x.argmax(axis=1) == labels).mean())
        print(f"\nnumpy forward pass over the MNIST test set: accuracy {accuracy:.4f}")

    if problems:
        print("\n" + "\n".join(problems))
        sys.exit(1)
    print(f"\nok: {len(params)} parameters and {len(states)} optimizer states load as float32")


if __name__ == "__main__":
    main()
