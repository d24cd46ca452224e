#!/usr/bin/env python3
"""Makes the regression data set used by models/regression.nn (standard library only).

    python3 data/regression/make.py     # rewrites train.csv and test.csv next to this script

y = sin(2·x1) + 0.5·x2² − 0.3·x1·x2 + N(0, 0.05²), with x1, x2 ~ U(-1.5, 1.5).
A smooth non-linear surface: a linear model leaves most of its variance unexplained, a small
tanh MLP fits it to the noise floor (MSE ≈ 0.0025). Seeded, so the files are reproducible.
"""
import math
import os
import random


def rows(rng, n):
    for _ in range(n):
        x1 = rng.uniform(-1.5, 1.5)
        x2 = rng.uniform(-1.5, 1.5)
        y = math.sin(2 * x1) + 0.5 * x2 * x2 - 0.3 * x1 * x2 + rng.gauss(0, 0.05)
        yield x1, x2, y


def write(path, data):
    with open(path, "w") as f:
        f.write("x1,x2,y\n")
        for x1, x2, y in data:
            f.write(f"{x1:.6f},{x2:.6f},{y:.6f}\n")


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    rng = random.Random(2026)
    write(os.path.join(here, "train.csv"), list(rows(rng, 512)))
    write(os.path.join(here, "test.csv"), list(rows(rng, 128)))
