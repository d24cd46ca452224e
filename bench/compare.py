#!/usr/bin/env python3
"""Runs nnc and the peer frameworks on the same networks, alternately, in one run, and prints
the ratios (nnc time / peer time). Standard library only.

    python3 bench/compare.py [--rounds 3] [--peers /tmp/peers-venv/bin/python] [--only mlp|lenet]

The peers are the scripts of ../shared/bench (see its README for their virtual environment).
nnc is run as `target/release/nnc train ... --json` (build it first: cargo build --release);
its steady-state epoch is the median of epochs 2..N, as the peers report theirs. Peak RSS is
measured with /usr/bin/time for nnc and reported by the peers for themselves.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEERS_DIR = os.path.join(ROOT, "..", "shared", "bench")
NNC = os.path.join(ROOT, "target", "release", "nnc")


def run_nnc(model, epochs):
    cmd = ["/usr/bin/time", "-f", "maxrss_kib %M", NNC, "train", model, "--epochs", str(epochs), "--json",
           "--out", "/tmp/nnc-bench-runs"]
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--peers", default="/tmp/peers-venv/bin/python")
    ap.add_argument("--only", choices=["mlp", "lenet"])
    ap.add_argument("--pause", type=float, default=5.0, help="seconds of quiet before each run")
    a = ap.parse_args()
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


if __name__ == "__main__":
    main()
