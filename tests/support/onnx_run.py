"""Runs an ONNX model nnc exported in ONNX Runtime, for tests/export.rs.

    onnx_run.py MODEL.onnx INPUTS.bin DTYPE SHAPE OUT_DIR

INPUTS.bin holds the samples (DTYPE uint8 or float32, row-major, SHAPE comma-separated with
the batch first). The model is first checked (onnx.checker with full_check, which also
infers every shape), then its IR version, opset and symbolic batch axis are checked, then
it runs on all the samples at once and on the first three alone (the batch axis must be
free). Each output is written to OUT_DIR/<name>.bin as float32; a JSON line on stdout names
them with their shapes.
"""

import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main():
    model_path, inputs_path, dtype, shape, out_dir = sys.argv[1:6]
    shape = [int(d) for d in shape.split(",")]
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 8, model.ir_version
    opsets = {o.domain: o.version for o in model.opset_import}
    assert opsets == {"": 13}, opsets
    (graph_input,) = model.graph.input
    batch = graph_input.type.tensor_type.shape.dim[0]
    assert batch.dim_param == "batch", batch
    for out in model.graph.output:
        assert out.type.tensor_type.shape.dim[0].dim_param == "batch", out

    x = np.fromfile(inputs_path, dtype=np.dtype(dtype)).reshape(shape)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(
        model_path, options, providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    results = session.run(None, {graph_input.name: x})
    few = session.run(None, {graph_input.name: x[:3]})
    for name, whole, part in zip(names, results, few):
        # The same values for a sample whatever the batch (within the kernels' reordering).
        scale = max(float(np.max(np.abs(whole[:3]))), 1e-30)
        gap = float(np.max(np.abs(whole[:3] - part)))
        assert gap <= 1e-5 * scale + 1e-6, (name, gap, scale)
    shapes = {}
    for name, value in zip(names, results):
        value.astype(np.float32).tofile(os.path.join(out_dir, name + ".bin"))
        shapes[name] = list(value.shape)
    print(json.dumps({"outputs": shapes, "doc_string": model.doc_string}))


if __name__ == "__main__":
    main()
