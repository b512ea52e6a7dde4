"""qcc-legalize-ascend on the digits example and the lit cases: layers the target
cannot run stay float (attribute, remark), the others get the target's quant spec
(attribute), the config read back from the IR stays valid, the config file is never
rewritten, and the float computation never changes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from qcc import ir, passes
from qcc.dialects import qnn, quant
from qcc.examples import digits
from qcc.frontends.onnx import load_onnx
from qcc.passes import remarks
from qcc.passes.insert_quant import insert_observers
from qcc.passes.legalize_ascend import legalize
from qcc.quant import config as qconfig
from qcc.quant import config_json
from qcc.runtime import run
from qcc.targets import TargetError, load_target

LIT = Path(__file__).parents[1] / "lit" / "passes"
CASES = [c for c in (LIT / "qcc-legalize-ascend.mlir").read_text().split("// -----")
         if "func.func" in c]
MIN_CIN = "min_cin: Cin = {} <= 16: no speed gain, accuracy risk"


def _digits():
    return load_onnx(digits()[0])


def _float_attrs(module) -> dict[str, str]:
    return {op.attributes["name"].data: op.attributes["qcc.float"].data
            for op in module.walk() if "qcc.float" in op.attributes}


def _inputs(module, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    fn = ir.main_func(module)
    names, _ = ir.io_names(fn)
    return {n: rng.standard_normal(a.type.get_shape()).astype(np.float32)
            for n, a in zip(names, fn.body.block.args, strict=True)}


def test_digits_conv1_stays_float_by_min_cin():
    module = _digits()
    cfg, notes = legalize(module, None, "ascend")
    assert config_json.validate_json(cfg, module) is cfg
    layers = cfg["layers"]
    assert layers["conv1"] == {"type": "qnn.conv", "quantize": False,
                               "reason": MIN_CIN.format(1)}
    assert layers["conv2"]["reason"] == MIN_CIN.format(16)  # Cin = 16 is <= 16 too
    assert layers["conv3"]["quantize"] and layers["conv3"]["weight"]["channel_wise"]
    assert layers["fc"]["quantize"] and not layers["fc"]["weight"]["channel_wise"]
    for entry in (layers["conv3"], layers["fc"]):
        assert entry["weight"]["bits"] == 8 and entry["weight"]["symmetric"]
        assert entry["activation"]["bits"] == 8 and not entry["activation"]["symmetric"]
    assert _float_attrs(module) == {"conv1": MIN_CIN.format(1), "conv2": MIN_CIN.format(16)}
    assert notes == [f"legalize: conv1: stays float: {MIN_CIN.format(1)}",
                     f"legalize: conv2: stays float: {MIN_CIN.format(16)}",
                     "legalize: fc: weight channel_wise true -> false (target ascend: "
                     "qnn.dense)"]


def test_digits_override_quantizes_conv1():
    module = _digits()
    cfg, notes = legalize(module, None, load_target("ascend"), overrides=["min_cin"])
    config_json.validate_json(cfg, module)
    assert all(e["quantize"] for e in cfg["layers"].values())
    assert not _float_attrs(module)
    assert f"legalize: conv1: quantized anyway (override): {MIN_CIN.format(1)}" in notes


def test_the_input_config_is_not_modified_and_user_skips_stay():
    module = _digits()
    cfg = qconfig.resolve(module, qconfig.SimpleConfig(skip_layers=("conv3",)))
    before = json.dumps(cfg)
    out, _ = legalize(module, cfg, "ascend")
    assert json.dumps(cfg) == before
    assert out["layers"]["conv3"] == {"type": "qnn.conv", "quantize": False,
                                      "reason": "skip_layers"}
    assert "conv3" not in _float_attrs(module)


def test_target_spec_replaces_bits_and_symmetry():
    module = _digits()
    cfg = qconfig.resolve(module, qconfig.SimpleConfig(common_config=qconfig.CalibrationConfig(
        qconfig.ArqQuantize(channel_wise=False, quant_bits=4),
        qconfig.ActivationQuant(quant_bits=16))))
    out, notes = legalize(module, cfg, "ascend")
    conv3 = out["layers"]["conv3"]
    assert (conv3["weight"]["bits"], conv3["weight"]["channel_wise"]) == (8, True)
    assert conv3["activation"]["bits"] == 8
    assert "legalize: conv3: weight bits 4 -> 8 (target ascend: qnn.conv)" in notes
    assert "legalize: conv3: activation bits 16 -> 8 (target ascend: qnn.conv)" in notes


def test_float_layers_get_no_observers():
    module = _digits()
    cfg, _ = legalize(module, None, "ascend")
    observed = {op.id.data.split(".")[0] for op in insert_observers(module, cfg)}
    assert observed == {"conv3", "fc"}
    assert len([op for op in module.walk() if isinstance(op, quant.ObserveOp)]) == 4


def test_pass_only_annotates_digits():
    module = _digits()
    data = _inputs(module)
    want = run(module, data)
    before = ir.print_module(module)
    passes.run(module, "qcc-legalize-ascend")
    remarks.current().take()
    got = run(module, data)
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    strip = re.sub(r', qcc\.(float = "[^"]*"|legal = \{(?:[^{}]|\{[^{}]*\})*\})', "",
                   ir.print_module(module))
    assert strip == before


@pytest.mark.parametrize("case", CASES, ids=lambda c: re.search(r"@(\w+)", c).group(1))
def test_lit_case_same_outputs_before_and_after(case):
    module = ir.parse_module(re.sub(r"^(\s*)func\.func @\w+", r"\1func.func @main", case,
                                    count=1, flags=re.M))
    data = _inputs(module)
    want = run(module, data)
    passes.run(module, "qcc-legalize-ascend")
    remarks.current().take()
    got = run(module, data)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def _legal_attrs(module) -> dict[str, str]:
    return {op.attributes["name"].data: str(op.attributes["qcc.legal"])
            for op in module.walk() if "qcc.legal" in op.attributes}


def test_pass_reads_the_config_and_records_decisions_on_the_ir(tmp_path):
    module = _digits()
    path = tmp_path / "quant.json"
    config_json.dump_json(qconfig.resolve(module, None), path)
    before = path.read_bytes()
    r = remarks.Remarks()
    passes.run(module, f'qcc-legalize-ascend{{config="{path}"}}', remarks=r)
    assert path.read_bytes() == before  # the config file is never rewritten
    assert _float_attrs(module) == {"conv1": MIN_CIN.format(1), "conv2": MIN_CIN.format(16)}
    # ascend.td: conv weights int8 symmetric per_channel, dense per_tensor; activations
    # int8 asymmetric_allowed (so the activation's symmetry is left to the config)
    conv = ("{weight = {bits = 8 : i64, symmetric = true, channel_wise = true}, "
            "activation = {bits = 8 : i64}}")
    assert _legal_attrs(module) == {
        "conv3": conv, "fc": conv.replace("channel_wise = true", "channel_wise = false")}
    assert r.lines == [f"qnn.conv 'conv1': stays float: {MIN_CIN.format(1)}",
                       f"qnn.conv 'conv2': stays float: {MIN_CIN.format(16)}",
                       "qnn.dense 'fc': weight channel_wise true -> false (target "
                       "ascend: qnn.dense)"]
    assert r.results["qcc-legalize-ascend"] == [
        f"legalize: conv1: stays float: {MIN_CIN.format(1)}",
        f"legalize: conv2: stays float: {MIN_CIN.format(16)}",
        "legalize: fc: weight channel_wise true -> false (target ascend: qnn.dense)"]
    # insert-quant reads the decisions: no observer on conv1/conv2, fc's weight per tensor
    passes.run(module, f'qcc-insert-quant{{config="{path}"}}')
    observers = {op.id.data: op for op in module.walk() if isinstance(op, quant.ObserveOp)}
    assert sorted(observers) == ["conv3.input", "conv3.weight", "fc.input", "fc.weight"]
    assert observers["fc.weight"].axis.value.data == -1
    assert observers["conv3.weight"].axis.value.data == 0


def test_a_second_run_decides_again():
    """Rule 5: the decisions of an earlier run are dropped; with the rule lifted
    conv1 and conv2 are quantized."""
    module = _digits()
    passes.run(module, "qcc-legalize-ascend")
    r = remarks.Remarks()
    passes.run(module, 'qcc-legalize-ascend{override="min_cin"}', remarks=r)
    assert not _float_attrs(module)
    assert sorted(_legal_attrs(module)) == ["conv1", "conv2", "conv3", "fc"]
    assert f"qnn.conv 'conv1': quantized anyway (override): {MIN_CIN.format(1)}" in r.lines


def test_remarks_option_prints_to_stderr(capsys):
    passes.run(_digits(), "qcc-legalize-ascend{remarks=true}")
    remarks.current().take()
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"legalize: conv1: stays float: {MIN_CIN.format(1)}"
    passes.run(_digits(), "qcc-legalize-ascend")
    remarks.current().take()
    assert capsys.readouterr().err == ""


def test_overriding_a_hard_rule_is_an_error():
    with pytest.raises(TargetError, match="rule padding_zeros of target ascend is not "
                       "overridable"):
        legalize(_digits(), None, "ascend", overrides=["padding_zeros"])


def test_layer_without_source_in_a_module_without_framework():
    g = ir.Graph()
    x = g.input("x", (2, 32))
    y = g.add(qnn.MatmulOp.make(x, g.add(qnn.TransposeOp.make(x, perm=(1, 0))), name="mm"))
    z = g.add(qnn.DenseOp.make(x, g.const(np.ones((4, 32), np.float32)), name="fc"))
    module = g.finish([y, z])
    cfg, _ = legalize(module, None, "ascend")
    assert cfg["layers"]["fc"]["quantize"]  # some framework maps a layer to qnn.dense
    assert cfg["layers"]["mm"]["reason"] == (
        "framework_table: (unknown) imported as qnn.matmul is not in the target's "
        "framework table")
