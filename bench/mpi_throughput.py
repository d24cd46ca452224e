#!/usr/bin/env python3
"""Data-parallel throughput (issue 20): N ranks x 1 thread under mpirun against 1 process x N
threads, alternately in one run, on the same binary (built with `--features nnc/distributed`).

    python3 bench/mpi_throughput.py [--ranks 2] [--rounds 3] [--epochs 3] MODEL.nn ...

For each model and round, both runs train `--epochs` epochs; the figure is the median of the
epochs' `train_seconds` after the first (the steps alone: no compile, data loading or
evaluation). The communication share is what rank 1 reports (time in the sums, including
the wait for the other ranks, over its time in training steps).
"""
import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NNC = ROOT / "target" / "release" / "nnc"


def epochs_seconds(stdout):
    seconds = []
    for line in stdout.splitlines():
        try:
            v = json.loads(line)
        except ValueError:
            continue
        if "train_seconds" in v and not v.get("summary"):
            seconds.append(v["train_seconds"])
    return seconds


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr}")
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    a = ap.parse_args()
    print("| model | round | ranks x 1 thread: s/epoch | 1 process x ranks threads | throughput ratio | communication |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for model in a.models:
        ratios = []
        for r in range(a.rounds):
            common = [model, "--epochs", str(a.epochs), "--json", "--out", "/tmp/nnc-mpi-throughput"]
            ranks = run(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(a.ranks),
                         str(NNC), "train", *common, "--threads", "1"])
            one = run([str(NNC), "train", *common, "--threads", str(a.ranks)])
            t_ranks = statistics.median(epochs_seconds(ranks.stdout)[1:])
            t_one = statistics.median(epochs_seconds(one.stdout)[1:])
            share = re.findall(r"rank 1 of \d+: .*communication ([0-9.]+) %", ranks.stderr)
            ratios.append(t_one / t_ranks)
            print(f"| {Path(model).stem} | {r + 1} | {t_ranks:.3f} | {t_one:.3f} | "
                  f"{t_one / t_ranks:.2f}x | {share[0] if share else '?'} % |", flush=True)
        print(f"| {Path(model).stem} | median | | | {statistics.median(ratios):.2f}x | |")


if __name__ == "__main__":
    main()
