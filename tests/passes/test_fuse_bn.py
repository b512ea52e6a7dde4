"""qcc-fuse-bn keeps the numbers: each lit case, random conv+BN models and the light
ONNX models run on the runtime before and after the pass."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects import func

from qcc import ir, passes
from qcc.dialects import qnn
from qcc.passes import remarks
from qcc.runtime import run
from qcc.testing.litcases import as_main as _as_main
from qcc.testing.litcases import assert_close as _assert_close
from qcc.testing.litcases import random_inputs as _random_inputs

LIT = Path(__file__).parents[1] / "lit" / "passes" / "qcc-fuse-bn.mlir"
TEXT = LIT.read_text()
PIPELINE = re.search(r"-p '([^']*)'", TEXT.splitlines()[0]).group(1)  # the RUN line's
CASES = [c for c in TEXT.split("// -----") if "func.func" in c]
LAYERS = (qnn.ConvOp, qnn.ConvTransposeOp, qnn.DenseOp)


def _case_name(text: str) -> str:
    return re.search(r"func\.func @(\w+)", text).group(1)








def _ops(module, cls):
    return [op for op in module.walk() if isinstance(op, cls)]


def _same_before_and_after(module, pipeline: str = "qcc-fuse-bn", seed: int = 0):
    inputs = _random_inputs(module, np.random.default_rng(seed))
    want = run(module, inputs)
    passes.run(module, pipeline)
    _assert_close(run(module, inputs), want)
    return module


# ------------------------------------------------------------------ lit cases


@pytest.mark.parametrize("case", CASES, ids=_case_name)
def test_lit_case_same_outputs_before_and_after(case):
    module = _same_before_and_after(ir.parse_module(_as_main(case)), PIPELINE)
    assert not _ops(module, qnn.BatchNormOp)  # fused, or a qnn.scale (rule 6)
    remarks.current().take()


def _case(name: str) -> str:
    (text,) = [c for c in CASES if _case_name(c) == name]
    return _as_main(text)


def test_remark_says_why_a_bn_before_a_padded_conv_stays(capsys):
    remarks.current().take()
    passes.run(ir.parse_module(_case("bn_shift_padded_conv")), "qcc-fuse-bn")
    (remark,) = remarks.current().take()
    assert remark.startswith("qnn.batch_norm 'bn14': not folded into qnn.conv 'c14'")
    assert "pads its input" in remark and "nonzero shift" in remark
    assert capsys.readouterr().out == ""  # passes print nothing


def test_remarks_for_another_user_and_skip_layers():
    remarks.current().take()
    passes.run(ir.parse_module(_case("conv_output_has_another_user")), "qcc-fuse-bn")
    assert remarks.current().take() == ["qnn.batch_norm 'bn13': not folded into qnn.conv 'c13': "
                              "the output of qnn.conv 'c13' has another user"]
    passes.run(ir.parse_module(_case("skip_layers")), 'qcc-fuse-bn{skip_layers="a,skipped"}')
    assert remarks.current().take() == ["qnn.batch_norm 'bn12': not folded into qnn.conv 'skipped': "
                              "skip_layers names it"]


def test_no_remark_when_everything_folds():
    remarks.current().take()
    for name in ("conv_bn", "bn_scale_conv", "bn_zero_shift_padded_conv", "bn_mul_add"):
        passes.run(ir.parse_module(_case(name)), "qcc-fuse-bn")
    assert remarks.current().take() == []


@pytest.mark.parametrize("spec", ['qcc-fuse-bn{skip_layers="x, skipped"}',
                                  "qcc-fuse-bn{skip_layers=x,skipped}",
                                  "qcc-fuse-bn{skip-layers=skipped}"])
def test_skip_layers_option_forms(spec):
    module = passes.run(ir.parse_module(_case("skip_layers")), spec)
    (conv,) = _ops(module, qnn.ConvOp)
    assert conv.weight.owner.attributes.get("name") is None  # the original weight
    remarks.current().take()


# --------------------------------------------------------- models built here


def _bn(g: ir.Graph, x, channels: int, rng, name: str):
    params = [rng.uniform(0.5, 1.5, channels), rng.standard_normal(channels),
              rng.standard_normal(channels), rng.uniform(0.2, 2.0, channels)]
    consts = [g.const(p.astype(np.float32)) for p in params]
    return g.add(qnn.BatchNormOp.make(x, *consts, name=name, epsilon=1e-3))


def test_random_conv_bn_relu_model():
    rng = np.random.default_rng(1)
    g = ir.Graph()
    x = g.input("x", (2, 3, 16, 16))
    w1 = g.const(rng.standard_normal((8, 3, 3, 3)).astype(np.float32))
    b1 = g.const(rng.standard_normal(8).astype(np.float32))
    y = g.add(qnn.ConvOp.make(x, w1, b1, name="conv1", strides=(2, 2), pads=(1, 1, 1, 1)))
    y = g.add(qnn.ReluOp.make(_bn(g, y, 8, rng, "bn1")))
    w2 = g.const(rng.standard_normal((4, 8, 1, 1)).astype(np.float32))
    y = g.add(qnn.ConvOp.make(y, w2, name="conv2"))
    y = g.add(qnn.ReluOp.make(_bn(g, y, 4, rng, "bn2")))
    module = _same_before_and_after(g.finish({"y": y}))
    assert not _ops(module, qnn.BatchNormOp) and not _ops(module, qnn.ScaleOp)
    names = [c.weight.owner.attributes["name"].data for c in _ops(module, qnn.ConvOp)]
    assert names == ["conv1.weight_fused", "conv2.weight_fused"]


def test_random_depthwise_model():
    rng = np.random.default_rng(2)
    g = ir.Graph()
    x = g.input("x", (1, 8, 10, 10))
    y = _bn(g, x, 8, rng, "bn_in")  # before an unpadded conv: folds (rule 4)
    w0 = g.const(rng.standard_normal((8, 8, 1, 1)).astype(np.float32))
    y = g.add(qnn.ConvOp.make(y, w0, name="expand"))
    wd = g.const(rng.standard_normal((8, 1, 3, 3)).astype(np.float32))
    y = g.add(qnn.ConvOp.make(y, wd, name="dw", pads=(1, 1, 1, 1), groups=8))
    y = g.add(qnn.ClipOp.make(_bn(g, y, 8, rng, "bn_dw")))
    wp = g.const(rng.standard_normal((16, 8, 1, 1)).astype(np.float32))
    y = _bn(g, g.add(qnn.ConvOp.make(y, wp, name="pw")), 16, rng, "bn_pw")
    module = _same_before_and_after(g.finish({"y": y}))
    assert not _ops(module, qnn.BatchNormOp) and not _ops(module, qnn.ScaleOp)
    assert [c.attributes["name"].data for c in _ops(module, qnn.ConvOp)] == [
        "expand", "dw", "pw"]


def test_grouped_bn_before_conv():
    # rule 4 with groups: input channel c of group g scales W[o in g, c - g * C/groups]
    rng = np.random.default_rng(3)
    g = ir.Graph()
    x = g.input("x", (1, 6, 7, 7))
    y = _bn(g, g.add(qnn.ReluOp.make(x)), 6, rng, "bn")
    w = g.const(rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    y = g.add(qnn.ConvOp.make(y, w, name="conv", strides=(2, 2), groups=2))
    module = _same_before_and_after(g.finish({"y": y}))
    assert not _ops(module, qnn.BatchNormOp) and not _ops(module, qnn.ScaleOp)


# ----------------------------------------------------------- light models

LIGHT = ("light_resnet50", "light_densenet121", "light_inception_v2", "light_shufflenet")


@pytest.mark.parametrize("model", LIGHT)
def test_light_model_keeps_no_bn_after_a_layer_and_matches(model):
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    from qcc.frontends.onnx import load_onnx

    path = os.path.join(os.path.dirname(onnx.__file__), f"backend/test/data/light/{model}.onnx")
    module = load_onnx(path)
    fn = ir.main_func(module)
    (name,), _ = ir.io_names(fn)
    inputs = {name: np.ones(fn.body.block.args[0].type.get_shape(), np.float32)}
    (ret,) = [op for op in fn.body.block.ops if isinstance(op, func.ReturnOp)]
    logits = ret.operands[0].owner.operands[0].owner.attributes["name"].data  # softmax input
    _, before = run(module, inputs, keep=[logits])
    bns = len(_ops(module, qnn.BatchNormOp))

    passes.run(module, "qcc-fuse-bn")
    remarks.current().take()
    assert bns and not _ops(module, qnn.BatchNormOp)
    after_layer = [op for op in _ops(module, (qnn.ScaleOp, qnn.MulOp, qnn.AddOp))
                   if isinstance(op.operands[0].owner, LAYERS)
                   and any(isinstance(v.owner, qnn.ConstantOp) for v in op.operands)]
    assert not after_layer  # no affine left behind a conv, deconv or dense
    outputs, after = run(module, inputs, keep=[logits])
    expected = numpy_helper.to_array(onnx.load_tensor(path.replace(".onnx", "_output_0.pb")))
    np.testing.assert_allclose(next(iter(outputs.values())), expected, rtol=1e-3, atol=1e-4)
    _assert_close(after, before, rtol=1e-4)  # the logits, before the softmax flattens them
