"""qcc-insert-quant: wrap the inputs and weights of quantizable layers with
`quant.observe`, as the resolved per-layer config says.

Rules:
1. A layer (`qnn.LAYER_OPS`) whose config says `quantize: false`, or that a target
   keeps float (`qcc.float`, from `qcc-legalize-ascend`), is left alone. A target's
   settings on the layer (`qcc.legal`) replace the config's.
2. Its activation input (both inputs of `qnn.matmul`) gets a `quant.observe`
   {kind = "activation"} with the config's algorithm, bits, symmetry and params.
   Layers reading the same value with the same settings share one observer.
3. Its constant weight (operand 1 of conv, conv_transpose, dense) gets a
   `quant.observe` {kind = "weight"}: symmetric, narrow range ([-127, 127] at 8
   bits), per output channel when `channel_wise` (axis 0; axis 1 for a
   conv_transpose with one group), per tensor otherwise. Biases stay float.
4. No observer ever reads an attention mask or masked scores (`qcc.passes.masks`):
   a layer with such an input stays float, with a remark, whatever the config says.
5. The observer ids are `<layer>.input` (`.input0`/`.input1` for matmul) and
   `<layer>.weight`; a layer without a `name` is named after its op and position.

Option: `config` = path of the JSON written by `qcc config` (default: the built-in
defaults of `qcc.quant.config.resolve`).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import (
    BoolAttr,
    DictionaryAttr,
    FloatAttr,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    f64,
    i64,
)
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from qcc.dialects import qnn, quant
from qcc.dialects.layers import Layer
from qcc.passes import remarks
from qcc.passes.common import decided_entry
from qcc.passes.masks import mask_inputs


def layers(module: ModuleOp) -> list[tuple[str, Operation]]:
    """The quantizable layers of a module with their names, in program order (the
    names the resolved config uses)."""
    from qcc.passes.common import quantizable_layers

    return list(quantizable_layers(module).items())


def _params_attr(params: dict) -> DictionaryAttr | None:
    if not params:
        return None
    out: dict[str, Attribute] = {}
    for key, value in params.items():
        if isinstance(value, bool):
            out[key] = BoolAttr.from_bool(value)
        elif isinstance(value, int):
            out[key] = IntegerAttr(value, i64)
        elif isinstance(value, float):
            out[key] = FloatAttr(value, f64)
        else:
            out[key] = StringAttr(str(value))
    return DictionaryAttr(out)


@dataclass(frozen=True)
class InsertQuantPass(ModulePass):
    """Insert `quant.observe` on the inputs and weights of quantizable layers."""

    name = "qcc-insert-quant"

    config: str | None = None

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        from qcc.quant import config as qconfig
        from qcc.quant import inputs

        cfg = inputs.config(self.config) if self.config else qconfig.resolve(op, None)
        insert_observers(op, cfg)


def insert_observers(module: ModuleOp, cfg: dict) -> list[quant.ObserveOp]:
    """Apply rules 1-5 with the resolved config `cfg`; return the new observers."""
    layer_cfg = cfg.get("layers", {})
    shared: dict[tuple, quant.ObserveOp] = {}
    created: list[quant.ObserveOp] = []
    masked = mask_inputs(module)
    for name, op in layers(module):
        entry = layer_cfg.get(name)
        entry = decided_entry(op, entry) if entry is not None else None
        if entry is None:
            continue  # rule 1
        if op in masked:  # rule 4
            remarks.emit(op, f"stays float: input {masked[op][0]} is an attention mask "
                         "or masked attention scores")
            continue
        act, layer = entry.get("activation"), Layer(op)
        if act is not None:
            inputs = layer.activation_indices
            for i in inputs:
                suffix = f".input{i}" if len(inputs) > 1 else ".input"
                obs = _observe_activation(op, i, name + suffix, act, shared)
                created += [obs] if obs is not None else []
        weight = entry.get("weight")
        w = layer.weight
        if weight is not None and w is not None and isinstance(w.owner, qnn.ConstantOp):
            axis = layer.per_channel_axis if weight.get("channel_wise", True) else None
            created.append(_observe(op, 1, w, "weight", weight["algorithm"], weight["bits"],
                                    True, -1 if axis is None else axis, True,
                                    name + ".weight", {}))
    return created


def _observe_activation(op: Operation, index: int, ident: str, act: dict,
                        shared: dict[tuple, quant.ObserveOp]) -> quant.ObserveOp | None:
    value = op.operands[index]
    params = act.get("params", {}) or {}
    key = (value, act["algorithm"], act["bits"], act.get("symmetric", False),
           tuple(sorted(params.items())))
    if key in shared:
        op.operands[index] = shared[key].results[0]
        return None
    obs = _observe(op, index, value, "activation", act["algorithm"], act["bits"],
                   act.get("symmetric", False), -1, False, ident, params)
    shared[key] = obs
    return obs


def _observe(op: Operation, index: int, value: SSAValue, kind: str, algorithm: str,
             bits: int, symmetric: bool, axis: int, narrow: bool, ident: str,
             params: dict) -> quant.ObserveOp:
    obs = quant.ObserveOp.make(value, kind=kind, algorithm=algorithm, bits=bits,
                               symmetric=symmetric, axis=axis, narrow_range=narrow,
                               id=ident, params=_params_attr(params))
    Rewriter.insert_op(obs, InsertPoint.before(op))
    op.operands[index] = obs.results[0]
    return obs
