"""Quantization configuration: AMCT's simplified config (prototext) in, per-layer JSON out.

**Simplified config** (`.cfg`, protobuf text format, grammar in `config.lark`)::

    batch_num: 2                     # calibration batches (>= 1; default: all the data)
    activation_offset: true          # asymmetric activations unless a block says `asymmetric`
    skip_layers: "conv1"             # repeated; also skip_layers: ["a", "b"]
    skip_layer_types: "InnerProduct"
    do_fusion: true                  # BN fusion (default true)
    skip_fusion_layers: "conv2"
    do_equalization: false           # cross-layer equalization after fusion (qcc-equalize)
    dmq_balancer_param { migration_strength: 0.5 }   # activation balance on every layer
    auto_balance: false              # default true: balance inputs with outlier channels
    common_config { arq_quantize { channel_wise: true quant_bits: 8 }
                    ifmr_quantize { search_range_start: 0.7 search_range_end: 1.3 } }
    override_layer_types { layer_type: "Conv2d" calibration_config { ... } }
    override_layer_configs { layer_name: "fc" calibration_config { ... } }

A `calibration_config` holds at most one weight block, `arq_quantize { channel_wise
quant_bits }` (symmetric; quant_bits 4..8, default per-channel int8), and at most one
activation block (quant_bits 8 or 16, default 8; `asymmetric` defaults to
`activation_offset`). Activation bits live in the activation block as `quant_bits`.

Activation blocks are `<name>_quantize` for every name of the algorithm registry's
`ACTIVATION_ALGORITHMS` (`qcc.quant.algorithms`: ifmr, the default, hfmg, minmax,
percentile, kl, mse); their fields are the algorithm's parameters, whose defaults
the registry states (`activation_defaults()`), plus `quant_bits` and `asymmetric`.

Defaults (the registry's `DEFAULT_WEIGHT_ALGORITHM`, `DEFAULT_ACTIVATION_ALGORITHM`):
weights `arq` symmetric per-channel int8 (conv, conv_transpose, dense); activations
`ifmr` int8, asymmetric (`activation_offset: true`); activation balance (`qcc-balance`,
alpha 0.5) of the layers whose input has outlier channels (largest channel max|x|
above 16x the median: trained transformers), `auto_balance: false` to turn it off,
`dmq_balancer_param` to balance every layer. Precedence, separately
for the weight and the activation part: `override_layer_configs` > `override_layer_types`
> `common_config` > defaults; the most specific block present is used whole (its unset
fields take the defaults above, not a less specific block's values). `skip_layers` /
`skip_layer_types` win over every override. Layer names (`skip_layers`,
`override_layer_configs`, `skip_fusion_layers`) must exist in the model; a type the
model lacks is fine. AMCT's `version` field is accepted and ignored.

Layer types may be qcc op names or framework names (`LAYER_TYPES`, exact spelling):
qnn.conv: `qnn.conv conv Convolution Conv Conv2D Conv3D DepthwiseConv2dNative
DepthwiseConv2D Conv1d Conv2d Conv3d`; qnn.conv_transpose: `Deconvolution ConvTranspose
Conv2DBackpropInput Conv3DBackpropInputV2 Conv2DTranspose ConvTranspose1d/2d/3d`;
qnn.dense: `InnerProduct Gemm Dense Linear`; qnn.matmul: `BatchMatMul BatchMatMulV2`;
both dense and matmul: `MatMul` (ONNX/TF: dense when one side is a constant);
qnn.avg_pool: `Pooling` (Caffe; only average pooling is a layer) `AveragePool AvgPool
AvgPool3D AveragePooling2D AvgPool1d/2d/3d`.

**Resolved JSON** (`resolve`, `config_json.dump_json`; the contract every later step reads)::

    {"version": 1, "batch_num": null, "activation_offset": true, "do_fusion": true,
     "skip_fusion_layers": [], "equalize": false,
     "balance": null | {"alpha": 0.5} | {"alpha": 0.5, "outlier_ratio": 16.0},
     "layers": {
       "conv1": {"type": "qnn.conv", "quantize": true,
                 "weight": {"algorithm": "arq", "bits": 8, "channel_wise": true, "symmetric": true},
                 "activation": {"algorithm": "ifmr", "bits": 8, "symmetric": false,
                                "params": {"search_range_start": 0.7, ...}}},
       "fc": {"type": "qnn.dense", "quantize": false, "reason": "skip_layers"}}}

Layers are the module's `qnn.LAYER_OPS` in walk order, keyed by `quantizable_layers`
names: the op's `name` attribute, else `<op>_<i>` with i its index among the module's
layers (`conv_0`, `dense_3`); a repeated name gets `_1`, `_2`. `weight` is null for `qnn.avg_pool` and `qnn.matmul`; the
activation entry applies to every activation input (both operands of `qnn.matmul`).
`params` always lists every parameter of the algorithm. `reason` is `skip_layers`,
`skip_layer_types` or `attention_mask` (an activation input is an attention mask or
masked attention scores, recognised from the graph by `qcc.passes.masks`: such a
layer stays float, so no mask value reaches a quantizer's statistics).
"""

from __future__ import annotations

import ast
import difflib
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from xdsl.dialects.builtin import StringAttr

from qcc.dialects import qnn
from qcc.dialects.layers import NO_WEIGHT
from qcc.errors import QccError
from qcc.passes.common import quantizable_layers
from qcc.passes.masks import mask_inputs
from qcc.quant import algorithms

OUTLIER_RATIO = 16.0
"""The default balances a layer input whose largest channel max|x| is above this times
the median channel max (`qcc-balance` rule 7): transformers with outlier channels
measure 20 to 1000s, the CNNs in the tests (digits, a ResNet-18) below 8."""
WEIGHT_BITS = (4, 5, 6, 7, 8)
ACTIVATION_BITS = (8, 16)
ACTIVATION_ALGORITHMS: dict[str, dict[str, float | int]] = algorithms.activation_defaults()
"""name -> parameter defaults, from the algorithm registry (`qcc.quant.algorithms`)."""
WEIGHT_BLOCK = f"{algorithms.DEFAULT_WEIGHT_ALGORITHM}_quantize"
"""The weight block of a calibration_config (AMCT's `arq_quantize`)."""

_C, _T, _D, _M, _P = (("qnn.conv",), ("qnn.conv_transpose",), ("qnn.dense",),
                      ("qnn.matmul",), ("qnn.avg_pool",))
LAYER_TYPES: dict[str, tuple[str, ...]] = {
    **{op.name: (op.name,) for op in qnn.LAYER_OPS},
    **{op.name.removeprefix("qnn."): (op.name,) for op in qnn.LAYER_OPS},
    **dict.fromkeys(("Convolution", "Conv", "Conv2D", "Conv3D", "DepthwiseConv2dNative",
                     "DepthwiseConv2D", "Conv1d", "Conv2d", "Conv3d"), _C),
    **dict.fromkeys(("Deconvolution", "ConvTranspose", "Conv2DBackpropInput",
                     "Conv3DBackpropInputV2", "Conv2DTranspose", "ConvTranspose1d",
                     "ConvTranspose2d", "ConvTranspose3d"), _T),
    **dict.fromkeys(("InnerProduct", "Gemm", "Dense", "Linear"), _D),
    **dict.fromkeys(("BatchMatMul", "BatchMatMulV2"), _M),
    "MatMul": _D + _M,
    **dict.fromkeys(("Pooling", "AveragePool", "AvgPool", "AvgPool3D", "AveragePooling2D",
                     "AvgPool1d", "AvgPool2d", "AvgPool3d"), _P),
}
"""Layer type names a config may use -> the qnn ops they select."""


class ConfigError(QccError):
    """A user error in a config (message `path:line:column: ...` when from a file)."""

    def __init__(self, message: str, field: str | tuple[str, int] | None = None,
                 located: bool = False) -> None:
        super().__init__(message)
        self.field, self.located = field, located


def _close(name: str, candidates, what: str = "") -> str:
    near = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    if not near:
        lower = {c.lower(): c for c in candidates}
        near = [lower[n] for n in difflib.get_close_matches(name.lower(), lower, n=3)]
    return f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else what


def layer_type_ops(name: str) -> tuple[str, ...]:
    """The qnn ops a layer type name selects (ConfigError if unknown)."""
    if name not in LAYER_TYPES:
        raise ConfigError(f"unknown layer type '{name}'" + _close(
            name, LAYER_TYPES, f" (known: {', '.join(sorted(LAYER_TYPES))})"))
    return LAYER_TYPES[name]


# ------------------------------------------------------------------- policy


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_bits(bits: object, allowed: tuple[int, ...], what: str) -> None:
    if not _is_int(bits) or bits not in allowed:
        raise ConfigError(f"quant_bits {bits!r} is out of range for {what} "
                          f"(allowed: {', '.join(map(str, allowed))})", "quant_bits")


@dataclass(frozen=True)
class ArqQuantize:
    """ARQ weight quantization: symmetric, per output channel or per tensor."""

    channel_wise: bool = True
    quant_bits: int = 8

    def __post_init__(self) -> None:
        _check_bits(self.quant_bits, WEIGHT_BITS, "weights")
        if not isinstance(self.channel_wise, bool):
            raise ConfigError("channel_wise must be true or false", "channel_wise")

    def to_json(self) -> dict:
        return {"algorithm": algorithms.DEFAULT_WEIGHT_ALGORITHM, "bits": self.quant_bits,
                "channel_wise": self.channel_wise, "symmetric": True}


@dataclass(frozen=True)
class ActivationQuant:
    """An activation algorithm (`ACTIVATION_ALGORITHMS`); missing params take defaults.
    `asymmetric` None means "as the global activation_offset"."""

    algorithm: str = algorithms.DEFAULT_ACTIVATION_ALGORITHM
    quant_bits: int = 8
    asymmetric: bool | None = None
    params: tuple[tuple[str, float | int], ...] = ()

    def __post_init__(self) -> None:
        defaults = ACTIVATION_ALGORITHMS.get(self.algorithm)
        if defaults is None:
            raise ConfigError(f"unknown activation algorithm '{self.algorithm}'" + _close(
                self.algorithm, ACTIVATION_ALGORITHMS), "algorithm")
        _check_bits(self.quant_bits, ACTIVATION_BITS, "activations")
        if self.asymmetric is not None and not isinstance(self.asymmetric, bool):
            raise ConfigError("asymmetric must be true or false", "asymmetric")
        p = dict(defaults)
        for k, v in self.params:
            if k not in defaults:
                raise ConfigError(f"{self.algorithm} has no parameter '{k}'" + _close(
                    k, defaults, f" (it has: {', '.join(defaults) or 'none'})"), k)
            if not (_is_int(v) or isinstance(v, float) and not _is_int(defaults[k])):
                kind = "an integer" if _is_int(defaults[k]) else "a number"
                raise ConfigError(f"{k} must be {kind}, got {v!r}", k)
            p[k] = v if _is_int(defaults[k]) else float(v)
        for k in ("max_percentile", "min_percentile"):
            if k in p and not 0 < p[k] <= 1:
                raise ConfigError(f"{k} {p[k]} must be in (0, 1]", k)
        if "search_range_start" in p:
            if not 0 < p["search_range_start"] < p["search_range_end"]:
                raise ConfigError(f"search range [{p['search_range_start']}, "
                                  f"{p['search_range_end']}] needs 0 < start < end",
                                  "search_range_start")
            if not p["search_step"] > 0:
                raise ConfigError(f"search_step {p['search_step']} must be > 0", "search_step")
        if "num_of_bins" in p and p["num_of_bins"] < 16:
            raise ConfigError(f"num_of_bins {p['num_of_bins']} must be >= 16", "num_of_bins")
        object.__setattr__(self, "params", tuple(p.items()))

    def to_json(self, activation_offset: bool) -> dict:
        asym = activation_offset if self.asymmetric is None else self.asymmetric
        return {"algorithm": self.algorithm, "bits": self.quant_bits,
                "symmetric": not asym, "params": dict(self.params)}


@dataclass(frozen=True)
class CalibrationConfig:
    weight: ArqQuantize | None = None
    activation: ActivationQuant | None = None


@dataclass(frozen=True)
class OverrideLayerType:
    layer_type: str
    config: CalibrationConfig

    def __post_init__(self) -> None:
        try:
            layer_type_ops(self.layer_type)
        except ConfigError as e:
            raise ConfigError(str(e), "layer_type") from None

    @property
    def ops(self) -> tuple[str, ...]:
        return LAYER_TYPES[self.layer_type]


@dataclass(frozen=True)
class OverrideLayer:
    layer_name: str
    config: CalibrationConfig


@dataclass(frozen=True)
class SimpleConfig:
    """The simplified config, checked; `origins` maps (field, value) to `path:line:col`."""

    batch_num: int | None = None  # None: every batch the calibration data holds
    activation_offset: bool = True
    skip_layers: tuple[str, ...] = ()
    skip_layer_types: tuple[str, ...] = ()
    common_config: CalibrationConfig = CalibrationConfig()
    override_layer_types: tuple[OverrideLayerType, ...] = ()
    override_layer_configs: tuple[OverrideLayer, ...] = ()
    do_fusion: bool = True
    skip_fusion_layers: tuple[str, ...] = ()
    do_equalization: bool = False  # qcc-equalize after fusion
    balance_alpha: float | None = None  # qcc-balance migration strength on every layer
    auto_balance: bool = True  # without dmq_balancer_param: balance outlier inputs only
    origins: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        if self.balance_alpha is not None and not 0.2 <= self.balance_alpha <= 0.8:
            raise ConfigError(f"migration_strength {self.balance_alpha!r} must be in "
                              "[0.2, 0.8]", "dmq_balancer_param")
        if self.batch_num is not None and (not _is_int(self.batch_num)
                                           or self.batch_num < 1):
            raise ConfigError(f"batch_num {self.batch_num!r} must be >= 1", "batch_num")
        for i, t in enumerate(self.skip_layer_types):
            try:
                layer_type_ops(t)
            except ConfigError as e:
                raise ConfigError(str(e), ("skip_layer_types", i)) from None
        seen: dict[str, str] = {}
        for i, o in enumerate(self.override_layer_types):
            for op in o.ops:
                if op in seen:
                    raise ConfigError(f"override_layer_types '{seen[op]}' and "
                                      f"'{o.layer_type}' both select {op}",
                                      ("override_layer_types", i))
                seen[op] = o.layer_type
        names: set[str] = set()
        for i, c in enumerate(self.override_layer_configs):
            if c.layer_name in names:
                raise ConfigError(f"layer '{c.layer_name}' is overridden twice",
                                  ("override_layer_configs", i))
            names.add(c.layer_name)


# ---------------------------------------------------------------- mechanism


@cache
def _parser() -> Lark:
    return Lark((Path(__file__).parent / "config.lark").read_text(), parser="lalr",
                propagate_positions=True)


@dataclass
class _Node:  # one `name: value` of the text; value is a scalar Tree or a list of _Node
    name: str
    value: Any
    pos: tuple[int, int]
    vpos: tuple[int, int]


def _nodes(tree: Tree) -> list[_Node]:
    out = []
    for f in tree.children:
        name = f.children[0]
        assert isinstance(name, Token) and name.line is not None and name.column is not None
        for v in f.children[1:]:
            sub = v.data == "message"
            vpos = (name.line, name.column) if sub else (v.meta.line, v.meta.column)
            out.append(_Node(str(name), _nodes(v) if sub else v, (name.line, name.column),
                             vpos))
    return out


_ALGO_FIELDS = {"quant_bits": "uint", "asymmetric": "bool"}
_SCHEMA: dict[str, dict[str, str]] = {
    "AMCTConfig": {"version": "uint", "batch_num": "uint", "activation_offset": "bool",
                   "skip_layers": "string*", "skip_layer_types": "string*",
                   "common_config": "CalibrationConfig",
                   "override_layer_types": "OverrideLayerType*",
                   "override_layer_configs": "OverrideLayer*", "do_fusion": "bool",
                   "skip_fusion_layers": "string*", "do_equalization": "bool",
                   "dmq_balancer_param": "dmq_balancer_param", "auto_balance": "bool"},
    "dmq_balancer_param": {"migration_strength": "float"},
    "CalibrationConfig": {WEIGHT_BLOCK: WEIGHT_BLOCK,
                          **{f"{a}_quantize": f"{a}_quantize" for a in ACTIVATION_ALGORITHMS}},
    "OverrideLayerType": {"layer_type": "string!", "calibration_config": "CalibrationConfig!"},
    "OverrideLayer": {"layer_name": "string!", "calibration_config": "CalibrationConfig!"},
    WEIGHT_BLOCK: {"channel_wise": "bool", "quant_bits": "uint"},
    **{f"{a}_quantize": {**{k: "uint" if _is_int(v) else "float" for k, v in p.items()},
                         **_ALGO_FIELDS} for a, p in ACTIVATION_ALGORITHMS.items()},
}
_BOOLS = {"true": True, "True": True, "t": True, "1": True,
          "false": False, "False": False, "f": False, "0": False}
_KINDS = {"bool": "true or false", "uint": "an unsigned integer", "float": "a number",
          "string": "a quoted string"}


def _number(text: str) -> int | float:
    if "x" in text.lower():
        return int(text, 16)
    text = text.rstrip("fF")
    return int(text) if text.lstrip("+-").isdigit() else float(text)


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path

    def loc(self, pos: tuple[int, int]) -> str:
        return f"{self.path}:{pos[0]}:{pos[1]}"

    def error(self, pos: tuple[int, int], message: str) -> ConfigError:
        return ConfigError(f"{self.loc(pos)}: {message}", located=True)

    def fields(self, nodes: list[_Node], msg: str, pos: tuple[int, int], label: str) -> dict:
        """Check `nodes` against the schema of `msg`: {field: [(value, node), ...]}."""
        schema = _SCHEMA[msg]
        out: dict[str, list[tuple[Any, _Node]]] = {}
        for n in nodes:
            kind = schema.get(n.name)
            if kind is None:
                what = "algorithm or field" if msg == "CalibrationConfig" else "field"
                raise self.error(n.pos, f"unknown {what} '{n.name}' in {label}" + _close(
                    n.name, schema, f" (known: {', '.join(schema)})"))
            base = kind.rstrip("*!")
            if n.name in out and not kind.endswith("*"):
                first = out[n.name][0][1].pos[0]
                raise self.error(n.pos, f"field '{n.name}' is set twice (first on line {first})")
            if base in _SCHEMA:
                if not isinstance(n.value, list):
                    raise self.error(n.vpos, f"'{n.name}' is a message: write {n.name} {{ ... }}")
                value: Any = self.fields(n.value, base, n.pos, n.name)
            else:
                value = self.scalar(n, base)
            out.setdefault(n.name, []).append((value, n))
        for name, kind in schema.items():
            if kind.endswith("!") and name not in out:
                raise self.error(pos, f"{label} needs '{name}'")
        return out

    def scalar(self, n: _Node, kind: str) -> Any:
        if isinstance(n.value, list):
            raise self.error(n.vpos, f"'{n.name}' expects {_KINDS[kind]}, not a message")
        tree: Tree = n.value
        text = " ".join(str(t) for t in tree.children)
        if kind == "string" and tree.data == "string":
            try:
                return "".join(ast.literal_eval(str(t)) for t in tree.children)
            except (SyntaxError, ValueError):
                raise self.error(n.vpos, f"bad escape in string {text}") from None
        if kind == "bool" and text in _BOOLS:
            return _BOOLS[text]
        if kind in ("uint", "float") and tree.data == "number":
            value = _number(text)
            if kind == "float":
                return float(value)
            if isinstance(value, int) and value >= 0:
                return value
        raise self.error(n.vpos, f"'{n.name}' expects {_KINDS[kind]}, got {text}")

    def build(self, make, fields: dict, pos: tuple[int, int]):
        """Call `make()`; a ConfigError naming a field is reported at that field."""
        try:
            return make()
        except ConfigError as e:
            if e.located:
                raise
            name, i = e.field if isinstance(e.field, tuple) else (e.field, 0)
            at = fields[name][i][1].vpos if name in fields else pos
            raise self.error(at, str(e)) from None

    def calibration(self, f: dict, pos: tuple[int, int]) -> CalibrationConfig:
        acts = [k for k in f if k != WEIGHT_BLOCK]
        if len(acts) > 1:
            first = f[acts[0]][0][1].pos[0]
            raise self.error(f[acts[1]][0][1].pos, f"several activation algorithms in one "
                             f"config: {acts[0]} (line {first}) and {acts[1]}; keep one")
        weight = act = None
        if WEIGHT_BLOCK in f:
            (w, n), = f[WEIGHT_BLOCK]
            weight = self.build(lambda: ArqQuantize(**{k: v[0][0] for k, v in w.items()}),
                                w, n.pos)
        if acts:
            (a, n), = f[acts[0]]
            kw = {k: a[k][0][0] for k in _ALGO_FIELDS if k in a}
            params = tuple((k, v[0][0]) for k, v in a.items() if k not in _ALGO_FIELDS)
            act = self.build(lambda: ActivationQuant(acts[0].removesuffix("_quantize"),
                                                     params=params, **kw), a, n.pos)
        return CalibrationConfig(weight, act)

    def config(self, f: dict) -> SimpleConfig:
        def many(name):
            return [v for v, _ in f.get(name, [])]

        def one(name, default):
            return f[name][0][0] if name in f else default

        origins = {(k, v): self.loc(n.vpos) for k in ("skip_layers", "skip_fusion_layers")
                   for v, n in f.get(k, [])}
        types, layers = [], []
        for o, n in f.get("override_layer_types", []):
            cal = self.calibration(o["calibration_config"][0][0], n.pos)
            types.append(self.build(lambda o=o, cal=cal: OverrideLayerType(
                o["layer_type"][0][0], cal), o, n.pos))
        for o, n in f.get("override_layer_configs", []):
            cal = self.calibration(o["calibration_config"][0][0], n.pos)
            layers.append(OverrideLayer(o["layer_name"][0][0], cal))
            origins["override_layer_configs", layers[-1].layer_name] = self.loc(
                o["layer_name"][0][1].vpos)
        common = self.calibration(f["common_config"][0][0], f["common_config"][0][1].pos) \
            if "common_config" in f else CalibrationConfig()
        return self.build(lambda: SimpleConfig(
            one("batch_num", None), one("activation_offset", True), tuple(many("skip_layers")),
            tuple(many("skip_layer_types")), common, tuple(types), tuple(layers),
            one("do_fusion", True), tuple(many("skip_fusion_layers")),
            one("do_equalization", False), self.balancer(f), one("auto_balance", True),
            origins), f, (1, 1))

    def balancer(self, f: dict) -> float | None:
        if "dmq_balancer_param" not in f:
            return None
        sub = f["dmq_balancer_param"][0][0]
        return float(sub["migration_strength"][0][0]) if "migration_strength" in sub else 0.5


_TERMS = {"NAME": "a name", "NUMBER": "a number", "STRING": "a string"}


def _syntax(e: UnexpectedInput) -> str:
    if isinstance(e, UnexpectedCharacters):
        return f"unexpected character {e.char!r}"
    if isinstance(e, UnexpectedToken):
        def show(t: str) -> str:
            if t in _TERMS:
                return _TERMS[t]
            try:
                return repr(_parser().get_terminal(t).pattern.value)
            except KeyError:
                return t
        what = "end of file" if e.token.type == "$END" else repr(str(e.token))
        return f"unexpected {what}; expected {', '.join(sorted(map(show, e.expected)))}"
    return str(e)


def parse_simple_config(text: str, path: str = "<config>") -> SimpleConfig:
    """Parse and check an AMCT-style simplified config (ConfigError on any problem)."""
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as e:
        raise ConfigError(f"{path}:{e.line}:{e.column}: {_syntax(e)}", located=True) from None
    reader = _Reader(path)
    return reader.config(reader.fields(_nodes(tree), "AMCTConfig", (1, 1), "the config"))


def load_simple_config(path: str | os.PathLike) -> SimpleConfig:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); a config is "
                          "UTF-8 text") from None
    return parse_simple_config(text, str(path))


# ----------------------------------------------------------------- resolve


def _named_ops(module, layers: dict[str, Any]) -> dict[str, str]:
    named = {op.attributes["name"].data: op.name for op in module.walk()
             if isinstance(op.attributes.get("name"), StringAttr) and op.name != "qnn.constant"}
    return {**named, **{n: op.name for n, op in layers.items()}}


def _missing(kind: str, name: str, pool, named: dict[str, str], model: str) -> str:
    if name in named:
        return f"{kind} names '{name}', a {named[name]}, which is not a quantizable layer"
    listing = ", ".join(list(pool)[:10]) + (", ..." if len(pool) > 10 else "")
    return f"{kind} names layer '{name}' that does not exist{model}" + _close(
        name, pool, f" (layers: {listing or 'none'})")


def resolve(module, config: SimpleConfig | None, model_path: str | None = None) -> dict:
    """The resolved per-layer JSON dict (format in the module docstring)."""
    config = config or SimpleConfig()
    layers = quantizable_layers(module)
    named = _named_ops(module, layers)
    model = f" in {model_path}" if model_path else " in the model"
    for kind, names, pool in (
            ("skip_layers", config.skip_layers, layers),
            ("override_layer_configs", [o.layer_name for o in config.override_layer_configs],
             layers),
            ("skip_fusion_layers", config.skip_fusion_layers, named)):
        for name in names:
            if name not in pool:
                loc = config.origins.get((kind, name))
                raise ConfigError((f"{loc}: " if loc else "") +
                                  _missing(kind, name, pool, named, model), located=True)
    by_layer = {o.layer_name: o.config for o in config.override_layer_configs}
    by_type = {op: o.config for o in config.override_layer_types for op in o.ops}
    skip_types = {op for t in config.skip_layer_types for op in LAYER_TYPES[t]}
    masked = mask_inputs(module)
    out: dict[str, dict] = {}
    for name, op in layers.items():
        t = op.name
        if name in config.skip_layers or t in skip_types:
            reason = "skip_layers" if name in config.skip_layers else "skip_layer_types"
            out[name] = {"type": t, "quantize": False, "reason": reason}
            continue
        if op in masked:  # its input is an attention mask or masked scores: float
            out[name] = {"type": t, "quantize": False, "reason": "attention_mask"}
            continue
        chain = [c for c in (by_layer.get(name), by_type.get(t), config.common_config) if c]
        w = next((c.weight for c in chain if c.weight), None) or ArqQuantize()
        a = next((c.activation for c in chain if c.activation), None) or ActivationQuant()
        out[name] = {"type": t, "quantize": True,
                     "weight": None if t in NO_WEIGHT else w.to_json(),
                     "activation": a.to_json(config.activation_offset)}
    return {"version": 1, "batch_num": config.batch_num,
            "activation_offset": config.activation_offset, "do_fusion": config.do_fusion,
            "skip_fusion_layers": list(config.skip_fusion_layers),
            "equalize": config.do_equalization,
            "balance": _balance(config),
            "layers": out}


def _balance(config: SimpleConfig) -> dict | None:
    """`dmq_balancer_param` balances every layer; without it, the layers whose input
    has outlier channels (`qcc-balance` rule 7) unless `auto_balance: false`."""
    if config.balance_alpha is not None:
        return {"alpha": config.balance_alpha}
    if not config.auto_balance:
        return None
    return {"alpha": 0.5, "outlier_ratio": OUTLIER_RATIO}


__all__ = [
    "ConfigError", "SimpleConfig", "CalibrationConfig", "ArqQuantize", "ActivationQuant",
    "OverrideLayer", "OverrideLayerType", "LAYER_TYPES", "ACTIVATION_ALGORITHMS",
    "WEIGHT_BITS", "ACTIVATION_BITS", "OUTLIER_RATIO", "NO_WEIGHT", "layer_type_ops",
    "parse_simple_config", "load_simple_config", "quantizable_layers", "resolve",
]
