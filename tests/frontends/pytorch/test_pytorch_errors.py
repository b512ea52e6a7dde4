"""A module torch.export cannot trace, and unsupported ATen ops listed all at once."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import qcc  # noqa: E402
from qcc.frontends.errors import FrontendError  # noqa: E402


class Unsupported(torch.nn.Module):
    def forward(self, x):
        y = torch.cumsum(x, 1)  # LINE_CUMSUM
        z = torch.sort(x, 1).values  # LINE_SORT
        w = torch.cumsum(y, 2)  # LINE_CUMSUM2
        return y + z + w


class DataDependent(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x


def _line(tag: str) -> int:
    for i, text in enumerate(open(__file__), 1):
        if text.rstrip().endswith(tag):
            return i
    raise AssertionError(tag)


def test_unsupported_ops_listed_with_source_lines():
    with pytest.raises(FrontendError) as info:
        qcc.load(Unsupported(), example_inputs=(torch.randn(2, 3, 4),))
    message = str(info.value)
    here = "test_pytorch_errors.py"
    assert "2 unsupported ATen ops" in message
    cumsum = next(ln for ln in message.splitlines() if "aten.cumsum" in ln)
    assert f"{here}:{_line('LINE_CUMSUM')}" in cumsum
    assert f"{here}:{_line('LINE_CUMSUM2')}" in cumsum
    sort = next(ln for ln in message.splitlines() if "aten.sort" in ln)
    assert f"{here}:{_line('LINE_SORT')}" in sort


def test_export_failure_gives_the_reason_and_what_to_do():
    with pytest.raises(FrontendError) as info:
        qcc.load(DataDependent(), example_inputs=(torch.randn(2, 3),))
    message = str(info.value)
    assert message.startswith("DataDependent: torch.export cannot trace the module:")
    assert "data-dependent" in message.lower() or "Could not guard" in message
    for hint in ("example_inputs=", "dynamic_shapes=", "torch.onnx.export"):
        assert hint in message


def test_missing_example_inputs():
    with pytest.raises(FrontendError, match="needs example_inputs"):
        qcc.load(DataDependent())


def test_input_shapes_change_only_dynamic_dims():
    model = torch.nn.Conv1d(3, 4, 1)
    x = torch.randn(2, 3, 5)
    module = qcc.load(model, example_inputs=(x,), input_shapes={"input": (7, 3, 5)})
    fn = qcc.ir.main_func(module)
    assert tuple(fn.function_type.inputs.data[0].get_shape()) == (7, 3, 5)
    with pytest.raises(FrontendError, match="only dynamic dims can change"):
        qcc.load(model, example_inputs=(x,), input_shapes={"input": (2, 4, 5)})


def test_batch_is_symbolic_by_default():
    """Without input_shapes the Dim.AUTO batch is `?` (named "batch"); one module runs
    at any batch and matches torch."""
    import numpy as np

    from qcc import runtime
    from qcc.dialects.base import DYN

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU()).eval()
    module = qcc.load(model, example_inputs=(torch.randn(2, 3, 5),))
    fn = module.body.block.first_op
    assert tuple(fn.function_type.inputs.data[0].get_shape()) == (DYN, 3, 5)
    assert fn.arg_attrs.data[0].data["qnn.dims"].data[0].data == "batch"
    for batch in (1, 6):
        x = torch.randn(batch, 3, 5)
        (got,) = runtime.run(module, {"input": x.numpy()}).values()
        with torch.no_grad():
            np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-5, atol=1e-6)
