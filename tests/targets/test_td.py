"""The target description language: ascend.td round-trips, every error in a .td file
is located and says what was expected, conditions are type-checked and evaluated
without Python's eval, and a custom .td changes legalization with no Python change."""

from __future__ import annotations

import re

import numpy as np
import pytest

from qcc import ir, passes
from qcc.dialects import qnn
from qcc.passes.legalize_ascend import legalize
from qcc.targets import FACTS, TargetError, format_target, layer_facts, load_target, parse_target
from qcc.targets.loader import HERE

ASCEND = (HERE / "ascend.td").read_text()


def test_ascend_round_trips_through_the_printer():
    target = load_target("ascend")
    text = format_target(target)
    again = parse_target(text, "<printed>")
    assert again == target
    assert format_target(again) == text


def test_ascend_states_the_issue_rules():
    t = load_target("ascend")
    assert set(t.frameworks) == {"caffe", "tensorflow", "onnx", "pytorch"}
    assert set(t.frameworks["caffe"]) == {"InnerProduct", "Convolution", "Deconvolution",
                                          "Pooling"}
    assert set(t.frameworks["tensorflow"]) == {
        "MatMul", "Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "BatchMatMulV2",
        "AvgPool", "Conv3D"}
    assert t.frameworks["onnx"] == {"Conv": ("qnn.conv",), "Gemm": ("qnn.dense",),
                                    "ConvTranspose": ("qnn.conv_transpose",),
                                    "MatMul": ("qnn.dense",),
                                    "AveragePool": ("qnn.avg_pool",)}
    assert set(t.frameworks["pytorch"]) == {"Conv1d", "Conv2d", "Conv3d", "Linear",
                                            "ConvTranspose1d", "ConvTranspose2d", "AvgPool2d"}
    conv, dense = t.quant["qnn.conv"], t.quant["qnn.dense"]
    assert conv.weight is not None and conv.weight.per_channel and conv.weight.bits == 8
    assert dense.weight is not None and not dense.weight.per_channel
    assert t.quant["qnn.conv_transpose"].weight.per_channel  # type: ignore[union-attr]
    for q in t.quant.values():
        assert q.activation.bits == 8 and q.activation.asymmetric_allowed
        assert not q.activation.per_channel
    assert [r.name for r in t.rules] == ["framework_table", "inner_product_transpose",
                                         "inner_product_axis", "deconv_group",
                                         "matmul_transposed", "deconv_dilation", "conv3d_dilation",
                                         "padding_zeros", "min_cin"]
    assert [r.name for r in t.rules if r.overridable] == ["min_cin"]
    line = ASCEND[:ASCEND.index("rule min_cin")].count("\n") + 1
    assert t.rule("min_cin").origin == f"{HERE / 'ascend.td'}:{line}:8"


# -------------------------------------------------------------- errors

SYNTAX = [
    ("", "expected 'target'"),
    ("target a {", "unexpected end of file; expected"),
    ("target 1 { }", "expected a name"),
    ("target a { framework onnx { layer Conv qnn.conv; } }", "expected '->'"),
    ("target a { framework onnx { layer Conv -> conv; } }", "expected a layer op"),
    ("target a { rule r \"m\" : qnn.conv when x < < 2 -> float; }", "unexpected '<'"),
    ("target a { rule r \"m\" : qnn.conv when a < b < c -> float; }", "unexpected '<'"),
    ("target a { rule r \"m\" : qnn.conv when groups > 1 float; }", "expected"),
    ("target a { rule r m : qnn.conv when groups > 1 -> float; }", 'expected a "string"'),
    ("target a { rule r \"m\" : qnn.conv when groups > 1 -> float }", "expected ';'"),
    ("target a { quant qnn.conv { weight int8 symmetric } }", "expected ';'"),
    ("target a {\n  rule r \"m\" : qnn.conv when groups $ 1 -> float;\n}",
     "unexpected character '$'"),
]


@pytest.mark.parametrize("text,expected", SYNTAX, ids=[s for _, s in SYNTAX])
def test_every_syntax_error_has_line_and_column(text, expected):
    with pytest.raises(TargetError) as e:
        parse_target(text, "bad.td")
    assert re.match(r"bad\.td:\d+:\d+: ", str(e.value)), str(e.value)
    assert expected in str(e.value)


def test_syntax_error_points_at_the_token():
    with pytest.raises(TargetError, match=r"^bad\.td:2:37: unexpected character '\$'"):
        parse_target("target a {\n  rule r \"m\" : qnn.conv when groups $ 1 -> float;\n}",
                     "bad.td")


def _rule(cond: str, ops: str = "qnn.conv", msg: str = "m") -> str:
    return f'target a {{\n  rule r "{msg}" : {ops}\n    when {cond} -> float;\n}}\n'


SEMANTIC = [
    (_rule("in_chanels <= 16"), "3:10", "unknown fact 'in_chanels' in rule r; did you "
     "mean 'in_channels'"),
    (_rule("colour == 1"), "3:10", "unknown fact 'colour'"),
    (_rule("dilations[0] != 1", "qnn.conv, qnn.dense"), "3:10",
     "fact 'dilations' is not defined for qnn.dense"),
    (_rule("in_channels"), "3:10", "the condition of rule r is a number; expected true or "
     "false"),
    (_rule("dilations != 1"), "3:10", "a list of booleans; expected true or false (use "
     "any(...) or all(...))"),
    (_rule('pad_mode < 3'), "3:10", "'<' needs numbers, got a string and a number"),
    (_rule("dilations == strides"), "3:10", "not two lists"),
    (_rule("groups in 3"), "3:10", "'in' needs a value and a list of its type"),
    (_rule("not groups"), "3:10", "not needs a boolean"),
    (_rule("groups or has_bias"), "3:10", "'or' needs booleans, got a number"),
    (_rule("has_bias and dilations == 1"), "3:10", "'and' needs booleans, got a list of "
     "booleans"),
    (_rule("mean(dilations) > 1"), "3:10", "unknown function 'mean'"),
    (_rule("any(dilations)"), "3:10", "any needs a list of booleans"),
    (_rule("groups[0] == 1"), "3:10", "cannot index a number"),
    (_rule('attr(pad_mode) == "x"'), "3:10", "attr takes a name and a default"),
    (_rule("[1, true] == groups"), "3:10", "one scalar type"),
    (_rule("groups > 1", "qnn.convolution"), "2:16", "'qnn.convolution' is not a layer op"),
    (_rule("groups > 1", msg="Cin {in_chanels}"), "2:10", "unknown fact 'in_chanels' in "
     "rule r's message"),
    ('target a { rule r "m" : qnn.conv when groups > 1 -> quantize; }', "1:53",
     "unknown action 'quantize'; expected float"),
    ('target a { rule r "m" : qnn.conv when groups > 1 -> float;\n'
     ' rule r "m" : qnn.conv when groups > 2 -> float; }', "2:7",
     "rule r is declared twice (first on line 1)"),
    ("target a { framework onnx { layer Conv -> qnn.conv; } }", "1:43",
     "qnn.conv is in a framework table but has no `quant qnn.conv { ... }` block"),
    ("target a { framework onnx { layer Conv -> qnn.conv; layer Conv -> qnn.conv; } }",
     "1:59", "layer Conv is listed twice in framework onnx"),
    ("target a { quant qnn.avg_pool { weight int8; activation int8; } }", "1:33",
     "qnn.avg_pool has no weight"),
    ("target a { quant qnn.conv { weight int8; activation uint8; } }", "1:53",
     "expected a type like int8, got 'uint8'"),
    ("target a { quant qnn.conv { weight int8; activation int8 per_channel; } }", "1:58",
     "unknown activation flag 'per_channel'; expected symmetric, asymmetric_allowed, "
     "per_tensor"),
    ("target a { quant qnn.conv { weight int3; activation int8; } }", "1:36",
     "weight bits must be one of 4, 5, 6, 7, 8, got 3"),
    ("target a { quant qnn.conv { activation int8; } }", "1:12",
     "quant qnn.conv needs a `weight intN ...;` line"),
    ("target a { quant qnn.conv { weight int8 symmetric asymmetric_allowed; "
     "activation int8; } }", "1:41", "symmetric and asymmetric_allowed exclude each other"),
    ("target a { quant qnn.dense { weight int8; bias int32; bias int32; activation int8; } }",
     "1:55", "bias is given twice for qnn.dense"),
    ("target a { quant qnn.dense { scale int8; } }", "1:30", "unknown tensor 'scale'; "
     "expected weight, activation or bias"),
]


@pytest.mark.parametrize("text,where,expected", SEMANTIC, ids=[s for _, _, s in SEMANTIC])
def test_semantic_errors_are_located(text, where, expected):
    with pytest.raises(TargetError) as e:
        parse_target(text, "t.td")
    assert str(e.value).startswith(f"t.td:{where}: "), str(e.value)
    assert expected in str(e.value)


def test_unknown_fact_lists_the_known_ones():
    with pytest.raises(TargetError) as e:
        parse_target(_rule("colour == 1"), "t.td")
    for fact in FACTS:
        assert fact in str(e.value)


def test_unknown_target_and_missing_file(tmp_path):
    with pytest.raises(TargetError, match="unknown target 'ascnd'; did you mean 'ascend'"):
        load_target("ascnd")
    with pytest.raises(TargetError, match="cannot read target description"):
        load_target(tmp_path / "none.td")


# ---------------------------------------------------------- evaluation


def _conv(shape=(1, 32, 4, 4), dilations=(1, 1), **attrs):
    g = ir.Graph()
    x = g.input("x", shape)
    w = g.const(np.zeros((8, shape[1], *(1,) * (len(shape) - 2)), np.float32))
    op = g.op(qnn.ConvOp.make(x, w, name="c", dilations=dilations))
    for k, v in attrs.items():
        op.attributes[k] = v
    g.finish([op.results[0]])
    return op


def _fires(cond: str, op, ops: str = "qnn.conv") -> bool:
    target = parse_target(_rule(cond, ops), "t.td")
    return target.rules[0].fires(layer_facts(op, target))


@pytest.mark.parametrize("cond,want", [
    ("in_channels == 32 and out_channels == 8 and groups == 1", True),
    ("spatial_dims == 2 and rank == 4 and kernel[0] == [1, 2][1]", False),
    ("kernel[0] * kernel[1] == 1 and len(kernel) == 2 and sum(pads) == 0", True),
    ("dilations[-1] == 3 and dilations[0] == 1", True),
    ("any(dilations != 1) and not all(dilations != 1)", True),
    ("max(dilations) - min(dilations) == 2 and in_channels / 8 == 4 and 7 % 4 == 3", True),
    ('pad_mode in ["zeros", "reflect"] and pad_mode not in ["circular"]', True),
    ('source == "" and framework == "" and source_op == "" and not in_framework_table',
     True),
    ("spatial_dims == 3 and dilations[2] != 1", False),  # short-circuit: no index error
    ('attr("name", "") == "c" and attr("missing", 7) == 7', True),
    ("-in_channels < 0 and 1.5 < 2", True),
])
def test_conditions_evaluate(cond, want):
    assert _fires(cond, _conv(dilations=(1, 3))) is want


def test_an_index_out_of_range_names_the_rule():
    with pytest.raises(TargetError, match=r"t\.td:2:8: rule r: dilations\[2\]: index 2 is "
                       r"out of range \(dilations = \[1, 1\]\)"):
        _fires("dilations[2] != 1", _conv())


def test_attr_of_the_wrong_type_is_an_error():
    with pytest.raises(TargetError, match="not of the default's type"):
        _fires('attr("name", 0) == 1', _conv())


def test_printer_keeps_precedence():
    cond = ("not (has_bias or has_bias) and (groups + 1) * 2 <= -(groups - 3) and "
            "(groups == 1) == true and kernel[-1] - (1 - 2) > 0")
    t = parse_target(_rule(cond))
    assert str(t.rules[0].condition) == cond
    assert parse_target(format_target(t)) == t


# --------------------------------------------- a custom target, no Python

CUSTOM = ASCEND.replace(
    "layer AveragePool -> qnn.avg_pool;",
    "layer AveragePool -> qnn.avg_pool;\n    layer Einsum -> qnn.matmul;",
).replace(
    "  quant qnn.avg_pool {",
    "  quant qnn.matmul { activation int8 per_tensor; }\n  quant qnn.avg_pool {",
).replace(
    "target ascend {",
    'target custom {\n  rule no_stride_2 "strides {strides}: stride 2 runs faster in float"\n'
    "    : qnn.conv when any(strides == 2) -> float;",
)

MODEL = """
builtin.module attributes {qcc.framework = "onnx"} {
  func.func @main(%x: tensor<1x32x4x4xf32>, %a: tensor<2x32xf32>, %b: tensor<32x32xf32>) -> (tensor<1x32x2x2xf32>, tensor<2x32xf32>) {
    %w = qnn.constant dense<0.5> : tensor<32x32x1x1xf32>
    %0 = qnn.conv %x, %w {name = "s2", source = "onnx.Conv", strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x32x4x4xf32>, tensor<32x32x1x1xf32>) -> tensor<1x32x2x2xf32>
    %1 = qnn.matmul %a, %b {name = "einsum", source = "onnx.Einsum"} : (tensor<2x32xf32>, tensor<32x32xf32>) -> tensor<2x32xf32>
    func.return %0, %1 : tensor<1x32x2x2xf32>, tensor<2x32xf32>
  }
}
"""


def _float_attrs(module) -> dict[str, str]:
    return {op.attributes["name"].data: op.attributes["qcc.float"].data
            for op in module.walk() if "qcc.float" in op.attributes}


def test_a_custom_td_changes_legalization_without_python(tmp_path):
    path = tmp_path / "custom.td"
    path.write_text(CUSTOM)
    module = ir.parse_module(MODEL)
    cfg, _ = legalize(module, None, "ascend")
    assert cfg["layers"]["s2"]["quantize"]
    assert cfg["layers"]["einsum"]["reason"].startswith("framework_table: onnx.Einsum")
    cfg, notes = legalize(module, None, load_target(path))
    assert _float_attrs(module) == {
        "s2": "no_stride_2: strides [2, 2]: stride 2 runs faster in float"}
    assert cfg["layers"]["einsum"]["quantize"] and cfg["layers"]["einsum"]["weight"] is None
    assert notes == ["legalize: s2: stays float: no_stride_2: strides [2, 2]: stride 2 runs "
                     "faster in float",  # and the custom quant block: symmetric activations
                     "legalize: einsum: activation symmetric false -> true (target custom: "
                     "qnn.matmul)"]
    module = passes.run(ir.parse_module(MODEL), f'qcc-legalize-ascend{{target="{path}"}}')
    assert _float_attrs(module) == {
        "s2": "no_stride_2: strides [2, 2]: stride 2 runs faster in float"}
