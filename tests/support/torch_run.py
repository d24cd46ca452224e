"""Runs a PyTorch module nnc exported (`nnc export --pytorch DIR`), for tests/export.rs.

    torch_run.py DIR CLASS INPUTS.bin DTYPE SHAPE OUT_DIR [BATCH.bin SHAPE LABELS.bin LDTYPE]

Imports DIR/model.py, loads DIR/model.safetensors with `load_state_dict(strict=True)`, and
writes the module's outputs on the samples (`model(model.preprocess(x))`, in eval mode) to
OUT_DIR/output.bin as float32. With a training batch (its samples, their shape, and its
targets as int64 labels or float32 values), it also takes one training step: the loss
`model.loss` gives on the batch in train mode, a backward pass and an SGD update; a JSON
line on stdout gives that loss (the step's) and whether every parameter got a gradient.
"""

import importlib.util
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file


def load(path, dtype, shape):
    return torch.from_numpy(np.fromfile(path, dtype=np.dtype(dtype)).reshape(shape))


def main():
    directory, cls, inputs, dtype, shape, out_dir = sys.argv[1:7]
    spec = importlib.util.spec_from_file_location("model", os.path.join(directory, "model.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = getattr(module, cls)()
    model.load_state_dict(load_file(os.path.join(directory, "model.safetensors")), strict=True)
    torch.set_num_threads(2)
    x = load(inputs, dtype, [int(d) for d in shape.split(",")])
    model.eval()
    with torch.no_grad():
        out = model(model.preprocess(x))
    out.numpy().astype(np.float32).tofile(os.path.join(out_dir, "output.bin"))
    report = {"output": list(out.shape)}
    if len(sys.argv) > 7:
        batch, bshape, labels, ldtype = sys.argv[7:11]
        xb = load(batch, dtype, [int(d) for d in bshape.split(",")])
        yb = torch.from_numpy(np.fromfile(labels, dtype=np.dtype(ldtype)))
        if ldtype == "int32":
            yb = yb.to(torch.int64)
        model.train()
        loss = model.loss(model(model.preprocess(xb)), yb)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        optimizer.zero_grad()
        loss.backward()
        report["all_grads"] = all(
            p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in model.parameters()
        )
        optimizer.step()
        report["loss"] = float(loss)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
