#!/usr/bin/env python3
"""Times an ONNX model that `nnc export --onnx` wrote, in ONNX Runtime: the peer of
`nnc bench FILE --eval` (issue 19's inference targets).

    python infer_onnx.py MODEL.onnx --batch 1000 --threads 2 [--steps 100] [--images data/mnist]

Feeds the first test images of MNIST (raw pixels, as the exported model takes them: its
input's element type and shape say how), one batch repeated, and times each `run` on its own
after a warm-up; prints `RESULT {json}` with the p50/p99/best latency per batch and images/s at
the median, as `nnc bench --eval --json` reports them.
"""
import argparse
import gzip
import json
import os
import time

import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))


def test_images(directory, count):
    for name in ("t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz", "t10k-images.idx3-ubyte"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rb") as f:
                raw = f.read()
            n, rows, cols = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
            pixels = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows * cols)
            return pixels[np.arange(count) % n]
    raise SystemExit(f"no MNIST test images in {directory}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--images", default=os.path.join(HERE, "..", "data", "mnist"))
    a = ap.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = a.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(a.model, options, providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    sample = [int(d) for d in inp.shape[1:]]
    dtype = {"tensor(uint8)": np.uint8, "tensor(float)": np.float32}[inp.type]
    x = test_images(a.images, a.batch).astype(dtype).reshape([a.batch] + sample)
    feed = {inp.name: x}
    for _ in range(max(3, a.steps // 10)):
        session.run(None, feed)
    times = []
    for _ in range(a.steps):
        t = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - t) * 1e6)
    times.sort()
    rank = lambda q: times[min(max(int(np.ceil(q * len(times))), 1), len(times)) - 1]
    p50 = rank(0.5)
    print("RESULT " + json.dumps({
        "batch": a.batch, "threads": a.threads, "steps": a.steps, "p50_micros": p50,
        "p99_micros": rank(0.99), "min_micros": times[0], "images_per_second": a.batch / (p50 / 1e6),
        "onnxruntime": ort.__version__,
    }))


if __name__ == "__main__":
    main()
