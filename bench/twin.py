"""The PyTorch eager twin of a `.nn` model, generated from `nnc check --json`, trained from nnc's
own initial weights on the same data in the same order.

usage: /tmp/peers-venv/bin/python bench/twin.py FILE.nn [--model NAME] [--epochs N] [--seed S]
           [--threads 2] [--print-module] [--check-first-loss | --check-steps K]

Nothing here is written for a particular model: the module's source is generated layer by
layer from the checker's JSON (every argument resolved, `same` padding as numbers), the
optimizer and the learning-rate schedule are nnc's formulas (Keras 3's, docs/language.md),
and the weights are those `nnc init` writes for the seed. Layouts: nnc's dense weights are
[in, out] (torch's Linear [out, in]: transposed on loading), conv weights [out, in, kh, kw]
in both.

Timing mode (the default) trains the train block's epochs (or --epochs), prints a line per
epoch and a final `RESULT {json}` line like ../shared/bench's scripts (epoch 1, then the
median of epochs 2..N as the steady figure; the test set is evaluated after each epoch,
outside the timed loop). The epoch's order is nnc's (`nnc_order`: nnc-data's seeded
Fisher-Yates), computed before the clock starts; dropout is torch's.

`--check-steps K` (`--check-first-loss` is K = 1) runs `nnc train FILE --stop-after-steps K
--json [--backend interp]` and compares the loss of nnc's step K with the twin's, on the same
images in the same order, with nnc's dropout masks (its counter-based generator, transcribed
below); it prints a `CHECK {json}` line and exits 1 when they differ by more than the
tolerance.

Batch normalisation is torch's `BatchNorm2d`/`BatchNorm1d` with momentum 1 − nnc's (torch
weighs the batch, Keras and nnc the running value) and nnc's eps. In training both normalise
with the batch's biased variance, so the losses `--check-steps` compares agree; torch's running
variance is the unbiased one (n/(n − 1) times the biased one nnc keeps, Keras' convention), so
the test figures, which use the running statistics, differ slightly.

MNIST is read from the project's data/mnist (or MNIST_DIR); `idx`, `csv` and inline sources
from where the `.nn` file says. The nnc binary is target/release/nnc (or --nnc).
"""
import argparse
import csv
import gzip
import json
import math
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NNC = os.path.join(ROOT, "target", "release", "nnc")
MNIST_DIR = os.environ.get("MNIST_DIR", os.path.join(ROOT, "data", "mnist"))

# ---------------------------------------------------------------------------------------------
# nnc's seeded choices, transcribed (nnc-data's `order.rs`, nnc-ir's `interp::random_uniform`)
# ---------------------------------------------------------------------------------------------
M64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
# nnc's validation split is the order of this "epoch" (src/project.rs, VALIDATION_EPOCH).
VALIDATION_EPOCH = M64


def mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def nnc_order(n, seed, epoch):
    """nnc-data's `epoch_order`: Fisher-Yates from the back with Lemire's bounded draws."""
    state = mix((seed ^ mix(epoch)) & M64)
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        bound = i + 1
        state = (state + GAMMA) & M64
        m = mix(state) * bound
        if (m & M64) < bound:
            threshold = ((-bound) & M64) % bound
            while (m & M64) < threshold:
                state = (state + GAMMA) & M64
                m = mix(state) * bound
        j = m >> 64
        order[i], order[j] = order[j], order[i]
    return order


def nnc_uniform(key, stream, n):
    """`random_uniform(key, stream, index)` for index 0..n: SplitMix64, top 24 bits."""
    u64 = np.uint64

    def mix_np(z):
        with np.errstate(over="ignore"):
            z = z + u64(GAMMA)
            z = (z ^ (z >> u64(30))) * u64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> u64(27))) * u64(0x94D049BB133111EB)
            return z ^ (z >> u64(31))

    seed = mix_np(np.array([(key & 0xFFFFFFFF) ^ ((stream * 0xD1B54A32D192ED03) & M64)], np.uint64))
    bits = mix_np(seed ^ np.arange(n, dtype=np.uint64)) >> u64(40)
    return bits.astype(np.float32) / np.float32(1 << 24)


# ---------------------------------------------------------------------------------------------
# The module, generated from the checker's JSON
# ---------------------------------------------------------------------------------------------
class TwinBase(torch.nn.Module):
    """What generated modules share: dropout that can replay nnc's masks (for --check-steps)."""

    def __init__(self):
        super().__init__()
        self.nnc_key = None  # the step number while replaying nnc's dropout, else None

    def dropout(self, x, rate, stream):
        if not self.training or rate == 0.0:
            return x
        if self.nnc_key is None:
            return F.dropout(x, rate, True)
        # nnc: keep where u > rate (a step of u − rate), then scale by 1/(1 − rate).
        keep = torch.from_numpy(nnc_uniform(self.nnc_key, stream, x.numel()).reshape(x.shape) > rate)
        return x * keep * (1.0 / (1.0 - rate))


def attr(name):
    """A layer's attribute name: its label, made an identifier."""
    return "l_" + "".join(c if c.isalnum() else "_" for c in name)


def logits_head(spec):
    """True when the model ends in softmax under `cross_entropy`: nnc fuses the two into one
    softmax-cross-entropy from the logits (its `simplify` pass), and so does the twin."""
    train = spec.get("train") or {}
    layers = spec["layers"]
    return train.get("loss") == "cross_entropy" and layers and layers[-1]["kind"] == "softmax"


def module_source(spec):
    """The Python source of the model's `torch.nn.Module`."""
    cls = "".join(p.capitalize() for p in spec["model"].split("_")) or "Model"
    init, fwd = [], []
    layers = spec["layers"]
    head = logits_head(spec)
    # A graph model: the values read other than by the next line of layers (a branch's
    # start, `add` and `concat`'s operands) are kept in variables; the rest flows through `x`.
    names = [spec["input"]["name"]] + [layer["name"] for layer in layers]
    kept = set()
    for i, layer in enumerate(layers):
        inputs = layer.get("inputs") or [names[i]]
        if len(inputs) > 1 or inputs[0] != names[i]:
            kept.update(inputs)
    var = lambda n: "v_" + attr(n)[2:]  # noqa: E731
    if names[0] in kept:
        fwd.append(f"{var(names[0])} = x")
    for i, layer in enumerate(layers):
        kind, a, name = layer["kind"], layer["args"], layer["name"]
        me = "self." + attr(name)
        inputs = layer.get("inputs") or [names[i]]
        if len(inputs) == 1 and inputs[0] != names[i]:
            fwd.append(f"x = {var(inputs[0])}")
        if kind == "add":
            fwd.append("x = " + " + ".join(var(n) for n in inputs))
        elif kind == "concat":
            fwd.append("x = torch.cat([" + ", ".join(var(n) for n in inputs) + "], 1)")
        elif kind == "global_avgpool":
            fwd.append("x = x.mean((2, 3))")
        elif kind == "batchnorm":
            # PyTorch's momentum is the weight of the batch: 1 − Keras' (nnc's).
            dims = "2d" if len(layer["input_shape"]) == 3 else "1d"
            init.append(
                f"{me} = torch.nn.BatchNorm{dims}({layer['input_shape'][0]}, eps={a['eps']!r}, "
                f"momentum={1.0 - a['momentum']!r})"
            )
            fwd.append(f"x = {me}(x)")
        elif kind == "dense":
            init.append(f"{me} = torch.nn.Linear({layer['input_shape'][0]}, {a['units']}, bias={a['bias']})")
            fwd.append(f"x = {me}(x)")
        elif kind == "conv2d":
            (top, bottom), (left, right) = a["padding"]
            kh, kw = a["kernel"]
            even = top == bottom and left == right
            pad = f"({top}, {left})" if even else "0"
            init.append(
                f"{me} = torch.nn.Conv2d({layer['input_shape'][0]}, {a['filters']}, ({kh}, {kw}), "
                f"stride={tuple(a['stride'])}, padding={pad}, bias={a['bias']})"
            )
            if not even:
                # `same` with an odd total: the extra row at the bottom, column at the right.
                fwd.append(f"x = F.pad(x, ({left}, {right}, {top}, {bottom}))")
            if "connections" in a:
                # A connection table: the weights between unconnected channels held at zero.
                table = [[int(c) for c in row] for row in a["connections"]]  # [input][output]
                init.append(
                    f"self.register_buffer('{attr(name)}_mask', "
                    f"torch.tensor({table}, dtype=torch.float32).t().reshape({a['filters']}, {len(table)}, 1, 1))"
                )
                fwd.append(
                    f"x = F.conv2d(x, {me}.weight * {me}_mask, {me}.bias, {me}.stride, {me}.padding)"
                )
            else:
                fwd.append(f"x = {me}(x)")
        elif kind in ("maxpool", "avgpool"):
            fn = "max_pool2d" if kind == "maxpool" else "avg_pool2d"
            fwd.append(f"x = F.{fn}(x, {tuple(a['size'])}, {tuple(a['stride'])}, ceil_mode={a['ceil_mode']})")
        elif kind == "subsample":
            # LeNet-1998's: per channel, weight · Σ window + bias.
            c = layer["input_shape"][0]
            kk = a["size"][0] * a["size"][1]
            init.append(f"{me}_weight = torch.nn.Parameter(torch.empty({c}))")
            init.append(f"{me}_bias = torch.nn.Parameter(torch.empty({c}))")
            fwd.append(
                f"x = F.avg_pool2d(x, {tuple(a['size'])}, {tuple(a['stride'])}) * {kk} "
                f"* {me}_weight.view(1, -1, 1, 1) + {me}_bias.view(1, -1, 1, 1)"
            )
        elif kind == "flatten":
            fwd.append("x = torch.flatten(x, 1)")
        elif kind == "dropout":
            fwd.append(f"x = self.dropout(x, {a['rate']!r}, {i})")
        elif kind == "relu":
            fwd.append("x = F.relu(x)")
        elif kind == "sigmoid":
            fwd.append("x = torch.sigmoid(x)")
        elif kind == "tanh":
            inner = "x" if a["slope"] == 1.0 else f"x * {a['slope']!r}"
            outer = f"torch.tanh({inner})"
            fwd.append(f"x = {outer}" if a["scale"] == 1.0 else f"x = {outer} * {a['scale']!r}")
        elif kind == "leaky_relu":
            fwd.append(f"x = F.leaky_relu(x, {a['alpha']!r})")
        elif kind == "elu":
            fwd.append(f"x = F.elu(x, {a['alpha']!r})")
        elif kind == "softplus":
            fwd.append("x = F.softplus(x)")
        elif kind == "abs":
            fwd.append("x = torch.abs(x)")
        elif kind == "identity":
            pass
        elif kind == "softmax":
            if head and i == len(layers) - 1:
                fwd.append("# softmax: fused into the loss (cross-entropy from the logits)")
            else:
                fwd.append("x = F.softmax(x, 1)")
        else:
            raise SystemExit(f"twin: layer kind `{kind}` ({name}) has no PyTorch twin")
        fwd[-1] += f"  # {name}"
        if name in kept:
            fwd.append(f"{var(name)} = x")
    lines = [f"class {cls}(TwinBase):", "    def __init__(self):", "        super().__init__()"]
    lines += ["        " + s for s in init]
    lines += ["", "    def forward(self, x):"]
    lines += ["        " + s for s in fwd]
    lines += ["        return x", ""]
    return cls, "\n".join(lines)


def build_module(spec):
    cls, src = module_source(spec)
    scope = {"torch": torch, "F": F, "TwinBase": TwinBase}
    exec(compile(src, f"<twin of {spec['model']}>", "exec"), scope)
    return scope[cls](), src


def load_nnc_weights(module, spec, path):
    """Copies nnc's tensors into the module, transposing dense weights to torch's layout."""
    tensors = load_file(path)
    params = []
    for layer in spec["layers"]:
        for p in layer["parameters"]:
            t = tensors[p["name"]]
            assert list(t.shape) == p["shape"], (p["name"], t.shape, p["shape"])
            suffix = p["name"].rsplit(".", 1)[1]
            if layer["kind"] == "subsample":
                target = getattr(module, f"{attr(layer['name'])}_{suffix}")
            elif layer["kind"] == "batchnorm":
                # gamma and beta are torch's weight and bias; the running statistics are
                # buffers, not trained (not handed to the optimizer).
                suffix = {"gamma": "weight", "beta": "bias"}.get(suffix, suffix)
                target = getattr(getattr(module, attr(layer["name"])), suffix)
                if p.get("running"):
                    with torch.no_grad():
                        target.copy_(t.contiguous())
                    continue
            else:
                target = getattr(getattr(module, attr(layer["name"])), suffix)
                if layer["kind"] == "dense" and suffix == "weight":
                    t = t.t()
            with torch.no_grad():
                target.copy_(t.contiguous())
            params.append(target)
    # The optimizer's order is nnc's: the parameters in declaration order.
    assert len(params) == len(list(module.parameters()))
    return params


# ---------------------------------------------------------------------------------------------
# Optimizers and schedules: nnc's formulas (docs/language.md, crates/nnc-ir/src/optim.rs)
# ---------------------------------------------------------------------------------------------
class NncOptimizer:
    """The update of nnc's optimizer `opt` (every hyper-parameter from the JSON), applied
    tensor by tensor with in-place ops as torch.optim's single-tensor path does on CPU."""

    def __init__(self, params, opt, weight_decay):
        self.params, self.o, self.l2 = params, opt, weight_decay
        self.name = opt["name"]
        self.t = 0
        self.mu_product = 1.0
        zeros = lambda: [torch.zeros_like(p) for p in params]  # noqa: E731
        if self.name in ("momentum", "nesterov"):
            self.v = zeros()
        elif self.name == "adagrad":
            self.h = [torch.full_like(p, opt["initial_accumulator"]) for p in params]
        elif self.name == "rmsprop":
            self.h, self.mg, self.b = zeros(), zeros(), zeros()
        elif self.name in ("adam", "adamw", "adamax", "nadam"):
            self.m, self.v = zeros(), zeros()
        elif self.name == "adadelta":
            self.h, self.u = zeros(), zeros()
        elif self.name != "sgd":
            raise SystemExit(f"twin: optimizer `{self.name}` has no PyTorch twin")

    @torch.no_grad()
    def step(self, lr):
        o, name = self.o, self.name
        self.t += 1
        t = self.t
        if name in ("adam", "adamw", "adamax", "nadam"):
            b1, b2, eps = o["beta1"], o["beta2"], o["eps"]
        if name == "nadam":
            mu = b1 * (1 - 0.5 * 0.96 ** (0.004 * t))
            mu_next = b1 * (1 - 0.5 * 0.96 ** (0.004 * (t + 1)))
            self.mu_product *= mu
            prod = self.mu_product
        for i, w in enumerate(self.params):
            g = w.grad
            if self.l2:
                g = g.add(w, alpha=self.l2)
            if name == "sgd":
                w.add_(g, alpha=-lr)
            elif name == "momentum":
                v = self.v[i].mul_(o["momentum"]).add_(g, alpha=-lr)
                w.add_(v)
            elif name == "nesterov":
                v = self.v[i].mul_(o["momentum"]).add_(g, alpha=-lr)
                w.add_(v, alpha=o["momentum"]).add_(g, alpha=-lr)
            elif name == "adagrad":
                h = self.h[i].addcmul_(g, g)
                w.addcdiv_(g, h.sqrt().add_(o["eps"]), value=-lr)
            elif name == "rmsprop":
                rho = o["rho"]
                h = self.h[i].mul_(rho).addcmul_(g, g, value=1 - rho)
                if o["centered"]:
                    mg = self.mg[i].mul_(rho).add_(g, alpha=1 - rho)
                    denom = (h - mg * mg).add_(o["eps"]).sqrt_()
                else:
                    denom = h.add(o["eps"]).sqrt_()
                if o["momentum"] > 0:
                    b = self.b[i].mul_(o["momentum"]).addcdiv_(g, denom, value=lr)
                    w.sub_(b)
                else:
                    w.addcdiv_(g, denom, value=-lr)
            elif name in ("adam", "adamw"):
                if name == "adamw":
                    w.mul_(1 - lr * o["weight_decay"])
                m = self.m[i].mul_(b1).add_(g, alpha=1 - b1)
                v = self.v[i].mul_(b2).addcmul_(g, g, value=1 - b2)
                alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
                w.addcdiv_(m, v.sqrt().add_(eps), value=-alpha)
            elif name == "adamax":
                m = self.m[i].mul_(b1).add_(g, alpha=1 - b1)
                u = torch.maximum(self.v[i].mul_(b2), g.abs(), out=self.v[i])
                w.addcdiv_(m, u.add(eps), value=-lr / (1 - b1**t))
            elif name == "nadam":
                m = self.m[i].mul_(b1).add_(g, alpha=1 - b1)
                v = self.v[i].mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = v.div(1 - b2**t).sqrt_().add_(eps)
                w.addcdiv_(m, denom, value=-lr * mu_next / (1 - prod * mu_next))
                w.addcdiv_(g, denom, value=-lr * (1 - mu) / (1 - prod))
            elif name == "adadelta":
                rho, eps = o["rho"], o["eps"]
                h = self.h[i].mul_(rho).addcmul_(g, g, value=1 - rho)
                delta = self.u[i].add(eps).sqrt_().div_(h.add(eps).sqrt_()).mul_(g)
                self.u[i].mul_(rho).addcmul_(delta, delta, value=1 - rho)
                w.add_(delta, alpha=-lr)


def schedule_factor(s, step, steps_per_epoch, epochs):
    """nnc-check's `Schedule::factor`: the factor on lr at the run's step `step` (from 0)."""
    per_epoch = float(max(steps_per_epoch, 1))
    total = per_epoch * max(epochs, 1)
    warmup = min(round(s["warmup"] * per_epoch), total)
    t = float(step)
    if t < warmup:
        return (t + 1.0) / warmup
    t, total = t - warmup, total - warmup
    progress = min(t / total, 1.0) if total > 0 else 1.0
    epoch = math.floor(t / per_epoch)
    d = s["decay"]
    if d == "constant":
        return 1.0
    if d == "cosine":
        return s["min"] + (1 - s["min"]) * 0.5 * (1 + math.cos(math.pi * progress))
    if d == "linear":
        return 1.0 - (1.0 - s["min"]) * progress
    if d == "step":
        return s["gamma"] ** math.floor(epoch / max(s["every"], 1))
    if d == "exponential":
        return s["gamma"] ** epoch
    raise SystemExit(f"twin: schedule `{d}` has no twin")


# ---------------------------------------------------------------------------------------------
# Data, as nnc reads and preprocesses it
# ---------------------------------------------------------------------------------------------
def read_idx(path):
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        path += ".gz"
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    _, code, ndim = struct.unpack(">HBB", data[:4])
    if code != 0x08:
        raise SystemExit(f"twin: {path}: only u8 IDX files are supported")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()


def images(x, d):
    """u8 images [N, H, W] as nnc's first ops make them: · scale (in f32), pad, + shift,
    flatten."""
    x = torch.from_numpy(np.array(x)).unsqueeze(1).float() * np.float32(d["scale"])
    if d["pad"]:
        x = F.pad(x, (d["pad"],) * 4)
    if d["shift"]:
        x = x + np.float32(d["shift"])
    return torch.flatten(x, 1) if d["flatten"] else x


def load_source(d, nn_dir, split, classes):
    """(inputs, targets) of a data source: targets are class indices (int64) for image
    sources and under a classification loss, else f32 rows."""
    src = d["source"]
    if src == "mnist":
        prefix = "train" if split == "train" else "t10k"
        x = read_idx(os.path.join(MNIST_DIR, f"{prefix}-images-idx3-ubyte"))
        y = read_idx(os.path.join(MNIST_DIR, f"{prefix}-labels-idx1-ubyte"))
        return images(x, d), torch.from_numpy(y.astype(np.int64))
    if src == "idx":
        x = read_idx(os.path.join(nn_dir, d["images"]))
        y = read_idx(os.path.join(nn_dir, d["labels"]))
        return images(x, d), torch.from_numpy(y.astype(np.int64))
    if src == "inline":
        x = torch.tensor(d["inputs"], dtype=torch.float32)
        t = torch.tensor(d["targets"], dtype=torch.float32)
    elif src == "csv":
        with open(os.path.join(nn_dir, d["path"]), newline="") as f:
            rows = list(csv.reader(f))
        header, body = rows[0], [r for r in rows[1:] if r]
        cols = [header.index(c) for c in d["target"]]
        feats = [i for i in range(len(header)) if i not in cols]
        x = torch.tensor([[float(r[i]) for i in feats] for r in body], dtype=torch.float32)
        t = torch.tensor([[float(r[i]) for i in cols] for r in body], dtype=torch.float32)
    else:
        raise SystemExit(f"twin: data source `{src}` has no twin")
    if classes:
        t = t[:, 0].long()
    return x, t


def load_data(spec, nn_path):
    train = spec["train"]
    nn_dir = os.path.dirname(os.path.abspath(nn_path))
    classes = train["loss"] in ("cross_entropy", "softmax_cross_entropy") or train["data"]["source"] in ("mnist", "idx")
    x, y = load_source(train["data"], nn_dir, "train", classes)
    if train.get("test"):
        xt, yt = load_source(train["test"], nn_dir, "test", classes)
    elif train["data"]["source"] == "mnist":
        xt, yt = load_source(train["data"], nn_dir, "test", classes)
    else:
        xt, yt = x, y
    if train.get("validation"):
        # nnc's hold-out: the first round(n·fraction) of a seeded order, each part sorted.
        n = len(x)
        held = round(n * train["validation"])
        order = nnc_order(n, train["seed"], VALIDATION_EPOCH)
        keep = torch.tensor(sorted(order[held:]))
        x, y = x[keep], y[keep]
    return x, y, xt, yt


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def loss_fn(spec):
    train = spec["train"]
    loss, outputs = train["loss"], spec["layers"][-1]["output_shape"][0]
    if loss == "softmax_cross_entropy" or (loss == "cross_entropy" and logits_head(spec)):
        return lambda out, t: F.cross_entropy(out, t)
    if loss == "cross_entropy":
        return lambda out, t: -torch.log(out.gather(1, t.view(-1, 1))).mean()
    if loss == "mse":
        def mse(out, t):
            target = F.one_hot(t, outputs).float() if t.dtype == torch.int64 else t
            return 0.5 * ((out - target) ** 2).sum() / out.shape[0]
        return mse
    raise SystemExit(f"twin: loss `{loss}` has no twin")


def correct_count(out, t):
    if t.dtype == torch.int64:
        return (out.argmax(1) == t).sum().item()
    if out.shape[1] == 1:
        return ((out > 0.5) == (t > 0.5)).sum().item()
    return (out.argmax(1) == t.argmax(1)).sum().item()


def evaluate(model, loss, x, y):
    model.eval()
    total, correct = 0.0, 0
    with torch.inference_mode():
        for i in range(0, len(x), 1000):
            out = model(x[i:i + 1000])
            total += loss(out, y[i:i + 1000]).item() * len(out)
            correct += correct_count(out, y[i:i + 1000])
    model.train()
    return total / len(x), correct / len(x)


def nnc_json(args, *extra):
    cmd = [args.nnc, *extra]
    p = subprocess.run(cmd, capture_output=True, text=True)
    return p


def check_spec(args):
    p = nnc_json(args, "check", args.file, "--json")
    if p.returncode != 0:
        raise SystemExit(f"twin: nnc check failed:\n{p.stderr}")
    spec = json.loads(p.stdout)
    if isinstance(spec, list):
        named = [s for s in spec if s.get("model") == args.model] if args.model else [s for s in spec if "model" in s]
        if not named:
            raise SystemExit(f"twin: no model {args.model or ''} in {args.file}")
        spec = named[0]
    if not spec.get("train"):
        raise SystemExit(f"twin: `{spec['model']}` has no train block")
    if spec["train"].get("augment_shift"):
        raise SystemExit("twin: augmentation (random shifts) has no twin yet")
    return spec


def model_flags(args):
    return ["--model", args.model] if args.model else []


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file")
    ap.add_argument("--model")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--nnc", default=NNC)
    ap.add_argument("--print-module", action="store_true", help="print the generated module and exit")
    ap.add_argument("--check-first-loss", action="store_true", help="--check-steps 1")
    ap.add_argument("--check-steps", type=int, default=0, help="compare the loss of step K with nnc's")
    ap.add_argument("--tolerance", type=float, default=1e-4, help="relative, for the check")
    ap.add_argument("--backend", default="jit", choices=["jit", "interp"], help="nnc's engine, for the check")
    args = ap.parse_args()
    if args.check_first_loss:
        args.check_steps = max(args.check_steps, 1)
    torch.set_num_threads(args.threads)

    spec = check_spec(args)
    train = spec["train"]
    if args.seed is not None:
        train["seed"] = args.seed
    seed = train["seed"]
    epochs = args.epochs or train["epochs"]
    model, src = build_module(spec)
    if args.print_module:
        print(src)
        return

    with tempfile.TemporaryDirectory(prefix="nnc-twin-") as tmp:
        weights = os.path.join(tmp, "init.safetensors")
        p = nnc_json(args, "init", args.file, "-o", weights, "--seed", str(seed), *model_flags(args))
        if p.returncode != 0:
            raise SystemExit(f"twin: nnc init failed:\n{p.stderr}")
        params = load_nnc_weights(model, spec, weights)
        nnc_loss = None
        if args.check_steps:
            p = nnc_json(args, "train", args.file, "--stop-after-steps", str(args.check_steps), "--json",
                         "--out", os.path.join(tmp, "run"), "--seed", str(seed), "--epochs", str(epochs),
                         "--backend", args.backend,
                         *model_flags(args))
            lines = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
            stop = [o for o in lines if o.get("interrupted")]
            if not stop:
                raise SystemExit(f"twin: nnc train --stop-after-steps gave no step loss:\n{p.stderr[-2000:]}")
            nnc_loss = stop[0]["last_step_loss"]

    x, y, xt, yt = load_data(spec, args.file)
    loss = loss_fn(spec)
    opt = NncOptimizer(params, train["optimizer"], train["weight_decay"])
    n, bs = len(x), min(train["batch"], len(x))
    steps_per_epoch = (n + bs - 1) // bs
    base_lr = train["optimizer"]["lr"]
    schedule = train["schedule"]
    model.train()

    if args.check_steps:
        step, twin_loss = 0, None
        for epoch in range(1, epochs + 1):
            order = torch.tensor(nnc_order(n, seed, epoch))
            for k in range(0, n, bs):
                idx = order[k:k + bs]
                model.nnc_key = step + 1  # nnc keys dropout by the global step, from 1
                for w in params:
                    w.grad = None
                out = loss(model(x[idx]), y[idx])
                out.backward()
                lr = float(np.float32(base_lr * schedule_factor(schedule, step, steps_per_epoch, epochs)))
                opt.step(lr)
                step += 1
                if step == args.check_steps:
                    twin_loss = out.item()
                    break
            if twin_loss is not None:
                break
        rel = abs(twin_loss - nnc_loss) / max(abs(nnc_loss), 1e-30)
        ok = rel <= args.tolerance
        print("CHECK " + json.dumps({"model": spec["model"], "file": args.file, "backend": args.backend,
                                     "step": args.check_steps,
                                     "nnc_loss": nnc_loss, "twin_loss": twin_loss, "relative_difference": rel,
                                     "tolerance": args.tolerance, "agree": ok}), flush=True)
        sys.exit(0 if ok else 1)

    print(f"twin of {spec['model']} ({args.file}): torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{n} training images, batch {bs}, {epochs} epochs, seed {seed}", flush=True)
    xs, ys = torch.empty_like(x), torch.empty_like(y)
    epoch_times, accs, step = [], [], 0
    for epoch in range(1, epochs + 1):
        perm = torch.tensor(nnc_order(n, seed, epoch))
        t0 = time.perf_counter()
        torch.index_select(x, 0, perm, out=xs)
        torch.index_select(y, 0, perm, out=ys)
        total = torch.zeros(())
        for k in range(0, n, bs):
            xb, yb = xs[k:k + bs], ys[k:k + bs]
            for w in params:
                w.grad = None
            out = loss(model(xb), yb)
            out.backward()
            lr = base_lr * schedule_factor(schedule, step, steps_per_epoch, epochs)
            opt.step(lr)
            step += 1
            total += out.detach() * len(xb)
        train_loss = (total / n).item()
        dt = time.perf_counter() - t0
        test_loss, acc = evaluate(model, loss, xt, yt)
        epoch_times.append(dt)
        accs.append(acc)
        print(f"epoch {epoch}: {dt:.3f} s  train_loss {train_loss:.4f}  test_loss {test_loss:.4f}  "
              f"test_acc {acc:.4f}", flush=True)
    steady = float(np.median(epoch_times[1:])) if len(epoch_times) > 1 else float("nan")
    result = {
        "bench": f"twin-{spec['model']}", "framework": "torch-eager", "torch": torch.__version__,
        "threads": torch.get_num_threads(), "train_images": n, "batch": bs,
        "epoch_times_s": [round(t, 3) for t in epoch_times], "epoch1_s": round(epoch_times[0], 3),
        "steady_s_median_epochs_2plus": round(steady, 3), "test_acc_per_epoch": accs, "test_acc": accs[-1],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
