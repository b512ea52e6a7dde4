"""Whole models as ONNX `ModelProto`s, built with `onnx.helper` from seeded numpy weights.

- `resnet18_cifar(batch, seed)`: ResNet-18 for 3x32x32 images (random He weights,
  random BatchNormalization statistics), 10 classes.
- `digits_cnn(batch, seed)`: a small CNN that classifies scikit-learn's 8x8 digits,
  with its held-out test set. Its convolutions are fixed, its BatchNormalization
  statistics are measured on the training images and its classifier is trained.
- `transformer_block(batch, seq, d_model, heads, seed, mask_value)`: one transformer
  encoder block written the way exporters emit it (shape arithmetic, Erf GELU,
  additive causal mask).

Every model has `ir_version` 8 and opset 17, so onnxruntime >= 1.14 runs it. Nothing
is downloaded and torch is not needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 8
OPSET = 17

__all__ = ["resnet18_cifar", "digits_cnn", "transformer_block", "causal_mask",
           "IR_VERSION", "OPSET"]


class _Builder:
    """Collects nodes and initializers; `node` returns the (first) output's name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._names: set[str] = set()

    def input(self, name: str, shape: Sequence[int | str], dtype=TensorProto.FLOAT) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, dtype, list(shape)))
        return name

    def output(self, name: str, shape: Sequence[int | str] | None,
               dtype=TensorProto.FLOAT) -> None:
        self.outputs.append(helper.make_tensor_value_info(name, dtype, shape))

    def init(self, name: str, array: np.ndarray) -> str:
        assert name not in self._names, name
        self._names.add(name)
        a = np.asarray(array)
        self.inits.append(numpy_helper.from_array(a if a.flags.c_contiguous else a.copy(), name))
        return name

    def node(self, op_type: str, inputs: Sequence[str], name: str,
             outputs: Sequence[str] | None = None, **attrs) -> str:
        outs = list(outputs) if outputs is not None else [name + "_output_0"]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=name, **attrs))
        return outs[0]

    def model(self, doc: str = "") -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs,
                                  self.inits, doc_string=doc)
        model = helper.make_model(graph, producer_name="qcc.testing.models",
                                  opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model, full_check=True)
        return model


def _f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


# ------------------------------------------------------------------ ResNet-18


def _he_conv(rng: np.random.Generator, cout: int, cin: int, k: int) -> np.ndarray:
    std = math.sqrt(2.0 / (cin * k * k))
    return _f32(rng.standard_normal((cout, cin, k, k)) * std)


def _random_bn(rng: np.random.Generator, c: int, gamma: tuple[float, float] = (0.5, 1.0)):
    """Scale, bias, mean, var as a trained network has them (var strictly positive)."""
    return (_f32(rng.uniform(*gamma, c)), _f32(rng.normal(0.0, 0.1, c)),
            _f32(rng.normal(0.0, 0.2, c)), _f32(rng.uniform(0.5, 1.5, c)))


def _conv_bn(b: _Builder, rng: np.random.Generator, x: str, name: str, cin: int, cout: int,
             k: int, stride: int, relu: bool, gamma: tuple[float, float] = (0.5, 1.0)) -> str:
    w = b.init(f"{name}.weight", _he_conv(rng, cout, cin, k))
    p = k // 2
    y = b.node("Conv", [x, w], f"/{name}/Conv", kernel_shape=[k, k], strides=[stride, stride],
               pads=[p, p, p, p], dilations=[1, 1], group=1)
    bn = name.replace("conv", "bn").replace("downsample.0", "downsample.1")
    s, bias, mean, var = _random_bn(rng, cout, gamma)
    y = b.node("BatchNormalization",
               [y, b.init(f"{bn}.weight", s), b.init(f"{bn}.bias", bias),
                b.init(f"{bn}.running_mean", mean), b.init(f"{bn}.running_var", var)],
               f"/{bn}/BatchNormalization", epsilon=1e-5, momentum=0.9)
    if relu:
        y = b.node("Relu", [y], f"/{name}/Relu")
    return y


def resnet18_cifar(batch: int = 1, seed: int = 0) -> onnx.ModelProto:
    """ResNet-18 for CIFAR-10 (input `input`: batch x 3 x 32 x 32, output `logits`: batch x 10).

    3x3 stem convolution to 64 channels (no max-pool), four stages of two BasicBlocks
    (64, 128, 256, 512 channels; stages 2-4 start with a stride-2 block whose shortcut
    is a 1x1 stride-2 convolution + BatchNormalization), GlobalAveragePool, Flatten,
    Gemm (transB=1, as PyTorch exports `nn.Linear`). Convolutions have no bias and
    are followed by BatchNormalization with random statistics (running var in
    [0.5, 1.5]); weights are He-initialised, so activations stay O(1)-O(10).
    11.2 M parameters.
    """
    rng = np.random.default_rng(seed)
    b = _Builder("resnet18_cifar")
    x = b.input("input", [batch, 3, 32, 32])
    y = _conv_bn(b, rng, x, "conv1", 3, 64, 3, 1, relu=True)
    cin = 64
    for stage, cout in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            stride = 2 if stage > 1 and block == 0 else 1
            pre = f"layer{stage}.{block}"
            h = _conv_bn(b, rng, y, f"{pre}.conv1", cin, cout, 3, stride, relu=True)
            # the last BN of a residual branch has a smaller scale, as in trained nets
            h = _conv_bn(b, rng, h, f"{pre}.conv2", cout, cout, 3, 1, relu=False,
                         gamma=(0.2, 0.6))
            short = y
            if stride != 1 or cin != cout:
                short = _conv_bn(b, rng, y, f"{pre}.downsample.0", cin, cout, 1, stride,
                                 relu=False)
            y = b.node("Add", [h, short], f"/{pre}/Add")
            y = b.node("Relu", [y], f"/{pre}/Relu_1")
            cin = cout
    y = b.node("GlobalAveragePool", [y], "/avgpool/GlobalAveragePool")
    y = b.node("Flatten", [y], "/Flatten", axis=1)
    w = b.init("fc.weight", _f32(rng.standard_normal((10, 512)) / math.sqrt(512)))
    bias = b.init("fc.bias", _f32(rng.uniform(-0.1, 0.1, 10)))
    b.node("Gemm", [y, w, bias], "/fc/Gemm", ["logits"], alpha=1.0, beta=1.0, transB=1)
    b.output("logits", [batch, 10])
    return b.model("ResNet-18 (CIFAR variant) with random weights")


# --------------------------------------------------------------- digits CNN


def _np_conv(x: np.ndarray, w: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """float64 NCHW convolution (no bias), for measuring statistics and features."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    k = w.shape[-1]
    win = sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("nchwij,ocij->nohw", win, w, optimize=True)


def _gabor_filters(rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` zero-mean, unit-norm 3x3 filters: oriented edge/bar detectors (Gabor-like)
    for 4 orientations and 2 phases, the rest random."""
    yy, xx = np.mgrid[-1:2, -1:2].astype(np.float64)
    filters = []
    for theta in np.arange(4) * np.pi / 4:
        u = xx * np.cos(theta) + yy * np.sin(theta)
        envelope = np.exp(-(xx**2 + yy**2) / 2.0)
        for phase in (0.0, np.pi / 2):
            filters.append(envelope * np.cos(np.pi / 2 * u + phase))
    while len(filters) < n:
        filters.append(rng.standard_normal((3, 3)))
    f = np.stack(filters[:n])
    f -= f.mean(axis=(1, 2), keepdims=True)
    f /= np.linalg.norm(f.reshape(n, -1), axis=1)[:, None, None] + 1e-12
    return f[:, None]


def _measured_bn(rng: np.random.Generator, h: np.ndarray):
    """BatchNormalization parameters whose statistics are those of `h` (N, C, H, W)."""
    c = h.shape[1]
    mean = h.mean(axis=(0, 2, 3))
    var = h.var(axis=(0, 2, 3))
    gamma = rng.uniform(0.8, 1.2, c)
    beta = rng.uniform(0.0, 0.3, c)
    return gamma, beta, mean, var


def _apply_bn(h: np.ndarray, gamma, beta, mean, var, *, eps: float = 1e-5) -> np.ndarray:
    a = gamma / np.sqrt(var + eps)
    return h * a[None, :, None, None] + (beta - mean * a)[None, :, None, None]


def digits_cnn(batch: int = 1, seed: int = 0):
    """A CNN for scikit-learn's digits; returns `(model, (x_test, y_test))`.

    Input `x`: batch x 1 x 8 x 8 (pixels scaled to [0, 1]); output `logits`: batch x 10.
    Graph: Conv(1->16, 3x3, pad 1) + BatchNormalization + Relu, Conv(16->32, 3x3,
    pad 1, stride 2) + BatchNormalization + Relu, AveragePool(2x2), Flatten, Gemm.

    Trained honestly but cheaply: the first convolution's filters are fixed
    Gabor-like edge detectors (and random ones), the second's are random; both
    BatchNormalizations hold the mean and variance measured on the training images;
    the Gemm is a scikit-learn `LogisticRegression` (with its feature standardisation
    folded into the weights) fitted on the extracted features. 1347 training images,
    450 held-out test images (stratified split, `random_state=seed`).

    Test accuracy (onnxruntime; qcc predicts the same classes): seed 0: 0.9733
    (438 / 450), seed 1: 0.9756, seed 2: 0.9800.

    `x_test` is float32 (450, 1, 8, 8); `y_test` int64 (450,).
    """
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    rng = np.random.default_rng(seed)
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]  # N, 1, 8, 8
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target.astype(np.int64), test_size=0.25, random_state=seed,
        stratify=digits.target)

    w1 = _gabor_filters(rng, 16)
    b1 = rng.uniform(-0.05, 0.05, 16)
    w2 = rng.standard_normal((32, 16, 3, 3)) * math.sqrt(2.0 / (16 * 9))
    w1f, b1f, w2f = _f32(w1), _f32(b1), _f32(w2)

    def block1(x):
        return _np_conv(x.astype(np.float64), w1f.astype(np.float64), 1, 1) + \
            b1f.astype(np.float64)[None, :, None, None]

    h1 = block1(x_train)
    bn1 = [_f32(v) for v in _measured_bn(rng, h1)]
    a1 = np.maximum(_apply_bn(h1, *[v.astype(np.float64) for v in bn1]), 0)
    h2 = _np_conv(a1, w2f.astype(np.float64), 2, 1)
    bn2 = [_f32(v) for v in _measured_bn(rng, h2)]

    def features(x):
        a = np.maximum(_apply_bn(block1(x), *[v.astype(np.float64) for v in bn1]), 0)
        a = np.maximum(_apply_bn(_np_conv(a, w2f.astype(np.float64), 2, 1),
                                 *[v.astype(np.float64) for v in bn2]), 0)
        n = a.shape[0]
        return a.reshape(n, 32, 2, 2, 2, 2).mean(axis=(3, 5)).reshape(n, -1)

    f_train = features(x_train)
    mu, sd = f_train.mean(axis=0), f_train.std(axis=0) + 1e-6
    clf = LogisticRegression(C=0.5, max_iter=5000)
    # threaded BLAS and OpenMP are many times slower than one thread on so small a problem
    with threadpool_limits(1):
        clf.fit((f_train - mu) / sd, y_train)
    w_fc = clf.coef_ / sd  # classes x features
    b_fc = clf.intercept_ - w_fc @ mu

    b = _Builder("digits_cnn")
    x = b.input("x", [batch, 1, 8, 8])
    y = b.node("Conv", [x, b.init("conv1.weight", w1f), b.init("conv1.bias", b1f)],
               "/conv1/Conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
    y = b.node("BatchNormalization",
               [y] + [b.init(f"bn1.{k}", v) for k, v in
                      zip(("weight", "bias", "running_mean", "running_var"), bn1, strict=True)],
               "/bn1/BatchNormalization", epsilon=1e-5)
    y = b.node("Relu", [y], "/relu1/Relu")
    y = b.node("Conv", [y, b.init("conv2.weight", w2f)], "/conv2/Conv", kernel_shape=[3, 3],
               pads=[1, 1, 1, 1], strides=[2, 2])
    y = b.node("BatchNormalization",
               [y] + [b.init(f"bn2.{k}", v) for k, v in
                      zip(("weight", "bias", "running_mean", "running_var"), bn2, strict=True)],
               "/bn2/BatchNormalization", epsilon=1e-5)
    y = b.node("Relu", [y], "/relu2/Relu")
    y = b.node("AveragePool", [y], "/pool/AveragePool", kernel_shape=[2, 2], strides=[2, 2])
    y = b.node("Flatten", [y], "/Flatten", axis=1)
    b.node("Gemm", [y, b.init("fc.weight", _f32(w_fc)), b.init("fc.bias", _f32(b_fc))],
           "/fc/Gemm", ["logits"], transB=1)
    b.output("logits", [batch, 10])
    model = b.model("CNN for sklearn digits: fixed convolutions, measured BN, trained Gemm")
    return model, (np.ascontiguousarray(x_test), y_test)


# -------------------------------------------------------------- transformer


def causal_mask(seq: int, mask_value: float = -1e9) -> np.ndarray:
    """Additive causal mask (seq x seq): 0 where position j <= i is visible, else `mask_value`."""
    m = np.zeros((seq, seq), np.float32)
    m[np.triu_indices(seq, 1)] = mask_value
    return m


def transformer_block(batch: int = 2, seq: int = 16, d_model: int = 64, heads: int = 4,
                      seed: int = 0, mask_value: float = -1e9,
                      mask_input: bool = False) -> onnx.ModelProto:
    """One post-LN transformer encoder block, as a PyTorch export writes it.

    Input `x`: batch x seq x d_model (and, with `mask_input=True`, `mask`: seq x seq,
    the additive mask, e.g. `causal_mask(seq, mask_value)`); output `y`: same shape as x.

        q, k, v = x @ Wq + bq, x @ Wk + bk, x @ Wv + bv         (MatMul + Add)
        heads:   Reshape to (batch, seq, heads, d_head) with the shape computed by
                 Shape/Gather/Unsqueeze/Concat, Transpose (q, v: 0213; k: 0231)
        scores = (q @ k^T) / sqrt(d_head) + mask                (MatMul, Div, Add)
        attn   = Softmax(scores, axis=-1) @ v                   (Softmax, MatMul)
        merge:   Transpose 0213, Reshape to (0, 0, d_model)
        h = LayerNormalization(x + attn @ Wo + bo)
        f = Gelu(h @ W1 + b1) @ W2 + b2, Gelu as x * 0.5 * (1 + Erf(x / sqrt(2)))
        y = LayerNormalization(h + f)

    The mask is causal: 0 where attending is allowed, `mask_value` (-1e9, or -inf as
    some exporters emit) where it is not. It is a constant unless `mask_input`.
    """
    assert d_model % heads == 0
    d_head = d_model // heads
    d_ff = 4 * d_model
    rng = np.random.default_rng(seed)
    b = _Builder("transformer_block")
    x = b.input("x", [batch, seq, d_model])
    mask = (b.input("mask", [seq, seq]) if mask_input
            else b.init("attn_mask", causal_mask(seq, mask_value)))

    def linear(v: str, name: str, fan_in: int, fan_out: int) -> str:
        w = b.init(f"{name}.weight", _f32(rng.standard_normal((fan_in, fan_out))
                                          / math.sqrt(fan_in)))
        bias = b.init(f"{name}.bias", _f32(rng.uniform(-0.1, 0.1, fan_out)))
        y = b.node("MatMul", [v, w], f"/{name}/MatMul")
        return b.node("Add", [bias, y], f"/{name}/Add")  # exporters put the bias first

    def i64(name: str, values) -> str:
        return b.init(name, np.asarray(values, np.int64))

    # the head-split shape, computed from x's shape as exporters do
    shape = b.node("Shape", [x], "/attn/Shape")
    dim0 = b.node("Gather", [shape, i64("const_0", 0)], "/attn/Gather", axis=0)
    dim1 = b.node("Gather", [shape, i64("const_1", 1)], "/attn/Gather_1", axis=0)
    axes0 = i64("axes_0", [0])
    parts = [b.node("Unsqueeze", [dim0, axes0], "/attn/Unsqueeze"),
             b.node("Unsqueeze", [dim1, axes0], "/attn/Unsqueeze_1"),
             i64("const_heads", [heads]), i64("const_d_head", [d_head])]
    split_shape = b.node("Concat", parts, "/attn/Concat", axis=0)

    def heads_of(v: str, name: str, perm: list[int]) -> str:
        r = b.node("Reshape", [v, split_shape], f"/attn/{name}/Reshape")
        return b.node("Transpose", [r], f"/attn/{name}/Transpose", perm=perm)

    q = heads_of(linear(x, "attn.q_proj", d_model, d_model), "q", [0, 2, 1, 3])
    k = heads_of(linear(x, "attn.k_proj", d_model, d_model), "k", [0, 2, 3, 1])
    v = heads_of(linear(x, "attn.v_proj", d_model, d_model), "v", [0, 2, 1, 3])
    s = b.node("MatMul", [q, k], "/attn/MatMul")
    s = b.node("Div", [s, b.init("sqrt_d_head", _f32(math.sqrt(d_head)))], "/attn/Div")
    s = b.node("Add", [s, mask], "/attn/Add")
    p = b.node("Softmax", [s], "/attn/Softmax", axis=-1)
    o = b.node("MatMul", [p, v], "/attn/MatMul_1")
    o = b.node("Transpose", [o], "/attn/Transpose", perm=[0, 2, 1, 3])
    o = b.node("Reshape", [o, i64("merge_shape", [0, 0, d_model])], "/attn/Reshape")
    o = linear(o, "attn.out_proj", d_model, d_model)
    h = b.node("Add", [x, o], "/Add")

    def layer_norm(v: str, name: str, out: str | None = None) -> str:
        g = b.init(f"{name}.weight", _f32(rng.uniform(0.8, 1.2, d_model)))
        beta = b.init(f"{name}.bias", _f32(rng.uniform(-0.1, 0.1, d_model)))
        return b.node("LayerNormalization", [v, g, beta], f"/{name}/LayerNormalization",
                      None if out is None else [out], axis=-1, epsilon=1e-5)

    h = layer_norm(h, "norm1")
    f = linear(h, "ffn.fc1", d_model, d_ff)
    # GELU as torch.onnx exports it for opset < 20
    e = b.node("Div", [f, b.init("sqrt_2", _f32(math.sqrt(2.0)))], "/ffn/act/Div")
    e = b.node("Erf", [e], "/ffn/act/Erf")
    e = b.node("Add", [e, b.init("one", _f32(1.0))], "/ffn/act/Add")
    e = b.node("Mul", [f, e], "/ffn/act/Mul")
    f = b.node("Mul", [e, b.init("half", _f32(0.5))], "/ffn/act/Mul_1")
    f = linear(f, "ffn.fc2", d_ff, d_model)
    y = b.node("Add", [h, f], "/Add_1")
    layer_norm(y, "norm2", out="y")
    b.output("y", [batch, seq, d_model])
    return b.model(f"transformer encoder block, causal additive mask {mask_value}")
