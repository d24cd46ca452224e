#!/usr/bin/env python3
"""Runs nnc and the peer frameworks on the same networks, alternately, in one run, and prints
the ratios (nnc time / peer time). Standard library only.

    python3 bench/compare.py [--rounds 3] [--peers /tmp/peers-venv/bin/python] [--only mlp|lenet]

The peers are the scripts of ../shared/bench (see its README for their virtual environment).
nnc is run as `target/release/nnc train ... --json` (build it first: cargo build --release);
its steady-state epoch is the median of epochs 2..N, as the peers report theirs. Peak RSS is
measured with /usr/bin/time for nnc and reported by the peers for themselves.

    python3 bench/compare.py --zoo [--rounds 1] [--only cnn3-same] [--train-images 10000] [--epochs 3]

runs each model of bench/zoo (and models/resnet-mnist.nn) against its PyTorch eager twin (bench/twin.py, generated from the
model, started from nnc's initial weights), alternately. To keep the whole zoo within minutes,
both train on the same fixed subset of MNIST (the first --train-images images, written as IDX
files and given to the model as `idx(...)` data in a copy of its file) for --epochs epochs; the
steady figure is the median of epochs 2..N, reported per 60,000 images. Prints each model's
ratio (nnc / twin) and their geometric mean, and each model's arithmetic floor (its training
FLOPs at the GEMM peak that `nnc bench` measures on a large product here), the twin's share of
that peak and nnc's time over the floor: issue 17's per-model target is 0.5x the twin, or
within 1.2x of the floor where the twin already runs above half of the peak.

    python3 bench/compare.py --contention [--rounds 1]

trains the MLP (models/mlp.nn) under nnc and JAX (mlp_jax.py) with and without one competing
busy process (a Python loop, pinned nowhere), in one run, and prints each one's slowdown.

    python3 bench/compare.py --infer [--rounds 3] [--infer-peers torch-eager,jax-jit]

times inference at batch 1000 on the 10,000 test images: `nnc bench FILE --eval` (the compiled
evaluation step, median over its steps) against ../shared/bench/infer.py (each peer's median
pass of 10 batches of 1000, argmax included) for the MLP and LeNet-5, at 2 threads, alternately;
prints images/s and the speed-up nnc / peer (issue 19's target: at least 2x PyTorch eager); and
against ONNX Runtime on the model exported by `nnc export --onnx` (initial weights), at batch
1000 (images/s) and batch 1 (p50 latency), when --onnx-python has onnxruntime.

PEERS_DIR overrides where the peer scripts are; --nnc-args adds flags to every `nnc train`.
"""
import argparse
import gzip
import json
import math
import os
import re
import shlex
import statistics
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEERS_DIR = os.environ.get("PEERS_DIR", os.path.join(ROOT, "..", "shared", "bench"))
NNC = os.path.join(ROOT, "target", "release", "nnc")
ZOO = os.path.join(HERE, "zoo")
# Shipped models the zoo comparison also runs: the residual network with batch normalisation.
ZOO_EXTRA = [os.path.join(ROOT, "models", "resnet-mnist.nn")]
MNIST = os.path.join(ROOT, "data", "mnist")
# Extra flags for every `nnc train` (--nnc-args).
NNC_ARGS = []


def run_nnc(model, epochs):
    cmd = ["/usr/bin/time", "-f", "maxrss_kib %M", NNC, "train", model, "--epochs", str(epochs), "--json",
           "--out", "/tmp/nnc-bench-runs"] + NNC_ARGS
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"nnc failed: {' '.join(cmd)}\n{p.stderr[-2000:]}")
    epochs_out = []
    for line in p.stdout.splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and "epoch" in obj and "seconds" in obj:
            epochs_out.append(obj)
    rss = next((int(l.split()[1]) for l in p.stderr.splitlines() if l.startswith("maxrss_kib")), 0)
    # The training loop alone, as the peers time their epochs (evaluation excluded).
    secs = [e.get("train_seconds", e["seconds"]) for e in epochs_out]
    return {
        "epoch1_s": secs[0],
        "steady_s": statistics.median(secs[1:]) if len(secs) > 1 else secs[0],
        "test_acc": epochs_out[-1].get("test_acc"),
        "peak_rss_mib": rss / 1024,
    }


def run_peer(python, script, args):
    cmd = [python, script] + args
    p = subprocess.run(cmd, cwd=PEERS_DIR, capture_output=True, text=True)
    if p.returncode != 0:
        return None
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            r = json.loads(line[len("RESULT "):])
            acc = r.get("test_acc")
            if acc is None and r.get("test_acc_per_epoch"):
                acc = r["test_acc_per_epoch"][-1]
            return {
                "epoch1_s": r.get("epoch1_s"),
                "steady_s": r.get("steady_s_median_epochs_2plus"),
                "test_acc": acc,
                "peak_rss_mib": r.get("peak_rss_mib"),
            }
    return None


def shipped(a):
    """The shipped networks against the peer scripts."""
    benches = {
        "mlp": ("models/mlp.nn", 5, [("JAX", "mlp_jax.py", []), ("PyTorch eager", "mlp_torch.py", ["--compile", "none"])]),
        # nnc trains LeNet-5 for 3 epochs so that its steady figure is a median of 2; the peers
        # report their epoch 2.
        "lenet": ("models/lenet5.nn", 3, [("PyTorch eager", "lenet_torch.py", ["--compile", "none"]), ("JAX", "lenet_jax.py", [])]),
    }
    for name, (model, epochs, peers) in benches.items():
        if a.only and a.only != name:
            continue
        results = {"nnc": []}
        for r in range(a.rounds):
            # Alternate, so that slow drifts of the machine hit every contender alike, and let
            # the machine settle between runs (the kernel reclaims the peers' gigabytes).
            time.sleep(a.pause)
            results["nnc"].append(run_nnc(model, epochs))
            for label, script, args in peers:
                if not os.path.exists(a.peers):
                    continue
                time.sleep(a.pause)
                res = run_peer(a.peers, script, args)
                if res:
                    results.setdefault(label, []).append(res)
            print(f"{name}: round {r + 1}/{a.rounds} done", file=sys.stderr)
        med = {k: {f: statistics.median([x[f] for x in v if x.get(f) is not None]) for f in v[0]} for k, v in results.items() if v}
        print(f"\n{name} ({model}), median of {a.rounds} rounds")
        print(f"{'':16} {'steady s/epoch':>15} {'epoch 1 s':>10} {'test acc':>9} {'peak RSS MiB':>13} {'nnc / peer':>11}")
        for k, m in med.items():
            ratio = "" if k == "nnc" else f"{med['nnc']['steady_s'] / m['steady_s']:.2f}x"
            print(f"{k:16} {m['steady_s']:15.3f} {m['epoch1_s']:10.3f} {m['test_acc']:9.4f} {m['peak_rss_mib']:13.1f} {ratio:>11}")


def read_idx_bytes(name):
    """The header's dimensions and the bytes of MNIST file `name` (raw or .gz)."""
    path = os.path.join(MNIST, name)
    opener = open if os.path.exists(path) else gzip.open
    with opener(path if os.path.exists(path) else path + ".gz", "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return dims, data[4 + 4 * ndim:]


def mnist_subset(directory, train, test):
    """The first `train` training and `test` test images and labels of MNIST, as raw IDX files
    in `directory` (standard library only: no numpy here)."""
    os.makedirs(directory, exist_ok=True)
    for prefix, count in (("train", train), ("t10k", test)):
        for kind, per in (("images-idx3-ubyte", 28 * 28), ("labels-idx1-ubyte", 1)):
            dims, body = read_idx_bytes(f"{prefix}-{kind}")
            dims = (count,) + tuple(dims[1:])
            with open(os.path.join(directory, f"{prefix}-{kind}"), "wb") as f:
                f.write(struct.pack(">HBB", 0, 0x08, len(dims)))
                f.write(struct.pack(">" + "I" * len(dims), *dims))
                f.write(body[:count * per])
    return directory


def on_subset(model_path, data_dir, out_dir):
    """A copy of the model whose `mnist(...)` data is the same images read as `idx(...)` from
    `data_dir` (a subset), with the subset's test images as its `test` data."""
    text = open(model_path).read()
    m = re.search(r"^(\s*)data(\s+)mnist\(([^)]*)\)", text, re.M)
    if not m:
        sys.exit(f"{model_path}: no `data mnist(...)` line to put a subset in")
    indent, opts = m.group(1), m.group(3).strip()
    extra = f", {opts}" if opts else ""

    def idx(prefix):
        images = os.path.join(data_dir, f"{prefix}-images-idx3-ubyte")
        labels = os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte")
        return f'idx(images: "{images}", labels: "{labels}"{extra})'

    replaced = f"{indent}data {idx('train')}\n{indent}test {idx('t10k')}"
    text = text[:m.start()] + replaced + text[m.end():]
    # The twins have no random shifts: both sides train without them (the same work a step).
    text, dropped = re.subn(r"^\s*augment\([^)]*\)[^\n]*\n", "", text, flags=re.M)
    if dropped:
        print(f"  {os.path.basename(model_path)}: trained without its augmentation on both sides",
              file=sys.stderr)
    path = os.path.join(out_dir, os.path.basename(model_path))
    with open(path, "w") as f:
        f.write(text)
    return path


def run_twin(python, model_path, epochs, threads):
    cmd = [python, os.path.join(HERE, "twin.py"), model_path, "--epochs", str(epochs), "--threads", str(threads)]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        print(f"twin failed: {' '.join(cmd)}\n{p.stderr[-2000:]}", file=sys.stderr)
        return None
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            r = json.loads(line[len("RESULT "):])
            return {"epoch1_s": r["epoch1_s"], "steady_s": r["steady_s_median_epochs_2plus"],
                    "test_acc": r["test_acc"], "peak_rss_mib": r["peak_rss_mib"]}
    return None


# A product large and well shaped enough for gemm's peak: 1024 samples through a 2048-wide
# dense layer (1024 x 784 x 2048 and its two gradients).
PEAK_MODEL = """model gemm_peak {
    input image: f32[784]
    wide: dense(2048)
    out: dense(10)
}
train gemm_peak {
    data mnist(flatten: true, scale: 1/255)
    loss softmax_cross_entropy
    optimizer sgd(lr: 0.01)
    batch 1024
}
"""


def gemm_peak(work):
    """GFLOP/s of gemm on a large product, split over nnc's default threads: the highest that
    `nnc bench` reports beside the kernels of a wide dense layer at batch 1024, best of three
    runs (a peak: what the machine can do when nothing slows it)."""
    path = os.path.join(work, "gemm_peak.nn")
    with open(path, "w") as f:
        f.write(PEAK_MODEL)
    best = 0.0
    for _ in range(3):
        p = subprocess.run([NNC, "bench", path, "--json", "--iterations", "20"], cwd=ROOT,
                           capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"nnc bench failed on the peak model:\n{p.stderr[-2000:]}")
        best = max([best] + [k.get("gemm_gflops") or 0.0 for k in json.loads(p.stdout)["profile"]])
    return best


def training_gflop_per_60k(model_path):
    """Training GFLOP of a 60,000-image epoch, exactly: every product's forward FLOPs, its
    weight gradient's (the same) where it has weights, and its input gradient's (the same)
    where its input depends on a weight (not the data's)."""
    p = subprocess.run([NNC, "check", model_path, "--json"], cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"nnc check failed: {model_path}\n{p.stderr[-2000:]}")
    checked = json.loads(p.stdout)
    needs_grad = {checked["input"]["name"]: False}
    flops = 0
    for layer in checked["layers"]:
        grad_in = any(needs_grad.get(i, True) for i in layer["inputs"])
        weighted = layer["params"] > 0
        flops += layer["flops"] * (1 + weighted + grad_in)
        needs_grad[layer["name"]] = grad_in or weighted
    return flops * 60000 / 1e9


def zoo(a):
    """Every zoo model against its generated PyTorch twin, alternately."""
    paths = {f[:-3]: os.path.join(ZOO, f) for f in os.listdir(ZOO) if f.endswith(".nn")}
    paths.update((os.path.basename(p)[:-3], p) for p in ZOO_EXTRA)
    names = sorted(paths)
    if a.only:
        names = [n for n in names if n == a.only]
        if not names:
            sys.exit(f"no zoo model `{a.only}` in {ZOO}")
    work = os.path.join("/tmp", "nnc-zoo-bench")
    os.makedirs(work, exist_ok=True)
    data = mnist_subset(os.path.join(work, "mnist-subset"), a.train_images, a.test_images)
    per = 60000 / a.train_images
    print(f"zoo: each model and its twin train on the same first {a.train_images} MNIST images for {a.epochs} "
          f"epochs; steady s/epoch = median of epochs 2..{a.epochs}, scaled to 60,000 images (x{per:g}); "
          f"{a.rounds} round(s), alternating; twins on {a.twin_threads} torch threads", flush=True)
    results = {n: {"nnc": [], "twin": []} for n in names}
    for r in range(a.rounds):
        for n in names:
            model = on_subset(paths[n], data, work)
            runs = [("nnc", lambda: run_nnc(model, a.epochs)), ("twin", lambda: run_twin(a.peers, model, a.epochs, a.twin_threads))]
            # Alternate which goes first, so that a drift of the machine hits both alike.
            for who, run in runs if r % 2 == 0 else runs[::-1]:
                time.sleep(a.pause)
                res = run()
                if res:
                    results[n][who].append(res)
            print(f"  {n}: round {r + 1}/{a.rounds} done", file=sys.stderr, flush=True)
    peak = gemm_peak(work)
    print(f"\n{'model':20} {'nnc s/60k':>10} {'twin s/60k':>11} {'nnc/twin':>9} {'floor s':>8} "
          f"{'twin/peak':>10} {'nnc/floor':>10} {'target':>7} {'nnc acc':>8} {'twin acc':>9}")
    ratios, met = [], 0
    for n in names:
        nnc, twin = results[n]["nnc"], results[n]["twin"]
        if not nnc or not twin:
            print(f"{n:20} {'failed' if not nnc else '':>10} {'failed' if not twin else '':>11}")
            continue
        med = lambda rs, f: statistics.median(x[f] for x in rs)  # noqa: E731
        s_nnc, s_twin = med(nnc, "steady_s") * per, med(twin, "steady_s") * per
        ratio = s_nnc / s_twin
        ratios.append(ratio)
        # Issue 17's target: 0.5x the twin, or within 1.2x of the arithmetic floor (the
        # training FLOPs at gemm's peak) where the twin already runs above half that peak.
        floor = training_gflop_per_60k(paths[n]) / peak
        twin_share, nnc_floor = floor / s_twin, s_nnc / floor
        ok = nnc_floor <= 1.2 if twin_share > 0.5 else ratio <= 0.5
        met += ok
        print(f"{n:20} {s_nnc:10.2f} {s_twin:11.2f} {ratio:8.2f}x {floor:8.2f} {twin_share:10.2f} "
              f"{nnc_floor:9.2f}x {'met' if ok else 'not':>7} {med(nnc, 'test_acc'):8.4f} {med(twin, 'test_acc'):9.4f}")
    if ratios:
        geo = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
        print(f"{'geometric mean':20} {'':10} {'':11} {geo:8.3f}x   ({len(ratios)} models; "
              f"per-model target met by {met})")
    print(f"(gemm peak {peak:.1f} GFLOP/s: the floor is the training FLOPs of 60,000 images at it; "
          f"twin/peak is the twin's share of that peak; test accuracy on the first {a.test_images} "
          f"test images after {a.epochs} epochs of the subset)")


def busy_loop():
    """One competing process: a Python busy loop, pinned nowhere."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def contention(a):
    """The MLP under nnc and JAX, with and without one busy process, in one run."""
    results = {}
    for r in range(a.rounds):
        for busy in (False, True):
            competitor = busy_loop() if busy else None
            try:
                time.sleep(a.pause if not busy else 1.0)
                res = run_nnc("models/mlp.nn", 5)
                results.setdefault(("nnc", busy), []).append(res["steady_s"])
                if os.path.exists(a.peers):
                    res = run_peer(a.peers, "mlp_jax.py", [])
                    if res:
                        results.setdefault(("JAX", busy), []).append(res["steady_s"])
            finally:
                if competitor:
                    competitor.kill()
                    competitor.wait()
            print(f"contention: round {r + 1}/{a.rounds}, {'busy' if busy else 'quiet'} done", file=sys.stderr, flush=True)
    print(f"\nMLP (models/mlp.nn), steady s/epoch, median of {a.rounds} round(s); 'busy': one competing busy process")
    print(f"{'':8} {'quiet':>8} {'busy':>8} {'slowdown':>9}")
    for who in ("nnc", "JAX"):
        if (who, False) in results and (who, True) in results:
            q, b = statistics.median(results[(who, False)]), statistics.median(results[(who, True)])
            print(f"{who:8} {q:8.3f} {b:8.3f} {b / q:8.2f}x")


def nnc_eval(model, batch, threads, iterations):
    cmd = [NNC, "bench", model, "--eval", "--batch", str(batch), "--threads", str(threads),
           "--iterations", str(iterations), "--json"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"nnc failed: {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return json.loads(p.stdout)


def exported(model, directory):
    """The model exported to ONNX from its initial weights (`nnc init`, then `nnc export`)."""
    stem = os.path.splitext(os.path.basename(model))[0]
    weights, onnx = os.path.join(directory, stem + ".safetensors"), os.path.join(directory, stem + ".onnx")
    for cmd in ([NNC, "init", model, "-o", weights], [NNC, "export", model, "--weights", weights, "--onnx", onnx]):
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"nnc failed: {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return onnx


def onnx_runtime(python, onnx, batch, threads, steps):
    cmd = [python, os.path.join(HERE, "infer_onnx.py"), onnx, "--batch", str(batch), "--threads", str(threads),
           "--steps", str(steps)]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    line = next((l for l in p.stdout.splitlines() if l.startswith("RESULT ")), None)
    if p.returncode != 0 or line is None:
        sys.exit(f"ONNX Runtime failed: {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return json.loads(line[len("RESULT "):])


def infer(a):
    """Inference: nnc's evaluation step against infer.py's peers (batch 1000) and against ONNX
    Runtime on nnc's exported model (batch 1000 and batch 1), at 2 threads."""
    models = {"mlp": "models/mlp.nn", "lenet5": "models/lenet5.nn"}
    peers = [f for f in a.infer_peers.split(",") if f]
    ort = os.path.exists(a.onnx_python)
    onnx = {}
    if ort:
        os.makedirs("/tmp/nnc-bench-onnx", exist_ok=True)
        onnx = {name: exported(model, "/tmp/nnc-bench-onnx") for name, model in models.items()}
    else:
        print(f"no {a.onnx_python}: ONNX Runtime left out (bash .ci/run makes that environment)", file=sys.stderr)
    ips, p50 = {}, {}
    for r in range(a.rounds):
        for name, model in models.items():
            for batch, steps in ((1000, 100), (1, 2000)):
                time.sleep(a.pause)
                res = nnc_eval(model, batch, 2, steps)
                ips.setdefault((name, "nnc", batch), []).append(res["images_per_second"])
                p50.setdefault((name, "nnc", batch), []).append(res["p50_micros"])
                if ort:
                    time.sleep(a.pause)
                    res = onnx_runtime(a.onnx_python, onnx[name], batch, 2, steps)
                    ips.setdefault((name, "onnxruntime", batch), []).append(res["images_per_second"])
                    p50.setdefault((name, "onnxruntime", batch), []).append(res["p50_micros"])
        for framework in peers:
            time.sleep(a.pause)
            cmd = [a.peers, "infer.py", framework]
            p = subprocess.run(cmd, cwd=PEERS_DIR, capture_output=True, text=True)
            line = next((l for l in p.stdout.splitlines() if l.startswith("RESULT ")), None)
            if p.returncode != 0 or line is None:
                print(f"{framework} failed: {p.stderr[-500:]}", file=sys.stderr)
                continue
            for name, res in json.loads(line[len("RESULT "):])["results"].items():
                ips.setdefault((name, framework, 1000), []).append(res["img_per_s_median"])
        print(f"infer: round {r + 1}/{a.rounds} done", file=sys.stderr, flush=True)
    med = lambda xs: statistics.median(xs)
    print(f"\ninference, 2 threads, median of {a.rounds} round(s); speed-up = nnc / peer")
    for name in models:
        ours = med(ips[(name, "nnc", 1000)])
        print(f"{name}, batch 1000: nnc {ours:.0f} images/s")
        for who in peers + (["onnxruntime"] if ort else []):
            if (name, who, 1000) in ips:
                theirs = med(ips[(name, who, 1000)])
                print(f"    {who:14} {theirs:10.0f} images/s  speed-up {ours / theirs:.2f}x")
        ours = med(p50[(name, "nnc", 1)])
        print(f"{name}, batch 1: nnc p50 {ours:.1f} µs")
        if ort:
            theirs = med(p50[(name, "onnxruntime", 1)])
            print(f"    {'onnxruntime':14} p50 {theirs:8.1f} µs  latency ratio nnc / peer {ours / theirs:.2f}x")

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--peers", default="/tmp/peers-venv/bin/python")
    ap.add_argument("--only", help="mlp or lenet; with --zoo, a zoo model's file name without .nn")
    ap.add_argument("--pause", type=float, default=5.0, help="seconds of quiet before each run")
    ap.add_argument("--zoo", action="store_true", help="every zoo model against its PyTorch twin")
    ap.add_argument("--contention", action="store_true", help="the MLP with and without a busy process")
    ap.add_argument("--train-images", type=int, default=10000, help="with --zoo: the subset trained on")
    ap.add_argument("--test-images", type=int, default=1000, help="with --zoo: the test subset")
    ap.add_argument("--epochs", type=int, default=3, help="with --zoo: epochs of the subset (at least 2)")
    ap.add_argument("--twin-threads", type=int, default=2, help="with --zoo: torch.set_num_threads in the twins")
    ap.add_argument("--infer", action="store_true", help="inference at batch 1000 against infer.py")
    ap.add_argument("--infer-peers", default="torch-eager,jax-jit", help="with --infer: infer.py's frameworks")
    ap.add_argument("--onnx-python", default=os.path.join(ROOT, "target", "onnx-venv", "bin", "python"),
                    help="with --infer: the Python that has onnxruntime (made by .ci/run)")
    ap.add_argument("--nnc-args", default="", help="extra flags for every `nnc train`, e.g. '--threads 2'")
    a = ap.parse_args()
    NNC_ARGS.extend(shlex.split(a.nnc_args))
    if a.zoo:
        if a.epochs < 2 or not 0 < a.train_images <= 60000 or not 0 < a.test_images <= 10000:
            sys.exit("--epochs must be at least 2, --train-images in 1..60000, --test-images in 1..10000")
        zoo(a)
    elif a.contention:
        contention(a)
    elif a.infer:
        infer(a)
    else:
        if a.only not in (None, "mlp", "lenet"):
            sys.exit("--only takes mlp or lenet (or a zoo model with --zoo)")
        shipped(a)


if __name__ == "__main__":
    main()
