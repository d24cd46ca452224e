#!/usr/bin/env python3
"""The scaling model of data-parallel training on MPI (BENCHMARKS.md, issue 20).

A step on N nodes computes ceil(B/N) of the B samples and sums 4*P bytes of gradients with
Rabenseifner's allreduce: 2*log2(N)*alpha + 2*(N-1)/N * bytes / bandwidth. Prints the
predicted speed-up T1 / (ceil(B/N)/B * T1 + allreduce) per model, network and node count.
"""
import math

# name, trainable parameters, batch, one thread's step time in seconds (nnc bench --threads 1;
# mlp and lenet5 on a quiet machine, the others on a loaded one: too slow by 3-8x).
MODELS = [
    ("mlp", 407050, 128, 1.3e-3),
    ("lenet5", 61706, 32, 0.98e-3),
    ("deep-relu", 32842, 64, 0.91e-3),
    ("lenet5-1998", 60850, 32, 17.1e-3),
    ("keras-convnet", 34826, 128, 388e-3),
    ("torch-mnist", 1199882, 64, 477e-3),
]
# name, bytes per second, latency per message in seconds
NETWORKS = [("10 Gbit/s", 10e9 / 8, 25e-6), ("100 Gbit/s", 100e9 / 8, 3e-6)]
NODES = [2, 4, 8, 16, 32, 64]


def allreduce(nodes, nbytes, bandwidth, latency):
    return 2 * math.log2(nodes) * latency + 2 * (nodes - 1) / nodes * nbytes / bandwidth


def speed_up(params, batch, step, nodes, bandwidth, latency):
    compute = math.ceil(batch / nodes) / batch * step
    return step / (compute + allreduce(nodes, 4 * params, bandwidth, latency))


if __name__ == "__main__":
    for name, params, batch, step in MODELS:
        cells = [
            " ".join(f"{speed_up(params, batch, step, n, bw, lat):.1f}" for n in NODES)
            for _, bw, lat in NETWORKS
        ]
        print(f"{name:14} {4 * params / 1e6:5.2f} MB  {step * 1e3:7.2f} ms  | " + " | ".join(cells))
