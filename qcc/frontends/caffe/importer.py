"""Caffe frontend: a `.prototxt` (+ `.caffemodel`) into a qnn module, no Caffe needed.

    module = load_caffe("net.prototxt", "net.caffemodel")

How a net is read:

1. The prototxt is parsed with protobuf's text format (errors give line:column),
   the caffemodel with `ParseFromString`; V1 `layers` are converted to `layer`.
2. Layers whose include/exclude rules do not select the TEST phase are dropped
   (Caffe's deploy view). Every layer type without a lowering in `layers.LOWERINGS`
   is reported in one error, with the layer names.
3. Inputs come from `input` + `input_shape` / `input_dim`, or from Input layers;
   `input_shapes` overrides their shapes.
4. Layers are lowered in order. A layer's blobs are the caffemodel layer's of the same
   name (or the prototxt's own). A top that is also a bottom (in place) rebinds the
   blob name to the new value.
5. The outputs are the blobs produced and never consumed afterwards, as in Caffe.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.ir import SSAValue
from xdsl.utils.exceptions import VerifyException

from qcc import ir
from qcc.frontends.caffe import caffe_pb2 as pb
from qcc.frontends.caffe import layers_data  # noqa: F401  (registers its lowerings)
from qcc.frontends.caffe.layers import LOWERINGS
from qcc.frontends.caffe.node import Layer
from qcc.frontends.caffe.reader import layers_of, read_net, read_weights
from qcc.frontends.errors import FrontendError

__all__ = ["load_caffe", "FrontendError"]

DROPPED = ("Silence",)
"""Layer types that compute nothing at inference and produce no value."""


def load_caffe(prototxt: str | os.PathLike, weights: str | os.PathLike | None = None,
               input_shapes: Mapping[str, Sequence[int]] | None = None) -> ModuleOp:
    """Import a Caffe net (text prototxt, optional binary caffemodel) as a qnn module."""
    net = read_net(prototxt)
    trained = read_weights(weights) if weights is not None else None
    return _Importer(net, os.fspath(prototxt), trained,
                     os.fspath(weights) if weights is not None else None,
                     input_shapes or {}).run()


def _meets(rule: pb.NetStateRule, state: pb.NetState) -> bool:
    """Caffe's NetStateRule check (net.cpp StateMeetsRule)."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    if any(s not in state.stage for s in rule.stage):
        return False
    return not any(s in state.stage for s in rule.not_stage)


def _selected(layer: pb.LayerParameter, state: pb.NetState) -> bool:
    if layer.include:
        return any(_meets(r, state) for r in layer.include)
    return not any(_meets(r, state) for r in layer.exclude)


# ------------------------------------------------------------------ importer


class _Importer:
    def __init__(self, net: pb.NetParameter, source: str, trained: pb.NetParameter | None,
                 weights_source: str | None, input_shapes: Mapping[str, Sequence[int]]):
        self.net = net
        self.source = source
        self.weights_source = weights_source
        self.input_shapes = {k: tuple(int(d) for d in v) for k, v in input_shapes.items()}
        self.graph = ir.Graph()
        self.values: dict[str, SSAValue] = {}
        self.trained: dict[str, list[pb.BlobProto]] = {}
        if trained is not None:
            for layer in layers_of(trained):
                if layer.blobs:
                    self.trained[layer.name] = list(layer.blobs)

    def blobs_of(self, layer: pb.LayerParameter) -> list[pb.BlobProto]:
        if layer.name in self.trained:
            return self.trained[layer.name]
        return list(layer.blobs)

    def run(self) -> ModuleOp:
        state = self.net.state if self.net.HasField("state") else pb.NetState()
        layers = [la for la in layers_of(self.net) if _selected(la, state)]
        self._scan(layers)
        self._inputs(layers)
        live: dict[str, None] = {}  # blobs produced and not consumed yet, in order
        for layer in layers:
            if layer.type == "Input":
                continue
            for b in layer.bottom:
                live.pop(b, None)
            self._lower(layer)
            for t in layer.top:
                if t in self.values:
                    live.pop(t, None)
                    live[t] = None
        if not live:
            raise FrontendError(f"{self.source}: the net computes nothing (no layer top "
                                "is left unconsumed)")
        module = self.graph.finish({name: self.values[name] for name in live})
        module.attributes["qcc.framework"] = StringAttr("caffe")
        return module

    # -- scan

    def _scan(self, layers: list[pb.LayerParameter]) -> None:
        unsupported: dict[str, list[str]] = {}
        for layer in layers:
            if layer.type in LOWERINGS or layer.type in DROPPED or layer.type == "Input":
                continue
            unsupported.setdefault(layer.type or "(no type)", []).append(layer.name)
        if not unsupported:
            return
        lines = [f"  {t}: {', '.join(names)}" for t, names in sorted(unsupported.items())]
        raise FrontendError(
            f"{self.source}: {len(unsupported)} unsupported Caffe layer type"
            f"{'s' if len(unsupported) > 1 else ''} (type: layers):\n" + "\n".join(lines))

    # -- inputs

    def _inputs(self, layers: list[pb.LayerParameter]) -> None:
        declared: list[tuple[str, tuple[int, ...] | None]] = []
        net = self.net
        for i, name in enumerate(net.input):
            shape: tuple[int, ...] | None = None
            if i < len(net.input_shape):
                shape = tuple(int(d) for d in net.input_shape[i].dim)
            elif len(net.input_dim) >= 4 * (i + 1):
                shape = tuple(int(d) for d in net.input_dim[4 * i:4 * i + 4])
            declared.append((name, shape))
        for layer in layers:
            if layer.type != "Input":
                continue
            shapes = list(layer.input_param.shape)
            for j, top in enumerate(layer.top):
                dims = shapes[j] if j < len(shapes) else (shapes[0] if len(shapes) == 1 else None)
                declared.append((top, tuple(int(d) for d in dims.dim) if dims else None))
        names = [n for n, _ in declared]
        unknown = sorted(set(self.input_shapes) - set(names))
        if unknown:
            raise FrontendError(f"{self.source}: input_shapes names {', '.join(unknown)}, but "
                                f"the net's inputs are {', '.join(names) or '(none)'}")
        for name, shape in declared:
            shape = self.input_shapes.get(name, shape)
            if shape is None or any(d <= 0 for d in shape):
                raise FrontendError(
                    f"{self.source}: input '{name}' has no static shape; give one with "
                    f"input_shape / input_dim in the prototxt or --input-shape "
                    f"{name}=1x3x224x224")
            self.values[name] = self.graph.input(name, shape)

    # -- layers

    def _lower(self, layer: pb.LayerParameter) -> None:
        label = f"{self.source}: layer '{layer.name}' ({layer.type})"
        if layer.type in DROPPED:
            return
        bottoms = []
        for b in layer.bottom:
            if b not in self.values:
                raise FrontendError(f"{label}: bottom '{b}' is not produced by any layer "
                                    "before it nor declared as an input")
            bottoms.append(self.values[b])
        try:
            results = LOWERINGS[layer.type](Layer(self, layer, bottoms))
        except (FrontendError, VerifyException, ValueError, TypeError) as e:
            raise FrontendError(f"{label}: {e}") from None
        if len(results) < len(layer.top):
            raise FrontendError(f"{label}: has {len(layer.top)} tops, the layer makes "
                                f"{len(results)}")
        for top, value in zip(layer.top, results, strict=False):
            self.values[top] = value
