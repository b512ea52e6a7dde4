"""light_resnet50: import, print (with sidecar), parse and run gives the same
outputs as running the imported module directly."""

import os

import numpy as np
import onnx

from qcc import ir
from qcc.frontends.onnx import load_onnx
from qcc.runtime import run

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def test_resnet50_print_parse_run_is_identical(tmp_path):
    module = load_onnx(os.path.join(LIGHT, "light_resnet50.onnx"))
    names, _ = ir.io_names(ir.main_func(module))
    args = ir.main_func(module).body.block.args
    rng = np.random.default_rng(0)
    inputs = {n: rng.standard_normal(a.type.get_shape()).astype(np.float32)
              for n, a in zip(names, args, strict=True)}
    direct = run(module, inputs)
    path = tmp_path / "resnet50.mlir"
    ir.print_module(module, path)
    assert path.stat().st_size < 2**20  # weights never inflate the text
    reparsed = ir.load_module(path)
    again = run(reparsed, inputs)
    assert direct.keys() == again.keys()
    for k in direct:
        np.testing.assert_array_equal(again[k], direct[k])
