"""LeNet-5 in PyTorch from nnc's initial weights and in nnc's data order: a like-for-like twin.

usage: /tmp/peers-venv/bin/python bench/lenet_twin.py [--seed 7] [--epochs 2] [--log-every 0]
       [--lr 0.02] [--schedule cosine|constant]

`nnc train models/lenet5.nn --seed N` and this script with the same seed start from the same
weights and see the same batches in the same order, so their losses agree step by step up to
float rounding (which grows, as in any chaotic system, over thousands of steps). Everything
seeded is transcribed from nnc's documented algorithms:

- weights: nnc-ir's `init` (SplitMix64 keyed by `seed ^ fnv1a(tensor name)`, U(±1/√fan_in) in
  f64, rounded to f32); dense weights are stored [in, out] by nnc, [out, in] by torch;
- order: nnc-data's `order` (SplitMix64 from `mix(seed ^ mix(epoch))`, epochs from 1, Lemire's
  bounded draws, Fisher-Yates from the back).

The model and hyper-parameters are those of models/lenet5.nn: momentum 0.9, batch 32, the rate
0.02 falling along a cosine to 0 over the run (`schedule cosine`, set before each step from
the step's index, as nnc's driver does). `--lr 0.01 --schedule constant` is the recipe of
../shared/bench/lenet_torch.py.
"""
import argparse
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "shared", "bench"))
import common  # noqa: E402  (../shared/bench: MNIST loading)

M64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15


def mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


class SplitMix64:
    def __init__(self, state):
        self.state = state & M64

    def next(self):
        self.state = (self.state + GAMMA) & M64
        return mix(self.state)

    def uniform(self):
        return (self.next() >> 11) / float(1 << 53)

    def below(self, n):
        m = self.next() * n
        if (m & M64) < n:
            threshold = ((-n) & M64) % n
            while (m & M64) < threshold:
                m = self.next() * n
        return m >> 64


def fnv1a(text):
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def nnc_init(seed):
    """nnc's initial LeNet-5 parameters for `seed`, in torch's layouts."""
    # (nnc name, nnc shape, fan_in, torch name, transpose)
    tensors = [
        ("c1.weight", (6, 1, 5, 5), 25, "conv1.weight", False),
        ("c1.bias", (6,), 25, "conv1.bias", False),
        ("c3.weight", (16, 6, 5, 5), 150, "conv2.weight", False),
        ("c3.bias", (16,), 150, "conv2.bias", False),
        ("f5.weight", (400, 120), 400, "fc1.weight", True),
        ("f5.bias", (120,), 400, "fc1.bias", False),
        ("f6.weight", (120, 84), 120, "fc2.weight", True),
        ("f6.bias", (84,), 120, "fc2.bias", False),
        ("out.weight", (84, 10), 84, "fc3.weight", True),
        ("out.bias", (10,), 84, "fc3.bias", False),
    ]
    params = {}
    for name, shape, fan_in, torch_name, transpose in tensors:
        rng = SplitMix64(seed ^ fnv1a(name))
        limit = 1.0 / np.sqrt(float(fan_in))
        n = int(np.prod(shape))
        data = np.array([(2.0 * rng.uniform() - 1.0) * limit for _ in range(n)], np.float64)
        t = data.astype(np.float32).reshape(shape)
        params[torch_name] = torch.from_numpy(np.ascontiguousarray(t.T if transpose else t))
    return params


def nnc_order(n, seed, epoch):
    rng = SplitMix64(mix(seed ^ mix(epoch)))
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        j = rng.below(i + 1)
        order[i], order[j] = order[j], order[i]
    return order


class LeNet5(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 6, 5)
        self.conv2 = torch.nn.Conv2d(6, 16, 5)
        self.fc1 = torch.nn.Linear(400, 120)
        self.fc2 = torch.nn.Linear(120, 84)
        self.fc3 = torch.nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--log-every", type=int, default=0, help="print the mean loss of every N steps")
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--schedule", default="cosine", choices=["cosine", "constant"])
    args = p.parse_args()
    torch.set_num_threads(2)

    model = LeNet5()
    model.load_state_dict(nnc_init(args.seed))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    xtr, ytr, xte, yte = common.load_mnist()
    X = torch.from_numpy(common.mnist_padded32(xtr)).unsqueeze(1)
    Y = torch.from_numpy(ytr.astype(np.int64))
    Xte = torch.from_numpy(common.mnist_padded32(xte)).unsqueeze(1)
    Yte = torch.from_numpy(yte.astype(np.int64))

    velocity = [torch.zeros_like(w) for w in model.parameters()]
    steps_per_epoch = (len(X) + 31) // 32
    total_steps = steps_per_epoch * args.epochs
    step = 0
    for epoch in range(1, args.epochs + 1):
        order = torch.tensor(nnc_order(len(X), args.seed, epoch))
        total, window = 0.0, []
        for k in range(0, len(X), 32):
            idx = order[k:k + 32]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(X[idx]), Y[idx])
            loss.backward()
            if args.schedule == "cosine":
                # nnc's `Schedule::factor`, in f64, rounded to f32 as nnc's step receives it;
                # and nnc's (Keras') momentum, v ← μv − lr·g; w ← w + v, which keeps each
                # gradient at the rate of its step. (PyTorch's SGD, b ← μb + g; w ← w − lr·b,
                # is the same only while the rate is constant.)
                rate = float(np.float32(args.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))))
                with torch.no_grad():
                    for w, v in zip(model.parameters(), velocity):
                        v.mul_(0.9).sub_(w.grad * rate)
                        w.add_(v)
            else:
                opt.step()
            step += 1
            total += loss.item() * len(idx)
            window.append(loss.item())
            if args.log_every and len(window) == args.log_every:
                print(f"  steps to {k // 32 + 1}: mean loss {np.mean(window):.6f}")
                window = []
        with torch.inference_mode():
            correct = sum((model(Xte[i:i + 1000]).argmax(1) == Yte[i:i + 1000]).sum().item()
                          for i in range(0, 10000, 1000))
        print(f"epoch {epoch}: train_loss {total / len(X):.6f}  test_acc {correct / 10000:.4f}",
              flush=True)


if __name__ == "__main__":
    main()
