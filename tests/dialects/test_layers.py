"""The layer interface (`qcc.dialects.layers`) against numpy computations of each layer.

The oracle is a direct numpy implementation of the layers written here (grouped
convolution by windows, transposed convolution by scattering each tap, dense as
x @ W^T): scaling a layer's weight through the interface must scale the numpy layer's
outputs or undo a scaling of its inputs, and the channel axes and per-channel maxima
must match which weights touch which channels, found by switching weights on one at
a time.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from xdsl.dialects.builtin import ModuleOp

from qcc import ir
from qcc.dialects import qnn
from qcc.dialects.layers import NO_WEIGHT, WEIGHTED, Layer, layer_of
from qcc.runtime import run

# ------------------------------------------------------------- numpy layers


def conv_ref(x: np.ndarray, w: np.ndarray, groups: int) -> np.ndarray:
    """y[n, o, p] = sum_{j, k} w[o, j, k] x[n, g(o) * C/g + j, p + k] (stride 1, no pad)."""
    kernel = w.shape[2:]
    spatial = tuple(range(2, x.ndim))
    windows = np.lib.stride_tricks.sliding_window_view(x, kernel, axis=spatial)
    per_out, per_in = w.shape[0] // groups, w.shape[1]
    outs = []
    for g in range(groups):
        xg = windows[:, g * per_in:(g + 1) * per_in]  # [N, C/g, *P, *K]
        wg = w[g * per_out:(g + 1) * per_out]  # [O/g, C/g, *K]
        taps = [1] + list(range(2 + len(kernel), 2 + 2 * len(kernel)))
        y = np.tensordot(xg, wg, axes=(taps, [1, *range(2, w.ndim)]))  # [N, *P, O/g]
        outs.append(np.moveaxis(y, -1, 1))
    return np.concatenate(outs, axis=1)


def conv_transpose_ref(x: np.ndarray, w: np.ndarray, groups: int) -> np.ndarray:
    """y[n, g * O/g + o, p + k] += x[n, c, p] w[c, o, k] for c in group g (stride 1)."""
    channels, per_out, kernel = w.shape[0], w.shape[1], w.shape[2:]
    per_in = channels // groups
    size = [s + k - 1 for s, k in zip(x.shape[2:], kernel, strict=True)]
    y = np.zeros((x.shape[0], groups * per_out, *size))
    for k in itertools.product(*(range(n) for n in kernel)):
        where = tuple(slice(k_i, k_i + s) for k_i, s in zip(k, x.shape[2:], strict=True))
        for g in range(groups):
            xg = x[:, g * per_in:(g + 1) * per_in]
            wg = w[g * per_in:(g + 1) * per_in, :, *k]  # [C/g, O/g]
            y[(slice(None), slice(g * per_out, (g + 1) * per_out), *where)] += np.einsum(
                "nc...,co->no...", xg, wg)
    return y


def dense_ref(x: np.ndarray, w: np.ndarray, groups: int) -> np.ndarray:
    return x @ w.T


# ------------------------------------------------------------------ cases

# name: (op, x shape, weight shape, groups, numpy layer)
CASES = {
    "conv_groups": (qnn.ConvOp, (2, 4, 5, 5), (6, 2, 3, 3), 2, conv_ref),
    "depthwise": (qnn.ConvOp, (2, 3, 6, 6), (3, 1, 3, 3), 3, conv_ref),
    "conv1d": (qnn.ConvOp, (2, 3, 7), (4, 3, 3), 1, conv_ref),
    "conv3d_groups": (qnn.ConvOp, (1, 4, 4, 4, 4), (2, 2, 2, 2, 2), 2, conv_ref),
    "conv_transpose_groups": (qnn.ConvTransposeOp, (2, 4, 4, 4), (4, 3, 2, 3), 2,
                              conv_transpose_ref),
    "conv_transpose": (qnn.ConvTransposeOp, (2, 3, 4, 4), (3, 2, 3, 3), 1, conv_transpose_ref),
    "dense": (qnn.DenseOp, (3, 5), (4, 5), 1, dense_ref),
}


def _case(name: str, seed: int = 0):
    op_type, x_shape, w_shape, groups, ref = CASES[name]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    g = ir.Graph()
    xv = g.input("x", x_shape)
    wv = g.const(w.astype(np.float32), "w")
    props = {} if op_type is qnn.DenseOp else {"groups": groups}
    op = g.op(op_type.make(xv, wv, name="layer", **props))
    g.finish({"y": op.results[0]})
    layer = layer_of(op)
    assert layer is not None
    return layer, x, w, (lambda x_, w_: ref(x_, w_, groups)), rng


def _along(values: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    return values.reshape([-1 if d == axis % ndim else 1 for d in range(ndim)])


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize("name", CASES)
def test_channel_axes_and_counts(name):
    layer, x, w, ref, _ = _case(name)
    y = ref(x, w)
    op_type, _, w_shape, groups, _ = CASES[name]
    # The channel axes are the ones whose sizes are the numpy layer's channel counts.
    assert x.shape[layer.in_axis] == layer.in_channels
    assert y.shape[layer.out_axis] == layer.out_channels
    assert layer.groups == groups
    # The weight axes: output channels (per group for conv_transpose) and input channels.
    out_per_axis = layer.out_channels // layer.out_axis_repeats
    assert w_shape[layer.weight_out_axis] == out_per_axis
    in_per_axis = layer.in_channels // (groups if op_type is qnn.ConvOp else 1)
    assert w_shape[layer.weight_in_axis] == in_per_axis
    # products_per_output bounds the number of products in an output element: with all
    # inputs and weights 1, the numpy layer counts them.
    count = ref(np.ones_like(x), np.ones_like(w)).max()
    assert layer.products_per_output >= count
    if op_type is not qnn.ConvTransposeOp:
        assert layer.products_per_output == count


@pytest.mark.parametrize("name", CASES)
def test_scale_outputs_scales_the_layer_output(name):
    layer, x, w, ref, rng = _case(name)
    a = rng.uniform(0.5, 2.0, layer.out_channels)
    got = ref(x, layer.scale_outputs(w, a))
    want = ref(x, w) * _along(a, layer.out_axis, x.ndim)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_scale_inputs_undoes_an_input_scaling(name):
    layer, x, w, ref, rng = _case(name)
    s = rng.uniform(0.5, 2.0, layer.in_channels)
    got = ref(x / _along(s, layer.in_axis, x.ndim), layer.scale_inputs(w, s))
    np.testing.assert_allclose(got, ref(x, w), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_constant_input_response_is_the_output_of_a_constant_input(name):
    layer, x, w, ref, rng = _case(name)
    c = rng.standard_normal(layer.in_channels)
    const = np.broadcast_to(_along(c, layer.in_axis, x.ndim), x.shape)
    y = ref(const, w)
    if isinstance(layer.op, qnn.ConvTransposeOp):  # positions every tap reaches
        kernel = w.shape[2:]
        y = y[(slice(None), slice(None),
               *(slice(k - 1, s) for k, s in zip(kernel, x.shape[2:], strict=True)))]
    want = np.moveaxis(y, layer.out_axis, -1).reshape(-1, layer.out_channels)
    got = layer.constant_input_response(w, c)
    np.testing.assert_allclose(want, np.broadcast_to(got, want.shape), rtol=1e-12, atol=1e-12)


def _touches(layer: Layer, x: np.ndarray, w: np.ndarray, ref) -> tuple[np.ndarray, np.ndarray]:
    """[weights, in channels] and [weights, out channels]: whether a weight element
    reads input channel c / writes output channel o, found by switching it on alone."""
    reads = np.zeros((w.size, layer.in_channels), bool)
    writes = np.zeros((w.size, layer.out_channels), bool)
    ones = np.ones_like(x)
    for e in range(w.size):
        one_hot = np.zeros(w.size)
        one_hot[e] = 1
        w_e = one_hot.reshape(w.shape)
        y = np.abs(ref(ones, w_e))
        writes[e] = np.moveaxis(y, layer.out_axis, 0).reshape(layer.out_channels, -1).max(1) > 0
        for c in range(layer.in_channels):
            x_c = np.zeros_like(x)
            x_c[(slice(None),) * (layer.in_axis % x.ndim) + (c,)] = 1
            reads[e, c] = np.abs(ref(x_c, w_e)).max() > 0
    return reads, writes


@pytest.mark.parametrize("name", CASES)
def test_channel_maxima(name):
    layer, x, w, ref, _ = _case(name)
    reads, writes = _touches(layer, x, w, ref)
    flat = np.abs(w).reshape(-1, 1)
    np.testing.assert_array_equal(layer.in_channel_max(w), np.where(reads, flat, 0).max(0))
    np.testing.assert_array_equal(layer.out_channel_max(w), np.where(writes, flat, 0).max(0))


def test_operand_roles():
    layer, *_ = _case("conv_groups")
    op = layer.op
    assert layer.activations == (op.operands[0],) and layer.weight is op.operands[1]
    assert layer.bias is None and layer.has_weight
    g = ir.Graph()
    a, b = g.input("a", (2, 3, 4)), g.input("b", (2, 4, 5))
    mm = layer_of(g.op(qnn.MatmulOp.make(a, b)))
    assert mm is not None and mm.activations == (a, b) and mm.weight is None
    assert mm.activation_indices == (0, 1) and not mm.has_weight
    assert (mm.in_axis, mm.out_axis, mm.in_channels, mm.out_channels) == (2, 2, 4, 5)
    pool = layer_of(g.op(qnn.AvgPoolOp.make(g.input("p", (1, 3, 4, 4)), kernel=(2, 2))))
    assert pool is not None and pool.weight is None and pool.in_channels == 3
    assert layer_of(qnn.ReluOp.make(a)) is None
    assert set(WEIGHTED) | set(NO_WEIGHT) == {o.name for o in qnn.LAYER_OPS}
    assert set(WEIGHTED) == {"qnn.conv", "qnn.conv_transpose", "qnn.dense"}


def test_per_channel_axis_is_none_only_for_a_grouped_conv_transpose():
    axes = {name: _case(name)[0].per_channel_axis for name in CASES}
    assert axes["conv_transpose_groups"] is None
    assert axes["conv_transpose"] == 1
    assert all(axes[n] == 0 for n in ("conv_groups", "depthwise", "dense", "conv1d"))


def test_rebuild_replaces_the_layer_and_erases_the_dead_weight():
    layer, x, w, ref, rng = _case("conv_groups")
    module = layer.op.get_toplevel_object()
    assert isinstance(module, ModuleOp)
    new_w = rng.standard_normal(w.shape)
    bias = rng.standard_normal(layer.out_channels)
    new = layer.rebuild(weight=ir.constant(new_w.astype(np.float32), "w2"),
                        bias=ir.constant(bias.astype(np.float32), "b2"))
    names = [o.attributes["name"].data for o in module.walk() if isinstance(o, qnn.ConstantOp)]
    assert names == ["w2", "b2"]  # the old weight "w" had no other user
    assert new.attributes["name"].data == "layer" and layer.op.parent is None
    y = run(module, {"x": x.astype(np.float32)})["y"]
    want = ref(x.astype(np.float32).astype(np.float64), new_w.astype(np.float32))
    want += _along(bias.astype(np.float32), 1, x.ndim)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
