"""AMCT's four Caffe fusions through qcc-fuse-bn: the lit cases of
tests/lit/passes/qcc-fuse-bn-caffe.mlir are what the frontend imports from their
prototxts, and every case and whole nets keep Caffe's numbers (the numpy oracle)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from caffe_nets import DECONV, MOBILENET, RESNET, input_shapes, parse, write
from caffe_oracle import forward

import qcc
from qcc import ir, passes
from qcc.dialects import qnn
from qcc.runtime import run

LIT = Path(__file__).parents[2] / "lit" / "passes" / "qcc-fuse-bn-caffe.mlir"
CASES = [c for c in LIT.read_text().split("// -----") if "func.func" in c]
NORM = (qnn.BatchNormOp, qnn.ScaleOp)


def _case(text: str) -> tuple[str, Path, str]:
    name = re.search(r"func\.func @(\w+)", text).group(1)
    source = LIT.parent / re.search(r"// Imported from (\S+)", text).group(1)
    body = "\n".join(line for line in text.splitlines() if not line.startswith("//"))
    return name, source, body.strip()


@pytest.mark.parametrize("text", CASES, ids=[_case(c)[0] for c in CASES])
def test_lit_case_is_the_import_and_keeps_the_numbers(text):
    name, source, body = _case(text)
    module = qcc.load(source)
    assert ir.print_module(module).replace("@main", f"@{name}").strip() == body
    net = parse(source.read_text())
    x = {k: np.random.default_rng(3).standard_normal(v).astype(np.float32)
         for k, v in input_shapes(net).items()}
    want = forward(net, net, x)  # the blobs are in the prototxt itself
    before = run(module, x)
    passes.run(module, "qcc-fuse-bn")
    after = run(module, x)
    for k in before:
        np.testing.assert_allclose(before[k], want[k], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(after[k], want[k], rtol=1e-5, atol=1e-5)
    left = [op for op in module.walk() if isinstance(op, NORM)]
    assert len(left) == (1 if name == "bn_scale_padded_conv" else 0)


@pytest.mark.parametrize("text", [RESNET, MOBILENET, DECONV], ids=["resnet", "mobilenet",
                                                                     "deconv"])
def test_nets_fuse_every_bn_scale(tmp_path, text):
    proto, caffemodel, net, model = write(tmp_path, text)
    module = qcc.load(proto, weights=caffemodel)
    passes.run(module, "canonicalize,qcc-fuse-bn")
    assert not [op for op in module.walk() if isinstance(op, NORM)]
    x = {k: np.random.default_rng(4).standard_normal(v).astype(np.float32)
         for k, v in input_shapes(net).items()}
    want = forward(net, model, x)
    for k, v in run(module, x).items():
        np.testing.assert_allclose(v, want[k], rtol=1e-4, atol=3e-5)
