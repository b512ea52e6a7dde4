"""qcc-legalize-ascend: apply a target description (`qcc/targets/ascend.td` by default).
The rules are data in the .td file; this pass only applies them, and records each
decision on the layer op it is about (the IR is the one place decisions live; the
config file is only read).

Rules:
1. A layer (`qnn.LAYER_OPS`) the config keeps float for the user (`skip_layers`,
   `skip_layer_types`) is left alone.
2. The target's rules are evaluated in file order on the layer's facts; the first
   that fires and is not overridden keeps the layer float: attribute
   `qcc.float = "<rule>: <message>"` on the op, remark `legalize: <layer>: stays
   float: <rule>: <message>`. A fired rule named in `override` (only `overridable`
   ones) gives the remark `legalize: <layer>: quantized anyway (override): <rule>:
   <message>`.
3. A layer whose op has no `quant` block in the target stays float (reason `quant`).
4. Any other layer gets the target's quant spec as attribute `qcc.legal =
   {weight = {bits, symmetric = true, channel_wise = per_channel}, activation =
   {bits[, symmetric = true unless the target allows asymmetric]}}`, which
   `qcc-insert-quant` applies over the config entry. Each setting it changes in the
   config entry is a remark (`legalize: fc: weight channel_wise true -> false (target
   ascend: qnn.dense)`).
5. Earlier decisions on the op (`qcc.float`, `qcc.legal`) are dropped first, so a
   second run (e.g. with `override`) decides again.
The pass only annotates: the float computation is unchanged. `legalized_config`
reads the decisions back into a copy of the config (for reports and the record).

Options: `target` (a name or a .td path), `config` (the resolved quant.json, read
only; default: the built-in defaults), `override` (rule names, "min_cin,..."),
`remarks` (print the remarks to stderr).
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import BoolAttr, DictionaryAttr, IntegerAttr, ModuleOp, StringAttr, i64
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import PassFailedException

from qcc.passes.common import FLOAT_ATTR, LEGAL_ATTR, decided_entry, quantizable_layers
from qcc.passes.remarks import current, emit
from qcc.quant import config as qconfig
from qcc.quant import config_json, inputs
from qcc.targets import Target, TargetError, layer_facts, load_target


def check_overrides(target: Target, names) -> frozenset[str]:
    """The overridden rule names (TargetError for an unknown or a hard rule)."""
    soft = ", ".join(r.name for r in target.rules if r.overridable) or "none"
    for name in names:
        if not target.rule(name).overridable:
            raise TargetError(f"rule {name} of target {target.name} is not overridable "
                              f"(overridable: {soft})")
    return frozenset(names)


def legalize(module: ModuleOp, cfg: dict | None, target: Target | str,
             overrides=()) -> tuple[dict, list[str]]:
    """Rules 1-5 on `module` (annotated in place) with the resolved config `cfg`
    (None: the defaults, never modified); returns `legalized_config` and the remarks."""
    cfg = cfg if cfg is not None else qconfig.resolve(module, None)
    notes = _legalize(module, cfg, target, overrides)
    return legalized_config(module, cfg), [f"legalize: {layer}: {text}"
                                           for _, layer, text in notes]


def legalized_config(module: ModuleOp, cfg: dict) -> dict:
    """A copy of `cfg` with the decisions recorded on `module` applied: the layers
    the target keeps float say why, the others carry the target's settings."""
    out = copy.deepcopy(cfg)
    for name, op in quantizable_layers(module).items():
        entry = out["layers"].get(name)
        if entry is None or not entry["quantize"]:
            continue
        reason = op.attributes.get(FLOAT_ATTR)
        if isinstance(reason, StringAttr):
            out["layers"][name] = {"type": op.name, "quantize": False, "reason": reason.data}
        else:
            out["layers"][name] = decided_entry(op, entry)
    return config_json.validate_json(out, module)


def _legal_attr(want: dict[str, dict[str, int | bool]]) -> DictionaryAttr:
    return DictionaryAttr({part: DictionaryAttr({
        k: BoolAttr.from_bool(v) if isinstance(v, bool) else IntegerAttr(v, i64)
        for k, v in fields.items()}) for part, fields in want.items() if fields})


def _legalize(module: ModuleOp, cfg: dict, target: Target | str,
              overrides) -> list[tuple[Operation, str, str]]:
    target = load_target(target) if isinstance(target, str) else target
    overridden = check_overrides(target, overrides)
    config_json.validate_json(cfg, module)
    framework_attr = module.attributes.get("qcc.framework")
    framework = framework_attr.data if isinstance(framework_attr, StringAttr) else ""
    notes: list[tuple[Operation, str, str]] = []
    for name, op in quantizable_layers(module).items():
        entry = cfg["layers"][name]
        op.attributes.pop(FLOAT_ATTR, None)  # rule 5
        op.attributes.pop(LEGAL_ATTR, None)
        if not entry["quantize"]:
            continue  # rule 1
        facts = layer_facts(op, target, framework)
        reason = None
        for rule in target.rules:
            if not rule.fires(facts):
                continue
            text = f"{rule.name}: {rule.explain(facts)}"
            if rule.name not in overridden:
                reason = text
                break
            notes.append((op, name, f"quantized anyway (override): {text}"))
        spec = target.quant.get(op.name)
        if reason is None and spec is None:
            reason = f"quant: target {target.name} has no quant block for {op.name}"
        if reason is not None:
            op.attributes[FLOAT_ATTR] = StringAttr(reason)
            notes.append((op, name, f"stays float: {reason}"))
            continue
        assert spec is not None
        want: dict[str, dict[str, int | bool]] = {
            "weight": {} if spec.weight is None else {
                "bits": spec.weight.bits, "symmetric": True,
                "channel_wise": spec.weight.per_channel},
            "activation": {"bits": spec.activation.bits} | (
                {} if spec.activation.asymmetric_allowed else {"symmetric": True})}
        op.attributes[LEGAL_ATTR] = _legal_attr(want)  # rule 4
        for part, fields in want.items():
            for key, value in fields.items():
                if entry[part] is not None and entry[part][key] != value:
                    notes.append((op, name, f"{part} {key} {json.dumps(entry[part][key])} -> "
                                  f"{json.dumps(value)} (target {target.name}: {op.name})"))
    return notes


@dataclass(frozen=True)
class LegalizeAscendPass(ModulePass):
    """Keep float the layers the target cannot run quantized; record the target's
    quant settings on the others."""

    name = "qcc-legalize-ascend"

    target: str = "ascend"
    """A target name (qcc/targets/<name>.td) or the path of a .td file."""

    config: str | None = None
    """The resolved quant.json (read only; default: the built-in defaults)."""

    override: str | tuple[str, ...] = ""
    """Overridable rules to lift: "min_cin" (or a list, override=a,b)."""

    remarks: bool = False
    """Print the remarks to stderr."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        names = self.override.split(",") if isinstance(self.override, str) else self.override
        try:
            cfg = inputs.config(self.config) if self.config else qconfig.resolve(op, None)
            notes = _legalize(op, cfg, self.target, [n.strip() for n in names if n.strip()])
        except (TargetError, qconfig.ConfigError) as e:
            raise PassFailedException(f"{self.name}: {e}") from None
        lines = current().results.setdefault(self.name, [])
        for layer_op, layer, text in notes:
            emit(layer_op, text)
            lines.append(f"legalize: {layer}: {text}")
            if self.remarks:
                print(f"legalize: {layer}: {text}", file=sys.stderr)
