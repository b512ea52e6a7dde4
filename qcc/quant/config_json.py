"""The resolved per-layer JSON config (the contract of `qcc.quant.config`): check,
read and write it. Re-exported by `qcc.quant.config`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from qcc.dialects import qnn
from qcc.quant import algorithms
from qcc.quant.config import (
    NO_WEIGHT,
    ActivationQuant,
    ArqQuantize,
    ConfigError,
    _close,
    _is_int,
    _missing,
    _named_ops,
    quantizable_layers,
)

# -------------------------------------------------------------------- JSON

_CHECK = {"int": _is_int, "bool": lambda v: isinstance(v, bool),
          "str": lambda v: isinstance(v, str), "list": lambda v: isinstance(v, list),
          "dict": lambda v: isinstance(v, dict)}
_TOP = {"version": "int", "batch_num": "int?", "activation_offset": "bool",
        "do_fusion": "bool", "skip_fusion_layers": "list", "equalize": "bool",
        "balance": "dict?", "layers": "dict"}
_SKIPPED = {"type": "str", "quantize": "bool", "reason": "str"}
_QUANTIZED = {"type": "str", "quantize": "bool", "weight": "dict?", "activation": "dict"}
_WEIGHT = {"algorithm": "str", "bits": "int", "channel_wise": "bool", "symmetric": "bool"}
_ACTIVATION = {"algorithm": "str", "bits": "int", "symmetric": "bool", "params": "dict"}
_JSON_KEY = {"quant_bits": "bits", "asymmetric": "symmetric", "algorithm": "algorithm",
             "channel_wise": "channel_wise"}


def validate_json(cfg: Any, module=None, path: str = "<json>") -> dict:
    """Check a resolved (maybe hand-edited) config; with `module`, also its layers."""
    def fail(where: str, msg: str):
        raise ConfigError(f"{path}: {where}: {msg}", located=True)

    def shape(obj: Any, spec: dict[str, str], where: str) -> None:
        if not isinstance(obj, dict):
            fail(where, f"expected an object, got {json.dumps(obj)}")
        for k in obj:
            if k not in spec:
                fail(where, f"unknown key '{k}'" + _close(k, spec))
        for k, kind in spec.items():
            if k not in obj:
                fail(where, f"missing key '{k}'")
            if not (obj[k] is None and kind.endswith("?") or _CHECK[kind.rstrip("?")](obj[k])):
                fail(f"{where}.{k}", f"expected {kind.rstrip('?')}, got {json.dumps(obj[k])}")

    def make(ctor, where: str):
        try:
            return ctor()
        except ConfigError as e:
            f = e.field if isinstance(e.field, str) else ""
            fail(f"{where}.{_JSON_KEY.get(f, f'params.{f}')}", str(e))

    shape(cfg, _TOP, "top level")
    if cfg["version"] != 1:
        fail("version", f"unsupported version {cfg['version']} (expected 1)")
    if cfg["batch_num"] is not None and cfg["batch_num"] < 1:
        fail("batch_num", f"batch_num {cfg['batch_num']} must be >= 1")
    if not all(isinstance(n, str) for n in cfg["skip_fusion_layers"]):
        fail("skip_fusion_layers", "expected a list of layer names")
    types = [op.name for op in qnn.LAYER_OPS]
    for name, e in cfg["layers"].items():
        where = f"layers.{name}"
        shape(e, _QUANTIZED if isinstance(e, dict) and e.get("quantize") else _SKIPPED, where)
        if e["type"] not in types:
            fail(f"{where}.type", f"'{e['type']}' is not a layer op" + _close(e["type"], types))
        if not e["quantize"]:
            continue
        w, a = e["weight"], e["activation"]
        if (w is None) != (e["type"] in NO_WEIGHT):
            fail(f"{where}.weight", f"{e['type']} " + (
                "has no weight: use null" if w is not None else "needs a weight config"))
        if w is not None:
            shape(w, _WEIGHT, f"{where}.weight")
            if w["algorithm"] not in algorithms.WEIGHT_ALGORITHMS or not w["symmetric"]:
                fail(f"{where}.weight", f"the weight algorithm is "
                     f"{', '.join(algorithms.WEIGHT_ALGORITHMS)}, symmetric")
            make(lambda w=w: ArqQuantize(w["channel_wise"], w["bits"]), f"{where}.weight")
        shape(a, _ACTIVATION, f"{where}.activation")
        make(lambda a=a: ActivationQuant(a["algorithm"], a["bits"], not a["symmetric"],
                                         tuple(a["params"].items())), f"{where}.activation")
    if module is not None:
        layers = quantizable_layers(module)
        named = _named_ops(module, layers)
        for name, e in cfg["layers"].items():
            if name not in layers:
                fail(f"layers.{name}", _missing("layers", name, layers, named, " in the model"))
            if e["type"] != layers[name].name:
                fail(f"layers.{name}.type", f"'{e['type']}', but the layer is a "
                     f"{layers[name].name}")
        absent = [n for n in layers if n not in cfg["layers"]]
        if absent:
            fail("layers", f"no entry for layer(s) {', '.join(absent)}")
        for name in cfg["skip_fusion_layers"]:
            if name not in named:
                fail("skip_fusion_layers", _missing("skip_fusion_layers", name, named, named,
                                                    " in the model"))
    return cfg


def dump_json(cfg: dict, path: str | os.PathLike) -> None:
    """Write `cfg` atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(cfg, indent=2) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_json(path: str | os.PathLike) -> dict:
    """Read a resolved config and check its structure (`validate_json` without a module)."""
    try:
        cfg = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}:{e.colno}: {e.msg}", located=True) from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror}") from None
    return validate_json(cfg, None, str(path))
