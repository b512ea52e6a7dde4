"""Micro-benchmark: qcc's compiled fp32 kernels against onnxruntime single-op models.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python tools/bench/kernels_micro.py [--quick]
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python tools/bench/kernels_micro.py \
        --layers mobilenet_v3,resnet18_cifar,light_resnet50 --threads 1,2

`--layers` times every distinct convolution of the named bench models (shapes read
from the models themselves, batch as in runtime_fp32.py) against onnxruntime's Conv,
each at every thread count of `--threads`: per layer the median of qcc / onnxruntime
calls taking turns in blocks (after a pause that lets onnxruntime's spinning workers
go idle), their ratio, and the model's conv total weighted by how often each
shape occurs. With one thread both sides run on the calling thread and are timed by
its CPU time (time.thread_time), which other processes on a busy machine disturb much
less than wall time.

Prints, per case, the best time of qcc and of onnxruntime (2 intra-op threads)
and their ratio, then the ResNet-50 (batch 1) convolution mix: every conv layer
shape weighted by how often it occurs. qcc's convolutions run on its own GEMM
(runtime/_gemm_impl.h) with `--threads` threads (default 2, like onnxruntime) and
the best instruction set unless `--variant` forces one; dense still uses BLAS. The
minimum over rounds is kept, which resists other processes on the machine (but
two threads on two cores slow down a lot when another process takes one: measure
on an idle machine). Single-op onnxruntime models pay a layout reorder per op
that a whole model amortizes, so its whole-model advantage is somewhat larger than
these ratios suggest.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from qcc.runtime import _conv, _kernels, _pool

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

THREADS = 2


def _session(op, x, weights, **attrs):
    """onnxruntime session of one node: input x, weights as initializers."""
    names = ["x"] + [f"w{i}" for i in range(len(weights))]
    node = helper.make_node(op, names, ["y"], **attrs)
    graph = helper.make_graph(
        [node], op, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(w, n) for n, w in zip(names[1:], weights, strict=True)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _best(fns, rounds, reps):
    """Best seconds/call of each callable: `rounds` rounds of `reps` calls, one callable
    after the other (not interleaved: the idle threads of onnxruntime's pool and of
    OpenBLAS spin for a while after their work and would slow the other one down)."""
    best = []
    for f in fns:
        time.sleep(0.05)
        f()
        t = float("inf")
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(reps):
                f()
            t = min(t, (time.perf_counter() - t0) / reps)
        best.append(t)
    return best


def conv_case(x_shape, o, k, stride, pad, groups=1):
    """(qcc callable, onnxruntime callable) of a square-kernel 2-D convolution."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = rng.standard_normal((o, x_shape[1] // groups, k, k), dtype=np.float32)
    b = rng.standard_normal(o, dtype=np.float32)
    strides, pads = (stride, stride), (pad,) * 4
    sess = _session("Conv", x, [w, b], strides=strides, pads=pads, group=groups)
    pack = _conv.WeightPack()   # constant weights stay packed, as in a plan
    out = _conv.conv(x, w, b, strides, pads, (1, 1), groups, pack=pack)
    return (lambda: _conv.conv(x, w, b, strides, pads, (1, 1), groups, out=out, pack=pack),
            lambda: sess.run(None, {"x": x}))


def other_cases():
    """Non-conv ResNet-50 ops: (name, qcc callable, onnxruntime callable)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 64, 112, 112), dtype=np.float32)
    mp = _session("MaxPool", x, [], kernel_shape=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1))
    mp_out = _pool.max_pool(x, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), False)
    g = rng.standard_normal((1, 2048, 7, 7), dtype=np.float32)
    gap = _session("GlobalAveragePool", g, [])
    gap_out = _pool.global_avg_pool(g)
    f = rng.standard_normal((1, 2048), dtype=np.float32)
    w = rng.standard_normal((1000, 2048), dtype=np.float32)
    b = rng.standard_normal(1000, dtype=np.float32)
    fc = _session("Gemm", f, [w, b], transB=1)
    fc_out = _kernels.dense(f, w, b)
    return [
        ("maxpool 1x64x112x112 3x3 s2", lambda: _pool.max_pool(
            x, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), False, out=mp_out),
         lambda: mp.run(None, {"x": x})),
        ("global_avg_pool 1x2048x7x7", lambda: _pool.global_avg_pool(g, out=gap_out),
         lambda: gap.run(None, {"x": g})),
        ("dense 2048->1000", lambda: _kernels.dense(f, w, b, out=fc_out),
         lambda: fc.run(None, {"x": f})),
    ]


BRIEF_CASES = [
    ("conv 1x64x56x56 3x3 p1 -> 64", ((1, 64, 56, 56), 64, 3, 1, 1)),
    ("conv 1x256x56x56 1x1 -> 64", ((1, 256, 56, 56), 64, 1, 1, 0)),
    ("conv 1x3x224x224 7x7 s2 p3 -> 64", ((1, 3, 224, 224), 64, 7, 2, 3)),
    ("depthwise 1x32x112x112 3x3 p1", ((1, 32, 112, 112), 32, 3, 1, 1, 32)),
    ("depthwise 1x144x56x56 3x3 s2 p1", ((1, 144, 56, 56), 144, 3, 2, 1, 144)),
]

# ResNet-50 v1.5 (stride in the 3x3), batch 1: (x shape, O, k, stride, pad), count.
RESNET50_CONVS = [
    (((1, 3, 224, 224), 64, 7, 2, 3), 1),
    (((1, 64, 56, 56), 64, 1, 1, 0), 1), (((1, 64, 56, 56), 64, 3, 1, 1), 3),
    (((1, 64, 56, 56), 256, 1, 1, 0), 4), (((1, 256, 56, 56), 64, 1, 1, 0), 2),
    (((1, 256, 56, 56), 128, 1, 1, 0), 1), (((1, 128, 56, 56), 128, 3, 2, 1), 1),
    (((1, 128, 28, 28), 512, 1, 1, 0), 4), (((1, 256, 56, 56), 512, 1, 2, 0), 1),
    (((1, 512, 28, 28), 128, 1, 1, 0), 3), (((1, 128, 28, 28), 128, 3, 1, 1), 3),
    (((1, 512, 28, 28), 256, 1, 1, 0), 1), (((1, 256, 28, 28), 256, 3, 2, 1), 1),
    (((1, 256, 14, 14), 1024, 1, 1, 0), 6), (((1, 512, 28, 28), 1024, 1, 2, 0), 1),
    (((1, 1024, 14, 14), 256, 1, 1, 0), 5), (((1, 256, 14, 14), 256, 3, 1, 1), 5),
    (((1, 1024, 14, 14), 512, 1, 1, 0), 1), (((1, 512, 14, 14), 512, 3, 2, 1), 1),
    (((1, 512, 7, 7), 2048, 1, 1, 0), 3), (((1, 1024, 14, 14), 2048, 1, 2, 0), 1),
    (((1, 2048, 7, 7), 512, 1, 1, 0), 2), (((1, 512, 7, 7), 512, 3, 1, 1), 2),
]


def conv_layer_case(x_shape, w_shape, strides, pads, dilations, groups):
    """(qcc callable, onnxruntime callable) of one ONNX Conv (random data, with bias)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = rng.standard_normal(w_shape, dtype=np.float32)
    b = rng.standard_normal(w_shape[0], dtype=np.float32)
    sess = _session("Conv", x, [w, b], strides=strides, pads=pads, dilations=dilations,
                    group=groups)
    pack = _conv.WeightPack()   # constant weights stay packed, as in a plan
    out = _conv.conv(x, w, b, strides, pads, dilations, groups, pack=pack)
    return (lambda: _conv.conv(x, w, b, strides, pads, dilations, groups, out=out,
                               pack=pack),
            lambda: sess.run(None, {"x": x}))


def model_convs(name):
    """Distinct Conv layers of bench model `name` (runtime_fp32.py's names), as
    ((x shape, w shape, strides, pads, dilations, group), count), in model order."""
    import tempfile
    from pathlib import Path

    import onnx
    from onnx import shape_inference
    from runtime_fp32 import model_cases

    with tempfile.TemporaryDirectory() as tmp:
        ((_, make),) = model_cases([name], Path(tmp), False)
        model, feeds = make()
        if not isinstance(model, onnx.ModelProto):
            model = onnx.load(str(model))
    # Static input shapes of this batch, then shapes of every value.
    for inp in model.graph.input:
        if inp.name in feeds:
            dims = inp.type.tensor_type.shape.dim
            for d, v in zip(dims, feeds[inp.name].shape, strict=True):
                d.ClearField("dim_param")
                d.dim_value = v
    model = shape_inference.infer_shapes(model)
    shapes = {}
    for vi in list(model.graph.value_info) + list(model.graph.input):
        shapes[vi.name] = tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
    for init in model.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    counts: dict[tuple, int] = {}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        x_shape, w_shape = shapes[node.input[0]], shapes[node.input[1]]
        d = len(w_shape) - 2
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        key = (x_shape, w_shape, tuple(attrs.get("strides", (1,) * d)),
               tuple(attrs.get("pads", (0,) * (2 * d))),
               tuple(attrs.get("dilations", (1,) * d)), int(attrs.get("group", 1)))
        counts[key] = counts.get(key, 0) + 1
    return list(counts.items())


def _median_ratio(ours, theirs, reps, clock):
    """Median seconds of `reps` calls of each, taking turns in blocks after a pause
    (`_common.interleaved`: onnxruntime's workers spin for about 30 ms after a run)."""
    ms = c.interleaved({"qcc": ours, "ort": theirs}, 1, reps, clock=clock)
    return ms["qcc"] / 1e3, ms["ort"] / 1e3


def _layer_name(key):
    x_shape, w_shape, strides, pads, _, group = key
    kind = "dw" if group > 1 and group == x_shape[1] else f"g{group}" if group > 1 else "conv"
    k = "x".join(map(str, w_shape[2:]))
    return (f"{kind} {'x'.join(map(str, x_shape))} {k} s{strides[0]} p{pads[0]} "
            f"-> {w_shape[0]}")


def layer_tables(models, thread_counts, reps):
    """Per-layer qcc / onnxruntime times of the models' convolutions."""
    global THREADS
    for name in models:
        layers = model_convs(name)
        for threads in thread_counts:
            THREADS = threads
            _conv._set_threads(threads)
            clock = time.thread_time if threads == 1 else time.perf_counter
            total_q = total_o = 0.0
            print(f"\n{name}: {len(layers)} distinct convs, {threads} thread(s), "
                  f"{'thread CPU' if threads == 1 else 'wall'} time, median of {reps}")
            print(f"  {'layer (count)':52s} {'qcc ms':>8s} {'ort ms':>8s} {'ratio':>6s}")
            for key, count in layers:
                a, b = _median_ratio(*conv_layer_case(*key), reps, clock)
                total_q += count * a
                total_o += count * b
                label = f"{_layer_name(key)} (x{count})"
                print(f"  {label:52s} {a * 1e3:8.3f} {b * 1e3:8.3f} {a / b:6.2f}")
            print(f"  {name + ' conv total':52s} {total_q * 1e3:8.3f} {total_o * 1e3:8.3f} "
                  f"{total_q / total_o:6.2f}")


def main(argv=None):
    global THREADS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (noisier)")
    parser.add_argument("--no-resnet", action="store_true", help="skip the ResNet-50 mix")
    parser.add_argument("--threads", default=str(THREADS),
                        help="threads of both sides; --layers takes a list (1,2)")
    parser.add_argument("--layers", default="",
                        help="time the convs of these bench models (mobilenet_v3, "
                             "resnet18_cifar, light_resnet50) instead of the fixed cases")
    parser.add_argument("--variant", choices=["plain", "avx2", "avx512"],
                        help="force qcc's conv GEMM variant (default: the best this CPU runs)")
    args = parser.parse_args(argv)
    thread_counts = [int(t) for t in args.threads.split(",")]
    _conv._set_threads(thread_counts[0])
    if args.variant:
        _conv._set_variant(args.variant)
    from _common import blas_report, cpu_report

    for line in cpu_report() + blas_report():
        print(line)
    rounds, reps = (3, 5) if args.quick else (15, 10)
    if args.layers:
        print(f"qcc conv GEMM: {_conv._variant()}")
        layer_tables(args.layers.split(","), thread_counts, 7 if args.quick else 21)
        return
    THREADS = thread_counts[0]
    print(f"qcc conv GEMM: {_conv._variant()}, {THREADS} threads; onnxruntime: {THREADS} threads")
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            print(f"note: {var}={os.environ[var]} is set; timings may not be representative")
    print(f"{'case':40s} {'qcc ms':>9s} {'ort ms':>9s} {'ratio':>6s}")
    cases = [(name, *conv_case(*args_)) for name, args_ in BRIEF_CASES] + other_cases()
    for name, ours, theirs in cases:
        a, b = _best([ours, theirs], rounds, reps)
        print(f"{name:40s} {a * 1e3:9.3f} {b * 1e3:9.3f} {a / b:6.2f}")
    if args.no_resnet:
        return
    total_q = total_o = 0.0
    print("\nResNet-50 conv layers (batch 1):")
    for (x_shape, o, k, s, p), count in RESNET50_CONVS:
        a, b = _best(list(conv_case(x_shape, o, k, s, p)), rounds, reps)
        total_q += count * a
        total_o += count * b
        name = f"{'x'.join(map(str, x_shape[1:]))} {k}x{k} s{s} -> {o} (x{count})"
        print(f"  {name:38s} {a * 1e3:9.3f} {b * 1e3:9.3f} {a / b:6.2f}")
    print(f"{'ResNet-50 conv total':40s} {total_q * 1e3:9.3f} {total_o * 1e3:9.3f} "
          f"{total_q / total_o:6.2f}")


if __name__ == "__main__":
    main()
