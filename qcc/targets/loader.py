"""Target descriptions: parse a `.td` file (grammar in `td.lark`) into a frozen `Target`.

A target states as data what a device quantizes (`qcc/targets/ascend.td`)::

    target ascend {
      framework onnx { layer Conv -> qnn.conv; layer MatMul -> qnn.dense; }
      quant qnn.conv { weight int8 symmetric per_channel;
                       activation int8 per_tensor asymmetric_allowed; bias int32; }
      rule min_cin "Cin = {in_channels} <= 16" : qnn.conv, qnn.dense
        when in_channels <= 16 -> float overridable;
    }

- `framework F { layer OP -> qnn.x, ...; }`: framework F's op OP (a layer's `source`
  attribute is "F.OP") quantizes when it imports as one of the listed layer ops.
- `quant qnn.x { ... }`: `weight` / `activation` / `bias`, each `intN` and flags:
  `symmetric` (the default) or `asymmetric_allowed`, `per_tensor` (the default) or
  `per_channel` (weights only). Ops with weights need a `weight` line; every op in
  a framework table needs a `quant` block.
- `rule NAME "message" : OPS when CONDITION -> float [overridable];`: a selected
  layer (`*`: every layer op) for which CONDITION holds stays float. `overridable`
  rules can be lifted by the user by name. `{fact}` in the message is replaced by
  the layer's value (an empty string prints as "(unknown)").

Conditions: literals (`16`, `"zeros"`, `true`, `[1, 2]`), facts of the layer
(`expr.FACTS`: op source framework source_op in_framework_table rank in_channels
out_channels has_bias groups spatial_dims kernel strides dilations pads pad_mode
transpose_a transpose_b adj_x adj_y), `l[i]`
(negative i counts from the end), `not and or`, `== != < <= > >=`, `in` / `not in`
a list, `+ - * / %`; a comparison or arithmetic of a list with a scalar applies to
each element (`dilations != 1` is a list of booleans); functions `any all len min
max sum` of a list and `attr("name", default)`, the layer's attribute or property
`name` (the default's type; the default when absent). Conditions are type-checked
when the file loads, and a fact must exist for every op the rule selects.
`and` / `or` short-circuit, so `spatial_dims == 3 and dilations[2] != 1` is safe.
"""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from qcc.dialects import qnn
from qcc.targets.expr import (
    FACTS,
    FUNCTIONS,
    TYPE_NAMES,
    WEIGHTED,
    Binary,
    Call,
    Const,
    Expr,
    Fact,
    Index,
    ListOf,
    TargetError,
    Unary,
    evaluate,
)

HERE = Path(__file__).parent
LAYER_OPS = tuple(op.name for op in qnn.LAYER_OPS)
ACTIONS = ("float",)


# ---------------------------------------------------------------- target


@dataclass(frozen=True)
class TensorSpec:
    """How one tensor of a layer quantizes."""

    bits: int
    per_channel: bool = False
    asymmetric_allowed: bool = False


@dataclass(frozen=True)
class QuantSpec:
    weight: TensorSpec | None
    activation: TensorSpec
    bias_bits: int | None = None  # bias = round(b / (scale_d * scale_w)) in int<bias_bits>


@dataclass(frozen=True)
class Rule:
    name: str
    message: str
    ops: tuple[str, ...]
    condition: Expr
    action: str = "float"
    overridable: bool = False
    origin: str = field(default="", compare=False)  # path:line:col of the rule

    def fires(self, facts: Mapping[str, object]) -> bool:
        """Whether the condition holds for a layer (TargetError naming the rule if it
        cannot be evaluated)."""
        if facts["op"] not in self.ops:
            return False
        try:
            return bool(evaluate(self.condition, facts))
        except TargetError as e:
            raise TargetError(f"{self.origin}: rule {self.name}: {e}") from None

    def explain(self, facts: Mapping[str, object]) -> str:
        """The message with its `{fact}` placeholders filled in."""
        def show(m: re.Match) -> str:
            v = facts[m.group(1)]
            if isinstance(v, bool):
                return "true" if v else "false"
            return str(v) if v != "" else "(unknown)"

        return re.sub(r"\{(\w+)\}", show, self.message)


@dataclass(frozen=True)
class Target:
    name: str
    frameworks: Mapping[str, Mapping[str, tuple[str, ...]]]
    quant: Mapping[str, QuantSpec]
    rules: tuple[Rule, ...]
    path: str = field(default="", compare=False)

    def lists(self, framework: str, source_op: str, op: str) -> bool:
        """Whether framework op `source_op` imported as `op` is in the table; with no
        source op, whether `op` has any mapping (in `framework`'s table if known)."""
        if source_op:
            return op in self.frameworks.get(framework, {}).get(source_op, ())
        tables = [self.frameworks.get(framework, {})] if framework else self.frameworks.values()
        return any(op in ops for table in tables for ops in table.values())

    def rule(self, name: str) -> Rule:
        for r in self.rules:
            if r.name == name:
                return r
        names = [r.name for r in self.rules]
        raise TargetError(f"target {self.name} has no rule '{name}'" + _close(
            name, names, f" (rules: {', '.join(names) or 'none'})"))


# ---------------------------------------------------------------- parser


@cache
def _parser() -> Lark:
    return Lark((HERE / "td.lark").read_text(), parser="lalr", propagate_positions=True,
                maybe_placeholders=True)


def _close(name: str, candidates: Iterable[str], otherwise: str = "") -> str:
    near = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else otherwise


_TERMS = {"NAME": "a name", "OP": "a layer op (qnn.conv)", "NUMBER": "a number",
          "STRING": 'a "string"', "$END": "end of file"}


def _syntax(e: UnexpectedInput) -> str:
    if isinstance(e, UnexpectedCharacters):
        return f"unexpected character {e.char!r}"
    assert isinstance(e, UnexpectedToken)

    def show(t: str) -> str:
        if t in _TERMS:
            return _TERMS[t]
        try:
            return repr(_parser().get_terminal(t).pattern.value)
        except KeyError:
            return t

    what = "end of file" if e.token.type == "$END" else repr(str(e.token))
    return f"unexpected {what}; expected {', '.join(sorted(map(show, e.expected)))}"


class _Loader:
    def __init__(self, path: str) -> None:
        self.path = path

    def error(self, at: Tree | Token, message: str) -> TargetError:
        line, col = (at.line, at.column) if isinstance(at, Token) else (at.meta.line,
                                                                          at.meta.column)
        return TargetError(f"{self.path}:{line}:{col}: {message}")

    def target(self, tree: Tree) -> Target:
        name, *items = tree.children
        frameworks: dict[str, dict[str, tuple[str, ...]]] = {}
        quant: dict[str, QuantSpec] = {}
        rules: list[Rule] = []
        first: dict[tuple[str, str], Tree | Token] = {}  # where each name was declared
        mapped: dict[str, Token] = {}  # qnn op -> its first framework mapping
        for item in items:
            key = (item.data, str(item.children[0]))
            if key in first:
                prev = first[key]
                line = prev.line if isinstance(prev, Token) else prev.meta.line
                raise self.error(item.children[0], f"{key[0]} {key[1]} is declared twice "
                                 f"(first on line {line})")
            first[key] = item.children[0]
            if item.data == "framework":
                frameworks[key[1]] = self.framework(item, mapped)
            elif item.data == "quant":
                quant[key[1]] = self.quant(item)
            else:
                rules.append(self.rule(item))
        for op, token in mapped.items():
            if op not in quant:
                raise self.error(token, f"{op} is in a framework table but has no "
                                 f"`quant {op} {{ ... }}` block")
        return Target(str(name), MappingProxyType({k: MappingProxyType(v) for k, v in
                                                   frameworks.items()}),
                      MappingProxyType(quant), tuple(rules), self.path)

    def layer_op(self, token: Token) -> str:
        if token not in LAYER_OPS:
            raise self.error(token, f"'{token}' is not a layer op" + _close(
                str(token), LAYER_OPS, f" (expected one of {', '.join(LAYER_OPS)})"))
        return str(token)

    def ops(self, tree: Tree) -> tuple[str, ...]:
        out = []
        for token in tree.children:
            assert isinstance(token, Token)
            if self.layer_op(token) in out:
                raise self.error(token, f"{token} is listed twice")
            out.append(str(token))
        return tuple(out)

    def framework(self, tree: Tree, mapped: dict[str, Token]) -> dict[str, tuple[str, ...]]:
        table: dict[str, tuple[str, ...]] = {}
        for layer in tree.children[1:]:
            name, ops = layer.children
            if name in table:
                raise self.error(name, f"layer {name} is listed twice in framework "
                                 f"{tree.children[0]}")
            table[str(name)] = self.ops(ops)
            for token in ops.children:
                assert isinstance(token, Token)
                mapped.setdefault(str(token), token)
        return table

    def quant(self, tree: Tree) -> QuantSpec:
        op, *lines = tree.children
        assert isinstance(op, Token)
        self.layer_op(op)
        specs: dict[str, TensorSpec | int] = {}
        for line in lines:
            kind, dtype, *flags = line.children
            assert isinstance(kind, Token) and isinstance(dtype, Token)
            if kind not in ("weight", "activation", "bias"):
                raise self.error(kind, f"unknown tensor '{kind}'; expected weight, "
                                 "activation or bias")
            if kind in specs:
                raise self.error(kind, f"{kind} is given twice for {op}")
            if kind == "weight" and op not in WEIGHTED:
                raise self.error(kind, f"{op} has no weight")
            m = re.fullmatch(r"int(\d+)", dtype)
            if m is None:
                raise self.error(dtype, f"expected a type like int8, got '{dtype}'")
            bits = int(m.group(1))
            allowed = {"weight": (4, 5, 6, 7, 8), "activation": (8, 16),
                       "bias": (8, 16, 32, 64)}[kind]
            if bits not in allowed:
                raise self.error(dtype, f"{kind} bits must be one of "
                                 f"{', '.join(map(str, allowed))}, got {bits}")
            specs[kind] = bits if kind == "bias" else self.tensor(str(kind), bits, flags)
        for kind in ("weight", "activation"):
            if kind not in specs and (kind == "activation" or op in WEIGHTED):
                raise self.error(tree, f"quant {op} needs a `{kind} intN ...;` line")
        w, a, b = specs.get("weight"), specs["activation"], specs.get("bias")
        assert isinstance(a, TensorSpec) and not isinstance(w, int) and not isinstance(
            b, TensorSpec)
        return QuantSpec(w, a, b)

    def tensor(self, kind: str, bits: int, flags: list[Token | Tree]) -> TensorSpec:
        allowed = ["symmetric", "asymmetric_allowed", "per_tensor"] + (
            ["per_channel"] if kind == "weight" else [])
        for flag in flags:
            if flag not in allowed:
                raise self.error(flag, f"unknown {kind} flag '{flag}'; expected "
                                 f"{', '.join(allowed)}")
        for pair in (("symmetric", "asymmetric_allowed"), ("per_tensor", "per_channel")):
            if set(pair) <= set(flags):
                raise self.error(flags[0], f"{pair[0]} and {pair[1]} exclude each other")
        if kind == "weight" and "asymmetric_allowed" in flags:
            raise self.error(flags[0], "weights quantize symmetrically")
        return TensorSpec(bits, "per_channel" in flags, "asymmetric_allowed" in flags)

    def rule(self, tree: Tree) -> Rule:
        name, message, selection, cond, action, overridable = tree.children
        assert isinstance(name, Token)
        ops = LAYER_OPS if selection.data == "all_ops" else self.ops(selection.children[0])
        text = ast.literal_eval(str(message))
        for m in re.finditer(r"\{(\w+)\}", text):
            self.fact(message, m.group(1), ops, f"rule {name}'s message")
        if action not in ACTIONS:
            raise self.error(action, f"unknown action '{action}'; expected "
                             f"{', '.join(ACTIONS)}")
        expr, kind = self.expr(cond, ops, str(name))
        if kind != "bool":
            raise self.error(cond, f"the condition of rule {name} is {TYPE_NAMES[kind]}; "
                             "expected true or false" + (
                                 " (use any(...) or all(...))" if kind == "bool[]" else ""))
        return Rule(str(name), text, ops, expr, str(action), overridable is not None,
                    f"{self.path}:{name.line}:{name.column}")

    def fact(self, at: Tree | Token, name: str, ops: tuple[str, ...], where: str) -> str:
        if name not in FACTS:
            raise self.error(at, f"unknown fact '{name}' in {where}" + _close(
                name, FACTS, f" (facts: {', '.join(FACTS)})"))
        kind, has, _ = FACTS[name]
        lacking = [op for op in ops if has is not None and op not in has]
        if lacking:
            raise self.error(at, f"fact '{name}' is not defined for {', '.join(lacking)} "
                             f"(it is for {', '.join(has or ())}); select fewer ops")
        return kind

    def expr(self, t: Tree | Token, ops: tuple[str, ...], rule: str) -> tuple[Expr, str]:
        """The expression of parse tree `t` and its type (TargetError if ill-typed)."""
        def fail(message: str):
            return self.error(t, f"rule {rule}: {message}")

        if isinstance(t, Token):  # a bare token cannot occur: atoms are aliased trees
            raise fail(f"unexpected {t}")
        kids = [c for c in t.children if c is not None]
        if t.data == "number":
            s = str(kids[0])
            return Const(float(s) if "." in s else int(s)), "num"
        if t.data == "string":
            return Const(ast.literal_eval(str(kids[0]))), "str"
        if t.data in ("true", "false"):
            return Const(t.data == "true"), "bool"
        if t.data == "fact":
            return Fact(str(kids[0])), self.fact(kids[0], str(kids[0]), ops, f"rule {rule}")
        if t.data == "call":
            return self.call(t, str(kids[0]), kids[1:], ops, rule)
        typed = [self.expr(c, ops, rule) for c in kids]
        exprs, kinds = [e for e, _ in typed], [k for _, k in typed]
        if t.data == "list":
            if not kinds or len(set(kinds)) != 1 or kinds[0].endswith("[]"):
                raise fail("a list literal needs one or more items of one scalar type")
            return ListOf(tuple(exprs)), kinds[0] + "[]"
        if t.data == "index":
            if not kinds[0].endswith("[]") or kinds[1] != "num":
                raise fail(f"cannot index {TYPE_NAMES[kinds[0]]} by {TYPE_NAMES[kinds[1]]}")
            return Index(*exprs), kinds[0][:-2]
        if t.data in ("not_", "neg"):
            want = "bool" if t.data == "not_" else "num"
            if kinds[0] != want:
                raise fail(f"{'not' if want == 'bool' else '-'} needs {TYPE_NAMES[want]}, "
                           f"got {TYPE_NAMES[kinds[0]]}")
            return Unary("not" if want == "bool" else "-", exprs[0]), want
        if t.data in ("or_test", "and_test"):
            bad = [k for k in kinds if k != "bool"]
            if bad:
                raise fail(f"'{t.data[:-5]}' needs booleans, got {TYPE_NAMES[bad[0]]}")
            out = exprs[0]
            for e in exprs[1:]:
                out = Binary(t.data[:-5], out, e)
            return out, "bool"
        return self.binary(t.data, exprs, kinds, fail)

    def binary(self, data: str, exprs: list[Expr], kinds: list[str], fail) -> tuple[Expr, str]:
        op = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=",
              "in_": "in", "not_in": "not in", "add": "+", "sub": "-", "mul": "*",
              "div": "/", "mod": "%"}[data]
        (a, b), expr = kinds, Binary(op, *exprs)
        if op in ("in", "not in"):
            if a.endswith("[]") or b != a + "[]":
                raise fail(f"'{op}' needs a value and a list of its type, got "
                           f"{TYPE_NAMES[a]} and {TYPE_NAMES[b]}")
            return expr, "bool"
        if a.endswith("[]") and b.endswith("[]"):
            raise fail(f"'{op}' applies to a list and a scalar, not two lists")
        sa, sb = a.removesuffix("[]"), b.removesuffix("[]")
        numeric = op not in ("==", "!=")
        if sa != sb or numeric and sa != "num":
            raise fail(f"'{op}' needs {'numbers' if numeric else 'operands of one type'}, "
                       f"got {TYPE_NAMES[a]} and {TYPE_NAMES[b]}")
        result = "num" if op in ("+", "-", "*", "/", "%") else "bool"
        return expr, result + ("[]" if a.endswith("[]") or b.endswith("[]") else "")

    def call(self, t: Tree, func: str, args: list, ops: tuple[str, ...],
             rule: str) -> tuple[Expr, str]:
        if func == "attr":
            if len(args) != 2 or args[0].data != "string" or args[1].data not in (
                    "string", "number", "true", "false"):
                raise self.error(t, f'rule {rule}: attr takes a name and a default, '
                                 'attr("pad_mode", "zeros")')
            (name, _), (default, kind) = (self.expr(a, ops, rule) for a in args)
            return Call("attr", (name, default)), kind
        if func not in FUNCTIONS:
            raise self.error(t.children[0], f"rule {rule}: unknown function '{func}'" +
                             _close(func, [*FUNCTIONS, "attr"],
                                    f" (functions: {', '.join(FUNCTIONS)}, attr)"))
        if len(args) != 1:
            raise self.error(t, f"rule {rule}: {func} takes one list")
        arg, kind = self.expr(args[0], ops, rule)
        want, result = FUNCTIONS[func]
        if not kind.endswith("[]") or want != "[]" and kind != want:
            raise self.error(t, f"rule {rule}: {func} needs "
                             f"{TYPE_NAMES.get(want, 'a list')}, got {TYPE_NAMES[kind]}")
        return Call(func, (arg,)), result


def parse_target(text: str, path: str = "<target>") -> Target:
    """Parse and check a target description (TargetError `path:line:col: ...`)."""
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as e:
        raise TargetError(f"{path}:{e.line}:{e.column}: {_syntax(e)}") from None
    top = tree.children[0]
    assert isinstance(top, Tree)
    return _Loader(path).target(top)


def load_target(name: str | Path) -> Target:
    """A target by name (`qcc/targets/<name>.td`) or by the path of a `.td` file."""
    text = str(name)
    if text.endswith(".td") or "/" in text:
        try:
            return parse_target(Path(text).read_text(), text)
        except OSError as e:
            raise TargetError(f"{text}: cannot read target description: {e.strerror}") from None
    return _builtin(text)


@cache
def _builtin(name: str) -> Target:
    known = sorted(p.stem for p in HERE.glob("*.td"))
    if name not in known:
        raise TargetError(f"unknown target '{name}'" + _close(
            name, known, f" (targets: {', '.join(known)}; or give the path of a .td file)"))
    target = parse_target((HERE / f"{name}.td").read_text(), str(HERE / f"{name}.td"))
    if target.name != name:
        raise TargetError(f"{target.path}: declares target {target.name}, expected {name}")
    return target


# ---------------------------------------------------------------- printer


def _tensor_text(kind: str, spec: TensorSpec) -> str:
    flags = ["asymmetric_allowed" if spec.asymmetric_allowed else "symmetric",
             "per_channel" if spec.per_channel else "per_tensor"]
    return f"{kind} int{spec.bits} {' '.join(flags)};"


def format_target(target: Target) -> str:
    """`target` as .td text (parses back to an equal Target)."""
    lines = [f"target {target.name} {{"]
    for fw, table in target.frameworks.items():
        lines.append(f"  framework {fw} {{")
        lines += [f"    layer {op} -> {', '.join(ops)};" for op, ops in table.items()]
        lines.append("  }")
    for op, q in target.quant.items():
        body = ([_tensor_text("weight", q.weight)] if q.weight else []) + [
            _tensor_text("activation", q.activation)] + (
            [f"bias int{q.bias_bits};"] if q.bias_bits else [])
        lines.append(f"  quant {op} {{ {' '.join(body)} }}")
    for r in target.rules:
        ops = "*" if r.ops == LAYER_OPS else ", ".join(r.ops)
        lines.append(f"  rule {r.name} {Const(r.message)}\n    : {ops} when {r.condition} "
                     f"-> {r.action}{' overridable' if r.overridable else ''};")
    return "\n".join(lines + ["}"]) + "\n"


__all__ = ["Target", "QuantSpec", "TensorSpec", "Rule", "parse_target", "load_target",
           "format_target"]
