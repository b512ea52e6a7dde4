"""The simplified (AMCT-style) config: parsing, errors, precedence, resolved JSON."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from qcc.dialects import qnn
from qcc.ir import Graph
from qcc.quant import config as C
from qcc.quant import config_json
from qcc.quant.config import ConfigError, parse_simple_config, resolve

DATA = Path(__file__).parent / "data"
IFMR = {"search_range_start": 0.7, "search_range_end": 1.3, "search_step": 0.01,
        "max_percentile": 0.999999, "min_percentile": 0.999999}


def model(names=("conv1", "conv2", "pool1", "fc", "attn")):
    """x -> conv1 -> relu1 -> conv2 -> pool1 -> flatten -> fc -> attn(., z)."""
    n = dict(zip(("conv1", "conv2", "pool1", "fc", "attn"), names, strict=True))
    g = Graph()
    x = g.input("x", (1, 3, 8, 8))
    y = g.add(qnn.ConvOp.make(x, g.const(np.ones((4, 3, 3, 3), np.float32), "w1"),
                              pads=(1, 1, 1, 1), name=n["conv1"]))
    y = g.add(qnn.ReluOp.make(y, name="relu1"))
    y = g.add(qnn.ConvOp.make(y, g.const(np.ones((4, 4, 1, 1), np.float32), "w2"),
                              name=n["conv2"]))
    y = g.add(qnn.AvgPoolOp.make(y, kernel=(2, 2), strides=(2, 2), name=n["pool1"]))
    y = g.add(qnn.ReshapeOp.make(y, shape=(1, 64), name="flatten"))
    y = g.add(qnn.DenseOp.make(y, g.const(np.ones((10, 64), np.float32), "w3"),
                               name=n["fc"]))
    y = g.add(qnn.MatmulOp.make(y, g.input("z", (10, 5)), name=n["attn"]))
    return g.finish({"y": y})


def error(text, path="t.cfg"):
    with pytest.raises(ConfigError) as e:
        parse_simple_config(text, path)
    return str(e.value)


# ------------------------------------------------------------------ parsing


def test_parse_full_amct_example():
    cfg = C.load_simple_config(DATA / "full.cfg")
    assert cfg.batch_num == 4 and cfg.activation_offset and cfg.do_fusion
    assert cfg.skip_layers == ("pool1",)
    assert cfg.skip_layer_types == ("BatchMatMul",)
    assert cfg.skip_fusion_layers == ("conv2",)
    assert cfg.common_config.weight == C.ArqQuantize(channel_wise=True, quant_bits=8)
    assert cfg.common_config.activation == C.ActivationQuant("ifmr", 8, True)
    (fc,) = cfg.override_layer_types
    assert fc.layer_type == "InnerProduct" and fc.ops == ("qnn.dense",)
    assert fc.config.weight == C.ArqQuantize(channel_wise=False)
    assert fc.config.activation == C.ActivationQuant(
        "hfmg", asymmetric=False, params=(("num_of_bins", 1024),))
    (conv2,) = cfg.override_layer_configs
    assert conv2.layer_name == "conv2" and conv2.config.weight.quant_bits == 4
    assert dict(conv2.config.activation.params) == {
        **IFMR, "search_range_start": 0.8, "search_range_end": 1.2, "search_step": 0.02}
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.batch_num = 2


def test_prototext_syntax_variants():
    cfg = parse_simple_config(
        "skip_layers: ['a', \"b\"]; skip_layers: \"c\" \"d\",  # adjacent strings join\n"
        "common_config: < kl_quantize { num_of_bins: 0x800 } >\n"
        "batch_num: 3 do_fusion: False activation_offset: 0")
    assert cfg.skip_layers == ("a", "b", "cd")
    assert cfg.common_config.activation == C.ActivationQuant("kl")
    assert (cfg.batch_num, cfg.do_fusion, cfg.activation_offset) == (3, False, False)
    assert parse_simple_config("") == C.SimpleConfig()
    assert parse_simple_config("# only a comment\n") == C.SimpleConfig()


@pytest.mark.parametrize("block, params", [
    ("ifmr_quantize", IFMR),
    ("hfmg_quantize", {"num_of_bins": 4096}),
    ("minmax_quantize", {}),
    ("percentile_quantize", {"max_percentile": 0.99999, "min_percentile": 0.99999}),
    ("kl_quantize", {"num_of_bins": 2048}),
    ("mse_quantize", {}),
])
def test_every_activation_algorithm(block, params):
    cfg = parse_simple_config(f"common_config {{ {block} {{ quant_bits: 16 }} }}")
    act = cfg.common_config.activation
    assert act.algorithm == block.removesuffix("_quantize") and act.quant_bits == 16
    assert act.to_json(True) == {"algorithm": act.algorithm, "bits": 16, "symmetric": False,
                                 "params": params}


# ------------------------------------------------------------------- errors


@pytest.mark.parametrize("text, message", [
    ("batch_num: 1\nbatch_num 2", "t.cfg:2:11: unexpected '2'; expected ':', '<', '{'"),
    ("common_config {\n  arq_quantize { }\n", "t.cfg:2:18: unexpected end of file"),
    ("batch_num: $", "t.cfg:1:12: unexpected character '$'"),
    ("batch_nun: 2", "t.cfg:1:1: unknown field 'batch_nun' in the config; did you mean "
                     "'batch_num'?"),
    ("common_config {\n  ifmr_quantise { }\n}",
     "t.cfg:2:3: unknown algorithm or field 'ifmr_quantise' in common_config; did you "
     "mean 'ifmr_quantize'"),
    ("common_config { hfmg_quantize { num_of_bin: 64 } }",
     "t.cfg:1:33: unknown field 'num_of_bin' in hfmg_quantize; did you mean 'num_of_bins'?"),
    ("batch_num: \"two\"", "t.cfg:1:12: 'batch_num' expects an unsigned integer, got \"two\""),
    ("batch_num: -1", "t.cfg:1:12: 'batch_num' expects an unsigned integer, got -1"),
    ("do_fusion: yes", "t.cfg:1:12: 'do_fusion' expects true or false, got yes"),
    ("skip_layers: conv1", "'skip_layers' expects a quoted string, got conv1"),
    ("skip_layers: '\\N{nope}'", "t.cfg:1:14: bad escape in string"),
    ("common_config: 3", "t.cfg:1:16: 'common_config' is a message"),
    ("batch_num { }", "t.cfg:1:1: 'batch_num' expects an unsigned integer, not a message"),
    ("batch_num: 1\nbatch_num: 2", "t.cfg:2:1: field 'batch_num' is set twice (first on "
                                   "line 1)"),
    ("batch_num: 0", "t.cfg:1:12: batch_num 0 must be >= 1"),
    ("common_config {\n arq_quantize { quant_bits: 3 } }",
     "t.cfg:2:29: quant_bits 3 is out of range for weights (allowed: 4, 5, 6, 7, 8)"),
    ("common_config { arq_quantize { quant_bits: 16 } }", "out of range for weights"),
    ("common_config { hfmg_quantize { quant_bits: 4 } }",
     "t.cfg:1:45: quant_bits 4 is out of range for activations (allowed: 8, 16)"),
    ("common_config { ifmr_quantize { max_percentile: 1.5 } }",
     "t.cfg:1:49: max_percentile 1.5 must be in (0, 1]"),
    ("common_config { percentile_quantize { min_percentile: 0 } }",
     "min_percentile 0.0 must be in (0, 1]"),
    ("common_config { ifmr_quantize { search_range_start: 1.3 search_range_end: 0.7 } }",
     "t.cfg:1:53: search range [1.3, 0.7] needs 0 < start < end"),
    ("common_config { ifmr_quantize { search_step: 0 } }",
     "t.cfg:1:46: search_step 0.0 must be > 0"),
    ("common_config { hfmg_quantize { num_of_bins: 8 } }", "num_of_bins 8 must be >= 16"),
    ("common_config {\n ifmr_quantize {}\n hfmg_quantize {} }",
     "t.cfg:3:2: several activation algorithms in one config: ifmr_quantize (line 2) and "
     "hfmg_quantize"),
    ("skip_layer_types: 'Conv2D'\nskip_layer_types: 'Convolutoin'",
     "t.cfg:2:19: unknown layer type 'Convolutoin'; did you mean 'Convolution'"),
    ("override_layer_types { layer_type: 'innerproduct' calibration_config {} }",
     "t.cfg:1:36: unknown layer type 'innerproduct'; did you mean 'InnerProduct'?"),
    ("override_layer_configs { calibration_config {} }",
     "t.cfg:1:1: override_layer_configs needs 'layer_name'"),
    ("override_layer_types { layer_type: 'Conv' calibration_config {} }\n"
     "override_layer_types { layer_type: 'Convolution' calibration_config {} }",
     "t.cfg:2:1: override_layer_types 'Conv' and 'Convolution' both select qnn.conv"),
    ("override_layer_configs { layer_name: 'a' calibration_config {} }\n"
     "override_layer_configs { layer_name: 'a' calibration_config {} }",
     "t.cfg:2:1: layer 'a' is overridden twice"),
])
def test_errors_name_line_and_column(text, message):
    assert message in error(text)


def test_error_names_the_file():
    with pytest.raises(ConfigError, match=r"unknown_algorithm\.cfg:4:3: unknown algorithm or "
                       r"field 'ifmr_quantise' in common_config; did you mean 'ifmr_quantize'"):
        C.load_simple_config(DATA / "unknown_algorithm.cfg")


def test_dataclasses_validate_without_a_file():
    with pytest.raises(ConfigError, match="quant_bits 9"):
        C.ArqQuantize(quant_bits=9)
    with pytest.raises(ConfigError, match="unknown activation algorithm 'ifrm'; did you "
                                          "mean 'ifmr'"):
        C.ActivationQuant("ifrm")
    with pytest.raises(ConfigError, match="minmax has no parameter 'num_of_bins'"):
        C.ActivationQuant("minmax", params=(("num_of_bins", 64),))
    with pytest.raises(ConfigError, match="num_of_bins must be an integer"):
        C.ActivationQuant("hfmg", params=(("num_of_bins", 64.5),))
    with pytest.raises(ConfigError, match="batch_num"):
        C.SimpleConfig(batch_num=0)


# ------------------------------------------------------------- layer types


@pytest.mark.parametrize("name, ops", [
    ("qnn.conv", ("qnn.conv",)), ("conv_transpose", ("qnn.conv_transpose",)),
    ("Convolution", ("qnn.conv",)), ("Deconvolution", ("qnn.conv_transpose",)),
    ("InnerProduct", ("qnn.dense",)), ("Pooling", ("qnn.avg_pool",)),
    ("Conv", ("qnn.conv",)), ("Gemm", ("qnn.dense",)), ("ConvTranspose", ("qnn.conv_transpose",)),
    ("AveragePool", ("qnn.avg_pool",)), ("MatMul", ("qnn.dense", "qnn.matmul")),
    ("Conv2D", ("qnn.conv",)), ("DepthwiseConv2dNative", ("qnn.conv",)),
    ("Conv2DBackpropInput", ("qnn.conv_transpose",)), ("AvgPool", ("qnn.avg_pool",)),
    ("Conv2d", ("qnn.conv",)), ("Linear", ("qnn.dense",)),
    ("ConvTranspose2d", ("qnn.conv_transpose",)), ("AvgPool2d", ("qnn.avg_pool",)),
    ("matmul", ("qnn.matmul",)),
])
def test_framework_type_names(name, ops):
    assert C.layer_type_ops(name) == ops


def test_every_type_maps_to_layer_ops():
    layer_ops = {op.name for op in qnn.LAYER_OPS}
    assert all(set(ops) <= layer_ops for ops in C.LAYER_TYPES.values())


# ------------------------------------------------------------------ resolve


def test_resolve_defaults():
    out = resolve(model(), None)
    assert out == {
        "version": 1, "batch_num": None, "activation_offset": True, "do_fusion": True,
        "skip_fusion_layers": [], "equalize": False,
        "balance": {"alpha": 0.5, "outlier_ratio": 16.0},
        "layers": {
            name: {"type": t, "quantize": True,
                   "weight": None if t in C.NO_WEIGHT else {
                       "algorithm": "arq", "bits": 8, "channel_wise": True, "symmetric": True},
                   "activation": {"algorithm": "ifmr", "bits": 8, "symmetric": False,
                                  "params": IFMR}}
            for name, t in [("conv1", "qnn.conv"), ("conv2", "qnn.conv"),
                            ("pool1", "qnn.avg_pool"), ("fc", "qnn.dense"),
                            ("attn", "qnn.matmul")]}}
    config_json.validate_json(out, model())


def test_resolve_full_example():
    out = resolve(model(), C.load_simple_config(DATA / "full.cfg"), "m.onnx")
    layers = out["layers"]
    assert (out["batch_num"], out["skip_fusion_layers"]) == (4, ["conv2"])
    assert layers["pool1"] == {"type": "qnn.avg_pool", "quantize": False, "reason": "skip_layers"}
    assert layers["attn"] == {"type": "qnn.matmul", "quantize": False,
                              "reason": "skip_layer_types"}
    assert layers["conv1"]["activation"] == {"algorithm": "ifmr", "bits": 8, "symmetric": False,
                                             "params": IFMR}
    assert layers["conv2"]["weight"] == {"algorithm": "arq", "bits": 4, "channel_wise": True,
                                         "symmetric": True}
    assert layers["conv2"]["activation"]["params"]["search_step"] == 0.02
    assert layers["fc"] == {
        "type": "qnn.dense", "quantize": True,
        "weight": {"algorithm": "arq", "bits": 8, "channel_wise": False, "symmetric": True},
        "activation": {"algorithm": "hfmg", "bits": 8, "symmetric": True,
                       "params": {"num_of_bins": 1024}}}


def test_precedence_layer_over_type_over_common():
    out = resolve(model(), C.load_simple_config(DATA / "precedence.cfg"))["layers"]
    conv1, conv2, fc = out["conv1"], out["conv2"], out["fc"]
    # conv1: the type override's activation block, used whole (start back to 0.7,
    # bits back to 8); no weight block there, so common's arq (6 bits).
    assert conv1["activation"] == {"algorithm": "ifmr", "bits": 8, "symmetric": True,
                                   "params": {**IFMR, "search_step": 0.02}}
    assert conv1["weight"]["bits"] == 6
    # conv2: the layer override beats the type override for both parts.
    assert conv2["weight"] == {"algorithm": "arq", "bits": 4, "channel_wise": False,
                               "symmetric": True}
    assert conv2["activation"] == {"algorithm": "percentile", "bits": 8, "symmetric": False,
                                   "params": {"max_percentile": 0.999,
                                              "min_percentile": 0.99999}}
    # fc: no override, common_config (activation_offset false -> symmetric).
    assert fc["activation"] == {"algorithm": "ifmr", "bits": 16, "symmetric": True,
                                "params": {**IFMR, "search_range_start": 0.5}}
    assert fc["weight"]["bits"] == 6
    assert out["attn"]["weight"] is None and out["attn"]["activation"]["bits"] == 16


def test_skip_beats_overrides_and_matmul_type_selects_dense_and_matmul():
    cfg = parse_simple_config("""
        skip_layers: "conv1"
        skip_layer_types: "Pooling"
        override_layer_configs { layer_name: "conv1" calibration_config { minmax_quantize {} } }
        override_layer_types { layer_type: "MatMul" calibration_config { mse_quantize {} } }
    """)
    out = resolve(model(), cfg)["layers"]
    assert out["conv1"] == {"type": "qnn.conv", "quantize": False, "reason": "skip_layers"}
    assert out["pool1"] == {"type": "qnn.avg_pool", "quantize": False,
                            "reason": "skip_layer_types"}
    assert out["fc"]["activation"]["algorithm"] == "mse"
    assert out["attn"]["activation"]["algorithm"] == "mse"
    assert out["conv2"]["activation"]["algorithm"] == "ifmr"


@pytest.mark.parametrize("text, message", [
    ('skip_layers: "conv3"', "t.cfg:1:14: skip_layers names layer 'conv3' that does not "
                             "exist in m.onnx; did you mean 'conv2' or 'conv1'?"),
    ('\noverride_layer_configs { layer_name: "fc1" calibration_config {} }',
     "t.cfg:2:38: override_layer_configs names layer 'fc1' that does not exist in m.onnx; "
     "did you mean 'fc'?"),
    ('skip_layers: "relu1"', "t.cfg:1:14: skip_layers names 'relu1', a qnn.relu, which is not "
                             "a quantizable layer"),
    ('skip_layers: "zzz"', "does not exist in m.onnx (layers: conv1, conv2, pool1, fc, attn)"),
    ('skip_fusion_layers: "bn9"', "t.cfg:1:21: skip_fusion_layers names layer 'bn9'"),
])
def test_resolve_unknown_layer_suggests_close_names(text, message):
    with pytest.raises(ConfigError) as e:
        resolve(model(), parse_simple_config(text, "t.cfg"), "m.onnx")
    assert message in str(e.value)


def test_layer_names_of_unnamed_and_repeated_ops():
    layers = C.quantizable_layers(model(("", "", "p", "p", "")))
    assert list(layers) == ["conv_0", "conv_1", "p", "p_1", "matmul_4"]


# --------------------------------------------------------------------- JSON


def test_json_round_trip(tmp_path):
    out = resolve(model(), C.load_simple_config(DATA / "full.cfg"))
    path = tmp_path / "quant.json"
    config_json.dump_json(out, path)
    assert config_json.load_json(path) == out
    assert json.loads(path.read_text()) == out
    assert [p.name for p in tmp_path.iterdir()] == ["quant.json"]  # no temporary left


def edited(change):
    cfg = resolve(model(), None)
    change(cfg)
    return cfg


@pytest.mark.parametrize("change, message", [
    (lambda c: c["layers"]["conv1"]["weight"].update(bits=3),
     "layers.conv1.weight.bits: quant_bits 3 is out of range for weights"),
    (lambda c: c["layers"]["conv1"]["weight"].update(bits=True),
     "layers.conv1.weight.bits: expected int, got true"),
    (lambda c: c["layers"]["fc"]["activation"]["params"].update(max_percentile=2),
     "layers.fc.activation.params.max_percentile: max_percentile 2.0 must be in (0, 1]"),
    (lambda c: c["layers"]["fc"]["activation"].update(algorithm="kll"),
     "layers.fc.activation.algorithm: unknown activation algorithm 'kll'; did you mean 'kl'"),
    (lambda c: c["layers"]["fc"].update(wieght=None),
     "layers.fc: unknown key 'wieght'; did you mean 'weight'?"),
    (lambda c: c["layers"]["pool1"].update(weight=c["layers"]["fc"]["weight"]),
     "layers.pool1.weight: qnn.avg_pool has no weight: use null"),
    (lambda c: c.update(version=2), "version: unsupported version 2"),
    (lambda c: c.update(batch_num=0), "batch_num: batch_num 0 must be >= 1"),
    (lambda c: c["layers"].update(conv3=c["layers"].pop("conv2")),
     "layers.conv3: layers names layer 'conv3' that does not exist in the model; did you "
     "mean 'conv2' or 'conv1'?"),
    (lambda c: c["layers"].pop("fc"), "layers: no entry for layer(s) fc"),
    (lambda c: c["layers"]["fc"].update(type="qnn.conv"),
     "layers.fc.type: 'qnn.conv', but the layer is a qnn.dense"),
    (lambda c: c["layers"].update(fc={"type": "qnn.dense", "quantize": False}),
     "layers.fc: missing key 'reason'"),
])
def test_validate_hand_edited_json(change, message):
    with pytest.raises(ConfigError) as e:
        config_json.validate_json(edited(change), model(), "q.json")
    assert str(e.value).startswith("q.json: ") and message in str(e.value)


def test_load_json_reports_syntax_position(tmp_path):
    path = tmp_path / "q.json"
    path.write_text('{"version": 1,\n "layers": }')
    with pytest.raises(ConfigError, match=r"q\.json:2:12: Expecting value"):
        config_json.load_json(path)


def test_equalization_and_balance_switches():
    cfg = parse_simple_config("do_equalization: true\n"
                              "dmq_balancer_param { migration_strength: 0.6 }\n", "t.cfg")
    out = resolve(model(), cfg)
    assert out["equalize"] is True and out["balance"] == {"alpha": 0.6}
    # the default balances outlier inputs only; auto_balance: false turns that off
    assert resolve(model(), None)["balance"] == {"alpha": 0.5, "outlier_ratio": 16.0}
    off = parse_simple_config("auto_balance: false\n", "t.cfg")
    assert resolve(model(), off)["balance"] is None
    with pytest.raises(ConfigError, match="t.cfg:1:15: 'auto_balance' expects true or false"):
        parse_simple_config("auto_balance: 3\n", "t.cfg")
    with pytest.raises(ConfigError, match="t.cfg:1:.*migration_strength 0.9"):
        parse_simple_config("dmq_balancer_param { migration_strength: 0.9 }", "t.cfg")
