"""qcc-realize-int8 keeps the numbers: the lit cases, small models of every layer kind,
the digits example and ResNet-18 run as fake-quant and as integer graphs on the
runtime and agree (top-1 agreement >= 99.5% on the classifiers)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects.builtin import ModuleOp

import qcc
from qcc import ir, passes
from qcc.dialects import qnn, quant
from qcc.passes import remarks
from qcc.runtime import compile_module, execute, run
from qcc.testing.litcases import as_main as _as_main

LIT = Path(__file__).parents[1] / "lit" / "passes" / "qcc-realize-int8.mlir"
TEXT = LIT.read_text()
CASES = [c for c in TEXT.split("// -----") if "func.func" in c]


def _case_name(text: str) -> str:
    return re.search(r"func\.func @(\w+)", text).group(1)




def _inputs(module, rng, n: int | None = None, scale: float = 1.0):
    fn = ir.main_func(module)
    names, _ = ir.io_names(fn)
    return {name: (rng.standard_normal(
        ((n,) if n else ()) + tuple(a.type.get_shape()[1 if n else 0:])) * scale).astype(
            np.float32) for name, a in zip(names, fn.body.block.args, strict=True)}


def _ops(module, cls):
    return [op for op in module.walk() if isinstance(op, cls)]


def _top1_agreement(fake, real, data: dict[str, np.ndarray], batch: int) -> np.ndarray:
    """Per sample: do the two modules pick the same class?"""
    plans = compile_module(fake), compile_module(real)
    samples = len(next(iter(data.values())))
    same = []
    for i in range(0, samples - batch + 1, batch):
        feed = {k: v[i:i + batch] for k, v in data.items()}
        a, b = (next(iter(execute(p, feed)[0].values())) for p in plans)
        same.append(a.reshape(batch, -1).argmax(1) == b.reshape(batch, -1).argmax(1))
    return np.concatenate(same)


def _realized(module, spec: str = "qcc-realize-int8"):
    out = passes.run(module.clone(), spec)
    assert not _ops(out, quant.FakeQuantOp)
    return out


# ------------------------------------------------------------------ lit cases

# avg_pool averages on the input's grid (half a step, 0.05) where the fake-quant
# graph keeps the float mean; the other cases use scales whose products are exact
TOLERANCE = {"avg_pool": 0.05 + 1e-6}


@pytest.mark.parametrize("spec", ["qcc-realize-int8", "qcc-realize-int8{commute=true}"])
@pytest.mark.parametrize("case", CASES, ids=_case_name)
def test_lit_case_same_outputs_before_and_after(case, spec):
    module = ir.parse_module(_as_main(case))
    x = _inputs(module, np.random.default_rng(0), scale=1.5)
    want = run(module, x)
    got = run(passes.run(module, spec), x)
    for k in want:
        assert got[k].dtype == np.float32
        tol = TOLERANCE.get(_case_name(case), 1e-6 * (1 + float(np.abs(want[k]).max())))
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=tol, err_msg=k)
    remarks.current().take()


def test_remark_says_why_a_layer_stays_float():
    remarks.current().take()
    (case,) = [c for c in CASES if _case_name(c) == "float_layer_stays_float"]
    passes.run(ir.parse_module(_as_main(case)), "qcc-realize-int8")
    assert remarks.current().take() == ["qnn.dense 'd': stays float: input 0 is not fake-quantized"]


def test_learned_fake_quant_stays_float():
    text = """
    func.func @main(%x: tensor<1x2xf32>) -> tensor<1x3xf32> {
      %w = qnn.constant dense<[[0.5, -0.25], [0.125, 0.75], [-1.0, 0.5]]> : tensor<3x2xf32>
      %s = qnn.constant dense<0.1> : tensor<f32>
      %z = qnn.constant dense<0.0> : tensor<f32>
      %xq = quant.fake_quant %x, %s, %z {qtype = !quant.uniform<i8:f32, 0.1>} : (tensor<1x2xf32>, tensor<f32>, tensor<f32>) -> tensor<1x2xf32>
      %wq = quant.fake_quant %w {qtype = !quant.uniform<i8:f32, 0.01>} : (tensor<3x2xf32>) -> tensor<3x2xf32>
      %0 = qnn.dense %xq, %wq {name = "d"} : (tensor<1x2xf32>, tensor<3x2xf32>) -> tensor<1x3xf32>
      func.return %0 : tensor<1x3xf32>
    }"""
    remarks.current().take()
    module = passes.run(ir.parse_module(text), "qcc-realize-int8")
    assert len(_ops(module, quant.FakeQuantOp)) == 2 and not _ops(module, quant.QuantizeOp)
    assert remarks.current().take() == ["qnn.dense 'd': stays float: input 0 is not fake-quantized"]


def test_verifier_rejects_a_half_quantized_layer():
    text = """
    func.func @main(%x: tensor<1x2x!quant.uniform<i8:f32, 0.1>>, %w: tensor<3x2xf32>) -> tensor<1x3xf32> {
      %0 = qnn.dense %x, %w : (tensor<1x2x!quant.uniform<i8:f32, 0.1>>, tensor<3x2xf32>) -> tensor<1x3xf32>
      func.return %0 : tensor<1x3xf32>
    }"""
    with pytest.raises(Exception, match="both be quantized or both be float"):
        ir.parse_module(text).verify()


# ---------------------------------------------------- small models, every layer


def _model(kind: str, rng) -> ModuleOp:
    g = ir.Graph()

    def w(*shape):
        return g.const((rng.standard_normal(shape) * 0.3).astype(np.float32))

    if kind == "conv1d":
        x = g.input("x", (2, 3, 16))
        y = g.add(qnn.ConvOp.make(x, w(8, 3, 3), w(8), pads=(1, 1)))
        y = g.add(qnn.ReluOp.make(y))
        y = g.add(qnn.ConvOp.make(y, w(4, 8, 3), w(4), strides=(2,), dilations=(2,)))
    elif kind == "conv3d_depthwise":
        x = g.input("x", (1, 4, 5, 6, 6))
        y = g.add(qnn.ConvOp.make(x, w(4, 1, 3, 3, 3), w(4), pads=(1,) * 6, groups=4))
        y = g.add(qnn.ReluOp.make(y))
        y = g.add(qnn.ConvOp.make(y, w(6, 2, 1, 3, 3), None, groups=2))
    elif kind == "conv_transpose_avg_pool":
        x = g.input("x", (2, 4, 5, 5))
        y = g.add(qnn.ConvTransposeOp.make(x, w(4, 3, 3, 3), w(3), strides=(2, 2),
                                           pads=(1, 1, 1, 1), output_padding=(1, 1)))
        y = g.add(qnn.ReluOp.make(y))
        y = g.add(qnn.AvgPoolOp.make(y, kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1),
                                     count_include_pad=True))
        y = g.add(qnn.ConvOp.make(y, w(5, 3, 3, 3), w(5), pads=(1, 1, 1, 1)))
    elif kind == "max_pool_between":
        x = g.input("x", (2, 3, 8, 8))
        y = g.add(qnn.ConvOp.make(x, w(6, 3, 3, 3), w(6), pads=(1, 1, 1, 1)))
        y = g.add(qnn.ReluOp.make(y))
        y = g.add(qnn.MaxPoolOp.make(y, kernel=(2, 2), strides=(2, 2)))
        y = g.add(qnn.ReshapeOp.make(y, shape=(2, 96)))
        y = g.add(qnn.DenseOp.make(y, w(10, 96), w(10)))
    elif kind == "attention":
        x = g.input("x", (2, 6, 8))
        q = g.add(qnn.DenseOp.make(x, w(8, 8), w(8)))
        k = g.add(qnn.DenseOp.make(x, w(8, 8), w(8)))
        s = g.add(qnn.MatmulOp.make(q, g.add(qnn.TransposeOp.make(k, perm=(0, 2, 1)))))
        p = g.add(qnn.SoftmaxOp.make(s))
        y = g.add(qnn.MatmulOp.make(p, x))
    else:
        raise ValueError(kind)
    return g.finish({"y": y})


KINDS = ["conv1d", "conv3d_depthwise", "conv_transpose_avg_pool", "max_pool_between",
         "attention"]


@pytest.mark.parametrize("spec", ["qcc-realize-int8", "qcc-realize-int8{commute=true}"])
@pytest.mark.parametrize("kind", KINDS)
def test_small_models_close_to_fake_quant(kind, spec):
    rng = np.random.default_rng(KINDS.index(kind))
    module = _model(kind, rng)
    calib = _inputs(module, rng, n=16)
    fake = qcc.quantize(module, calib, progress=False).module
    real = _realized(fake, spec)
    layers = [op for op in real.walk() if isinstance(op, qnn.LAYER_OPS)]
    assert layers and all(quant.quantized_element(op.operands[0].type) for op in layers)
    x = _inputs(module, rng)
    want, got = run(fake, x)["y"], run(real, x)["y"]
    err = np.linalg.norm(got - want) / np.linalg.norm(want)
    assert err < 0.02, err
    remarks.current().take()


def test_commute_moves_max_pool_and_reshape_onto_integers():
    rng = np.random.default_rng(3)
    module = _model("max_pool_between", rng)
    fake = qcc.quantize(module, _inputs(module, rng, n=16), progress=False).module
    real = _realized(fake, "qcc-realize-int8{commute=true}")
    (pool,) = _ops(real, qnn.MaxPoolOp)
    (reshape,) = _ops(real, qnn.ReshapeOp)
    assert quant.quantized_element(pool.results[0].type) is not None
    assert reshape.input.owner is pool and not _ops(real, qnn.ReluOp)
    assert len(_ops(real, quant.RequantizeOp)) == 1
    plain = _realized(fake)
    assert not _ops(plain, quant.RequantizeOp) and len(_ops(plain, qnn.ReluOp)) == 1


# ------------------------------------------------------------ whole models


def test_digits_example_top1_agreement():
    from qcc.examples import digits

    model, calib, test = digits()
    fake = qcc.quantize(model, calib, progress=False).module
    real = _realized(fake)
    assert len(_ops(real, quant.RequantizeOp)) == 2  # conv1 -> conv2 -> conv3
    with np.load(test) as npz:
        data = {k: npz[k] for k in npz.files if k != "labels"}
    same = _top1_agreement(fake, real, data, batch=1)
    print(f"digits: int8 agrees with fake-quant on {same.sum()}/{len(same)} "
          f"({same.mean():.2%})")
    assert same.mean() >= 0.995


def test_realized_ir_prints_parses_and_runs_the_same(tmp_path):
    from qcc.examples import digits

    model, calib, test = digits()
    real = _realized(qcc.quantize(model, calib, progress=False).module)
    path = tmp_path / "int8.mlir"
    ir.print_module(real, path)
    again = ir.load_module(path)
    again.verify()
    with np.load(test) as npz:
        x = {"input": npz["input"][:1]}
    np.testing.assert_array_equal(run(again, x)["logits"], run(real, x)["logits"])


def test_resnet18_top1_agreement_on_random_inputs():
    from qcc.frontends.onnx import load_onnx
    from qcc.testing.models import resnet18_cifar

    batch = 8
    module = load_onnx(resnet18_cifar(batch=batch, seed=0))
    rng = np.random.default_rng(0)
    calib = {"input": rng.standard_normal((4 * batch, 3, 32, 32)).astype(np.float32)}
    fake = qcc.quantize(module, calib, progress=False).module
    real = _realized(fake)
    convs = _ops(real, qnn.ConvOp)
    assert len(convs) == 20 and all(quant.quantized_element(c.results[0].type) for c in convs)
    assert len(_ops(real, quant.RequantizeOp)) == 8  # conv1 -> relu -> conv2 of each block
    data = {"input": rng.standard_normal((200, 3, 32, 32)).astype(np.float32)}
    same = _top1_agreement(fake, real, data, batch)
    print(f"resnet18_cifar: int8 agrees with fake-quant on {same.sum()}/{len(same)} "
          f"({same.mean():.2%})")
    assert same.mean() >= 0.995
