"""qcc-legalize-ascend: apply a target description (`qcc/targets/ascend.td` by default).
The rules are data in the .td file; this pass only applies them.

Rules:
1. A layer (`qnn.LAYER_OPS`) the config keeps float for the user (`skip_layers`,
   `skip_layer_types`) is left alone.
2. The target's rules are evaluated in file order on the layer's facts; the first
   that fires and is not overridden keeps the layer float: attribute
   `qcc.float = "<rule>: <message>"` on the op, config entry `{"quantize": false,
   "reason": "<rule>: <message>"}`, remark `legalize: <layer>: stays float: <rule>:
   <message>`. A fired rule named in `override` (only `overridable` ones) gives the
   remark `legalize: <layer>: quantized anyway (override): <rule>: <message>`.
3. A layer whose op has no `quant` block in the target stays float (reason `quant`).
4. Any other layer gets the target's quant spec in its config entry: weight bits,
   symmetric, `channel_wise` = per_channel; activation bits, and symmetric unless the
   target allows asymmetric. Each change is a remark (`legalize: fc: weight
   channel_wise true -> false (target ascend: qnn.dense)`).
5. A layer an earlier run kept float (its reason names one of the target's rules)
   is checked again: when it passes now, it gets the default settings, rule 4 applied.
The pass only annotates: the float computation is unchanged.

Options: `target` (a name or a .td path), `config` (the resolved quant.json: read,
legalized, written back; default: the built-in defaults), `override` (rule names,
"min_cin,..."), `remarks` (print the remarks to stderr).
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import PassFailedException

from qcc.passes.common import quantizable_layers
from qcc.passes.remarks import emit
from qcc.quant import config as qconfig
from qcc.quant import config_json
from qcc.targets import Target, TargetError, layer_facts, load_target

FLOAT_ATTR = "qcc.float"


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
    """Rules 1-5 on `module` (annotated in place) and the resolved config `cfg` (None:
    the defaults); returns the legalized copy of the config and the remarks."""
    cfg, notes = _legalize(module, cfg, target, overrides)
    return cfg, [f"legalize: {layer}: {text}" for _, layer, text in notes]


def _legalize(module: ModuleOp, cfg: dict | None, target: Target | str,
              overrides) -> tuple[dict, list[tuple[Operation, str, str]]]:
    target = load_target(target) if isinstance(target, str) else target
    overridden = check_overrides(target, overrides)
    cfg = copy.deepcopy(cfg) if cfg is not None else qconfig.resolve(module, None)
    config_json.validate_json(cfg, module)
    framework_attr = module.attributes.get("qcc.framework")
    framework = framework_attr.data if isinstance(framework_attr, StringAttr) else ""
    ours = {r.name for r in target.rules} | {"quant"}
    defaults: dict | None = None
    notes: list[tuple[Operation, str, str]] = []
    for name, op in quantizable_layers(module).items():
        entry = cfg["layers"][name]
        op.attributes.pop(FLOAT_ATTR, None)
        if not entry["quantize"]:
            if entry["reason"].split(":")[0] not in ours:
                continue  # rule 1
            if defaults is None:  # rule 5
                defaults = qconfig.resolve(module, qconfig.SimpleConfig(
                    activation_offset=cfg["activation_offset"]))["layers"]
            entry = copy.deepcopy(defaults[name])
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
            cfg["layers"][name] = {"type": op.name, "quantize": False, "reason": reason}
            notes.append((op, name, f"stays float: {reason}"))
            continue
        assert spec is not None
        if not cfg["layers"][name]["quantize"]:
            notes.append((op, name, f"quantized again with default settings (was: "
                          f"{cfg['layers'][name]['reason']})"))
        cfg["layers"][name] = entry
        want = {"weight": {} if spec.weight is None else {
                    "bits": spec.weight.bits, "symmetric": True,
                    "channel_wise": spec.weight.per_channel},
                "activation": {"bits": spec.activation.bits} | (
                    {} if spec.activation.asymmetric_allowed else {"symmetric": True})}
        for part, fields in want.items():
            for key, value in fields.items():
                if entry[part] is not None and entry[part][key] != value:
                    notes.append((op, name, f"{part} {key} {json.dumps(entry[part][key])} -> "
                                  f"{json.dumps(value)} (target {target.name}: {op.name})"))
                    entry[part][key] = value
    return config_json.validate_json(cfg, module), notes


@dataclass(frozen=True)
class LegalizeAscendPass(ModulePass):
    """Keep float the layers the target cannot run quantized; legalize the quant config."""

    name = "qcc-legalize-ascend"

    target: str = "ascend"
    """A target name (qcc/targets/<name>.td) or the path of a .td file."""

    config: str | None = None
    """The resolved quant.json to legalize in place (default: the built-in defaults)."""

    override: str | tuple[str, ...] = ""
    """Overridable rules to lift: "min_cin" (or a list, override=a,b)."""

    remarks: bool = False
    """Print the remarks to stderr."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        names = self.override.split(",") if isinstance(self.override, str) else self.override
        try:
            cfg = config_json.load_json(self.config) if self.config else None
            cfg, notes = _legalize(op, cfg, self.target, [n.strip() for n in names if n.strip()])
            if self.config:
                config_json.dump_json(cfg, self.config)
        except (TargetError, qconfig.ConfigError) as e:
            raise PassFailedException(f"{self.name}: {e}") from None
        for layer_op, layer, text in notes:
            emit(layer_op, text)
            if self.remarks:
                print(f"legalize: {layer}: {text}", file=sys.stderr)
