"""The fuzzer's inputs (`qcc.testing.fuzz`): valid seeds of the four formats (ONNX
models, MLIR modules and lit cases, a simplified config, npz data) and the mutations
that break them, in their bytes and in their structure."""

from __future__ import annotations

import io
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]

CFG_SEED = """batch_num: 2
activation_offset: true
skip_layers: "fc"
skip_layer_types: "InnerProduct"
do_fusion: true
skip_fusion_layers: "conv"
do_equalization: false
common_config {
  arq_quantize { channel_wise: true quant_bits: 8 }
  ifmr_quantize { search_range_start: 0.7 search_range_end: 1.3 search_step: 0.01
                  max_percentile: 0.999999 min_percentile: 0.999999 asymmetric: true }
}
override_layer_types { layer_type: "Gemm" calibration_config { hfmg_quantize { num_of_bins: 4096 } } }
override_layer_configs { layer_name: "conv" calibration_config { kl_quantize { } } }
"""


# ------------------------------------------------------------------ seeds


def _small_onnx() -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 2, 3, 3)).astype(np.float32),
                                     "conv.weight"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "conv.bias"),
             numpy_helper.from_array(rng.standard_normal((3, 64)).astype(np.float32),
                                     "fc.weight"),
             numpy_helper.from_array(np.array([1, 64], np.int64), "shape")]
    nodes = [helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], name="conv",
                              pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Reshape", ["r", "shape"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fc.weight"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(
        nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return model.SerializeToString()


def _small_mlir() -> str:
    from qcc import ir
    from qcc.dialects import qnn

    g = ir.Graph()
    x = g.input("x", (1, 2, 4, 4))
    w = np.linspace(-1, 1, 72, dtype=np.float32).reshape(4, 2, 3, 3)
    c = g.add(qnn.ConvOp.make(x, g.const(w, name="conv.weight"), pads=(1, 1, 1, 1),
                              name="conv"))
    r = g.add(qnn.ReluOp.make(c, name="relu"))
    f = g.add(qnn.ReshapeOp.make(r, shape=(1, 64), name="flat"))
    d = np.linspace(-0.5, 0.5, 192, dtype=np.float32).reshape(3, 64)
    y = g.add(qnn.DenseOp.make(f, g.const(d, name="fc.weight"), name="fc"))
    return ir.print_module(g.finish({"y": y}))


def _lit_chunks() -> list[str]:
    chunks = []
    for path in sorted((ROOT / "tests" / "lit").rglob("*.mlir")):
        for chunk in path.read_text().split("// -----"):
            body = "\n".join(line for line in chunk.splitlines()
                             if not line.lstrip().startswith("//"))
            if "func.func" in body and len(body) < 6000:
                chunks.append(body)
    return chunks


@dataclass
class Seeds:
    onnx: list[bytes]
    mlir: list[str]
    small_mlir: str
    x: np.ndarray  # an input of the small models, batch 8
    digits_x: np.ndarray


def make_seeds() -> Seeds:
    from qcc.examples import digits

    model, calib, _ = digits()
    with np.load(calib) as npz:
        digits_x = npz["input"][:8]
    small = _small_mlir()
    x = np.random.default_rng(2).standard_normal((8, 2, 4, 4)).astype(np.float32)
    return Seeds([Path(model).read_bytes(), _small_onnx()], [small, *_lit_chunks()], small,
                 x, digits_x)


# -------------------------------------------------------------- mutations

_TOKENS = ["{", "}", "(", ")", "<", ">", ":", ",", "=", "%", "\"", "x", "0", "-1", "1e39",
           "nan", "inf", "9999999999", "tensor", "f32", "i8", "qnn.conv", "dense", "?", "\n"]


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if not b:
            b += bytes([rng.randrange(256)])
        op = rng.randrange(5)
        i = rng.randrange(len(b))
        if op == 0:
            b[i] = rng.randrange(256)
        elif op == 1:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 2:
            del b[i:i + rng.randint(1, 16)]
        elif op == 3:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            j = rng.randrange(len(b))
            b[i:i] = b[j:j + rng.randint(1, 32)]
    if rng.random() < 0.1:
        b = b[:rng.randrange(len(b) + 1)]
    return bytes(b)


def mutate_text(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    for _ in range(rng.randint(1, 4)):
        if not lines:
            lines = [""]
        op = rng.randrange(6)
        i = rng.randrange(len(lines))
        line = lines[i]
        if op == 0:
            del lines[i]
        elif op == 1:
            lines.insert(rng.randrange(len(lines) + 1), lines[rng.randrange(len(lines))])
        elif op == 2:  # a number replaced
            nums = list(re.finditer(r"-?\d+(\.\d+)?(e-?\d+)?", line))
            if nums:
                m = rng.choice(nums)
                new = rng.choice(["0", "-1", "3", "65536", "1e39", "2.5", "-0.0", "nan"])
                lines[i] = line[:m.start()] + new + line[m.end():]
        elif op == 3:  # a token inserted
            k = rng.randrange(len(line) + 1)
            lines[i] = line[:k] + rng.choice(_TOKENS) + line[k:]
        elif op == 4:  # a span deleted
            k = rng.randrange(len(line) + 1)
            lines[i] = line[:k] + line[k + rng.randint(1, 12):]
        else:  # a word replaced by another word of the text
            words = re.findall(r"[A-Za-z_][\w.]*", text)
            hits = list(re.finditer(r"[A-Za-z_][\w.]*", line))
            if words and hits:
                m = rng.choice(hits)
                lines[i] = line[:m.start()] + rng.choice(words) + line[m.end():]
    return "\n".join(lines) + "\n"


def mutate_numbers(text: str, rng: random.Random) -> str:
    """One or two numbers of the text (a shape, pad, stride, group, a constant)
    changed: the IR still parses, so verifiers, passes and kernels see it."""
    nums = list(re.finditer(_NUMBER, text))
    for _ in range(rng.randint(1, 2)):
        if not nums:
            break
        m = rng.choice(nums)
        new = rng.choice(["0", "1", "2", "3", "5", "-1", "7", "64", "0.0", "nan"])
        text = text[:m.start()] + new + text[m.end():]
        nums = list(re.finditer(_NUMBER, text))
    return text


# A number of an attribute (pads, strides, groups, dense values), not of a type's
# shape (`tensor<1x2x...>`, whose change only breaks the types' agreement).
_NUMBER = r"(?<![\w%#<])-?\d+(\.\d+)?(e-?\d+)?(?![\dx])"


def mutate_onnx(data: bytes, rng: random.Random) -> bytes:
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load_from_string(data)
    g = m.graph
    names = [n for node in g.node for n in node.output] + [i.name for i in g.input] + \
        [t.name for t in g.initializer]
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(10)
        node = rng.choice(g.node) if len(g.node) else None
        if op == 0 and node is not None and node.input:
            node.input[rng.randrange(len(node.input))] = rng.choice(names + ["nowhere", ""])
        elif op == 1 and node is not None:
            g.node.remove(node)
        elif op == 2 and len(g.node) > 1:
            i, j = rng.randrange(len(g.node)), rng.randrange(len(g.node))
            a, b = onnx.NodeProto(), onnx.NodeProto()
            a.CopyFrom(g.node[i])
            b.CopyFrom(g.node[j])
            g.node[i].CopyFrom(b)
            g.node[j].CopyFrom(a)
        elif op == 3 and node is not None and node.attribute:
            attr = rng.choice(node.attribute)
            if attr.ints:
                attr.ints[rng.randrange(len(attr.ints))] = rng.choice([0, -1, 7, 1 << 20])
            elif attr.type == onnx.AttributeProto.INT:
                attr.i = rng.choice([0, -1, 2, 1 << 20])
            elif attr.type == onnx.AttributeProto.FLOAT:
                attr.f = rng.choice([0.0, -1.0, float("nan"), 1e30])
        elif op == 4 and node is not None:
            node.op_type = rng.choice(["Relu", "Conv", "Gemm", "Add", "Softmax", "Nope",
                                       "Reshape", "MaxPool", "Concat", "Transpose"])
        elif op == 5 and len(g.initializer):
            t = rng.choice(g.initializer)
            arr = numpy_helper.to_array(t).copy()
            choice = rng.randrange(4)
            if choice == 0 and arr.size and arr.dtype.kind == "f":
                arr.flat[rng.randrange(arr.size)] = rng.choice([np.nan, np.inf, -np.inf])
            elif choice == 1:
                arr = arr.reshape(-1)[:max(0, arr.size - rng.randint(1, 4))]
            elif choice == 2:
                arr = arr.astype(rng.choice([np.float64, np.int64, np.float16, np.int8]))
            else:
                arr = arr.reshape(-1)
            t.CopyFrom(numpy_helper.from_array(arr, t.name))
        elif op == 6 and len(g.input):
            dims = g.input[0].type.tensor_type.shape.dim
            if len(dims):
                d = dims[rng.randrange(len(dims))]
                if rng.random() < 0.5:
                    d.dim_value = rng.choice([0, 1, 3, 1000])
                else:
                    d.dim_param = rng.choice(["N", "batch", "?"])
        elif op == 7 and len(g.input):
            g.input[0].type.tensor_type.elem_type = rng.choice([0, 2, 6, 7, 9, 10, 11, 16])
        elif op == 8:
            m.opset_import[0].version = rng.choice([1, 7, 9, 13, 17, 21, 99])
        elif op == 9 and len(g.output):
            if rng.random() < 0.5:
                g.output[0].name = rng.choice(names + ["nowhere"])
            else:
                g.node.append(helper.make_node(rng.choice(["Relu", "Add", "Identity"]),
                                               [rng.choice(names)] * rng.randint(1, 2),
                                               [rng.choice(names + ["extra"])]))
    return m.SerializeToString()


def mutate_npz(arrays: dict[str, np.ndarray], rng: random.Random) -> dict[str, np.ndarray]:
    out = dict(arrays)
    key = rng.choice(list(out))
    a = out[key]
    op = rng.randrange(9)
    if op == 0:
        out[key] = a.astype(rng.choice([np.int64, np.float64, np.float16, np.bool_, np.uint8,
                                        np.complex64]))
    elif op == 1:
        out[key] = a.reshape(-1)[: a.size // 2] if rng.random() < 0.5 else a[:, :1]
    elif op == 2:
        out[rng.choice(["y", "labels", "input ", "X"])] = a
        if rng.random() < 0.5:
            del out[key]
    elif op == 3:
        b = a.copy()
        b[...] = rng.choice([np.nan, np.inf, -np.inf, 1e38, 0.0])
        out[key] = b
    elif op == 4:
        out[key] = a[:rng.choice([0, 1])]
    elif op == 5:
        out[key] = np.asarray(a.reshape(-1)[0]) if a.size else np.asarray(1.0)
    elif op == 6:
        b = a.copy()
        b.reshape(-1)[rng.randrange(a.size)] = np.nan
        out[key] = b
    elif op == 7:
        out["labels"] = rng.choice([np.arange(len(a)), np.zeros((len(a), 2)),
                                    np.array(["a"] * len(a))])
    else:
        out[key] = np.concatenate([a, a[:1]])[:, ...]
    return out


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()
