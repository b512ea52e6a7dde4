"""Micro-benchmark: qcc's compiled int8 conv against onnxruntime's QLinearConv.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python tools/bench/kernels_int8_micro.py \
        [--threads N] [--quick] [--isa avx512vnni|avx2|baseline]

The ResNet-50 (batch 1) convolution mix of kernels_micro.py, each layer in int8:
qcc's `_int8.conv_requantize` (int8 in, int32 accumulation, per-channel float32
multiplier, int8 out) against a one-node QLinearConv model (uint8 activations, the
layout onnxruntime's x86 kernels prefer; int8 per-channel weights) on the same
threads. The column `diff` is the largest difference of the outputs: 0 or 1 on an
AVX-512 VNNI CPU (onnxruntime rounding its float multiply its own way); on a CPU
without VNNI, onnxruntime's u8s8 kernel adds pairs of products with `vpmaddubsw`,
which saturates at int16, so with weights of full int8 range its outputs are off by
up to 255 there (qcc's AVX2 path is exact; with weights in [-64, 63] the two agree),
and its speed there is that of an inexact kernel. The minimum
over rounds is kept; on a machine shared with other processes the 2-thread numbers
mostly measure the scheduler, the 1-thread ones the kernels.
"""

from __future__ import annotations

import argparse

import numpy as np
import onnxruntime as ort
from kernels_micro import RESNET50_CONVS, _best
from onnx import TensorProto, helper, numpy_helper

from qcc.runtime import int8

_C = int8._C


def _session(w, b, sw, sx, sy, x_shape, k, s, p, threads):
    inits = [numpy_helper.from_array(np.array(sx, np.float32), "sx"),
             numpy_helper.from_array(np.array(128, np.uint8), "zx"),
             numpy_helper.from_array(w, "w"), numpy_helper.from_array(sw, "sw"),
             numpy_helper.from_array(np.zeros(w.shape[0], np.int8), "zw"),
             numpy_helper.from_array(np.array(sy, np.float32), "sy"),
             numpy_helper.from_array(np.array(128, np.uint8), "zy"),
             numpy_helper.from_array(b, "b")]
    node = helper.make_node("QLinearConv", ["x", "sx", "zx", "w", "sw", "zw", "sy", "zy", "b"],
                            ["y"], strides=(s, s), pads=(p,) * 4, kernel_shape=(k, k))
    graph = helper.make_graph(
        [node], "q", [helper.make_tensor_value_info("x", TensorProto.UINT8, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def case(x_shape, o, k, s, p, threads):
    """(qcc callable, onnxruntime callable, largest difference of their outputs)."""
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, x_shape).astype(np.int8)
    w = rng.integers(-127, 128, (o, x_shape[1], k, k)).astype(np.int8)
    b = rng.integers(-1000, 1000, o).astype(np.int32)
    sx, sy = 0.05, 0.2
    sw = (rng.random(o) * 0.01 + 0.001).astype(np.float32)
    sess = _session(w, b, sw, sx, sy, x_shape, k, s, p, threads)
    xu = (x.astype(np.int16) + 128).astype(np.uint8)
    wp, off = int8.pack(w, b, 0)
    mult = (np.float32(sx) * sw / np.float32(sy)).astype(np.float32)

    def ours():
        return _C.conv_requantize(x, wp, off, (k, k), 0, (s, s), (p,) * 4, (1, 1), 1, mult, 0)

    def theirs():
        return sess.run(None, {"x": xu})

    diff = np.abs(ours().astype(int) - (theirs()[0].astype(int) - 128)).max()
    return ours, theirs, diff


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="threads of both (default 2)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (noisier)")
    parser.add_argument("--isa", choices=list(_C.ISAS) if _C is not None else [],
                        help="force qcc's int8 GEMM variant (default: the best this CPU runs)")
    args = parser.parse_args(argv)
    if _C is None:
        raise SystemExit("qcc.runtime._int8 is not built")
    _C.set_threads(args.threads)
    if args.isa:
        _C.set_isa(args.isa)
    rounds, reps = (3, 3) if args.quick else (10, 5)
    print(f"qcc int8 GEMM: {_C.isa()}; threads: {args.threads} (qcc and onnxruntime)")
    print(f"{'layer':40s} {'qcc ms':>9s} {'ort ms':>9s} {'ratio':>6s} {'diff':>4s}")
    total_q = total_o = 0.0
    for (x_shape, o, k, s, p), count in RESNET50_CONVS:
        ours, theirs, diff = case(x_shape, o, k, s, p, args.threads)
        a, b = _best([ours, theirs], rounds, reps)
        total_q += count * a
        total_o += count * b
        name = f"{'x'.join(map(str, x_shape[1:]))} {k}x{k} s{s} -> {o} (x{count})"
        print(f"  {name:38s} {a * 1e3:9.3f} {b * 1e3:9.3f} {a / b:6.2f} {diff:4d}")
    print(f"{'ResNet-50 int8 conv total':40s} {total_q * 1e3:9.3f} {total_o * 1e3:9.3f} "
          f"{total_q / total_o:6.2f}")


if __name__ == "__main__":
    main()
