"""onnxruntime runs every exported fake-quant model; its quantizers agree with the
qcc runtime's within one quantization step.

Two runtimes that sum convolutions in different orders put a few values on the
other side of a rounding boundary; downstream of that the two executions are no
longer fed the same numbers. So the check is made per quantizer, on the same input:
onnxruntime's float value entering each QuantizeLinear is fake-quantized by qcc and
compared with onnxruntime's DequantizeLinear output (one step at most, and rarely
more than an exact match). End to end, the model outputs are compared too, within
the drift the test measures and prints.
"""

import numpy as np
import onnx
import pytest
from onnx import helper

from qcc import ir
from qcc.dialects import quant
from qcc.exporters.onnx import export_onnx
from qcc.flow.quantize import quantize
from qcc.frontends.onnx import load_onnx
from qcc.runtime import run
from qcc.testing.models import digits_cnn, resnet18_cifar, transformer_block

ort = pytest.importorskip("onnxruntime")
from qcc.testing import ort as exact_ort  # noqa: E402

MODELS = {
    "digits_cnn": lambda: (digits_cnn(batch=4)[0], (4, 1, 8, 8)),
    "resnet18_cifar": lambda: (resnet18_cifar(batch=2), (2, 3, 32, 32)),
    "transformer": lambda: (transformer_block(batch=2, seq=16, d_model=64, heads=4),
                            (2, 16, 64)),
}


@pytest.mark.parametrize("model", sorted(MODELS))
def test_exported_quantizers_agree_with_onnxruntime(model, tmp_path):
    proto, shape = MODELS[model]()
    module = load_onnx(proto)
    name = ir.io_names(ir.main_func(module))[0][0]
    rng = np.random.default_rng(0)
    calib = {name: rng.random((4 * shape[0], *shape[1:]), dtype=np.float32)}
    res = quantize(module, calib, progress=False)
    path = tmp_path / "fq.onnx"
    export_onnx(res.module, path)
    graph = onnx.load(path)
    q_nodes = {n.name.rsplit("/", 1)[0]: n for n in graph.graph.node
               if n.op_type == "QuantizeLinear"}
    fqs = [op for op in res.module.walk() if isinstance(op, quant.FakeQuantOp)
           and not op.attributes["id"].data.endswith(".weight")]
    assert fqs and all(op.attributes["id"].data in q_nodes for op in fqs)
    for op in fqs:
        ident = op.attributes["id"].data
        graph.graph.output.extend([
            helper.make_empty_tensor_value_info(q_nodes[ident].input[0]),
            helper.make_empty_tensor_value_info(ident + "_output_0")])
    sess = exact_ort.session(graph)   # QDQ as written: the same on every CPU
    names = [o.name for o in sess.get_outputs()]
    x = rng.random(shape, dtype=np.float32)
    theirs = dict(zip(names, sess.run(None, {name: x}), strict=True))
    for op in fqs:
        ident = op.attributes["id"].data
        qtype = op.properties["qtype"]
        ours = qtype.fake_quant(theirs[q_nodes[ident].input[0]])
        diff = np.abs(ours - theirs[ident + "_output_0"])
        assert diff.max() <= qtype.scale * (1 + 1e-5), (ident, diff.max() / qtype.scale)
        assert np.mean(diff > 1e-6) < 1e-3, ident  # boundary cases only
    # End to end: the drift between the two executions, measured and bounded.
    ours = run(res.module, {name: x})
    for key, value in ours.items():
        drift = np.abs(value - theirs[key]).max() / max(np.abs(theirs[key]).max(), 1e-30)
        print(f"{model} {key}: max relative drift {drift:.2e}")
        assert drift < 0.05
