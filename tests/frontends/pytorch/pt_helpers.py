"""Shared by the PyTorch frontend tests: export a module once (batch dim dynamic),
import it at two batch sizes and compare the runtime's outputs with torch's own (the
oracle)."""

from __future__ import annotations

import numpy as np
import torch

import qcc
from qcc import runtime
from qcc.frontends.pytorch import batch_dynamic

RTOL = 1e-5


class Fn(torch.nn.Module):
    """A function of the inputs, with optional submodules (their parameters become
    constants named by path)."""

    def __init__(self, fn, **modules: torch.nn.Module) -> None:
        super().__init__()
        self.fn = fn
        for k, m in modules.items():
            self.add_module(k, m)

    def forward(self, *xs):
        return self.fn(self, *xs)


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want|."""
    want = np.asarray(want, np.float64)
    if not want.size:
        return 0.0
    scale = max(float(np.abs(want).max()), 1e-6)
    return float(np.abs(np.asarray(got, np.float64) - want).max() / scale)


def as_tuple(inputs):
    return inputs if isinstance(inputs, tuple) else (inputs,)


def check(model: torch.nn.Module, make_inputs, batches=(2, 3), rtol: float = RTOL,
          symbolic: bool = True):
    """Export `model` once with a dynamic batch, import it at each batch size, and once
    with the batch symbolic, and compare every output of both with torch's at each
    batch. Returns the module imported at the last batch."""
    model.eval()
    torch.manual_seed(0)
    example = as_tuple(make_inputs(batches[0]))
    program = torch.export.export(model, example, dynamic_shapes=batch_dynamic(model, example))
    module = None
    # the batch stays `?`: one module for every batch
    one = qcc.load(program) if symbolic else None
    for b in batches:
        torch.manual_seed(b)
        inputs = as_tuple(make_inputs(b))
        names = [s.arg.name for s in program.graph_signature.input_specs
                 if s.kind.name == "USER_INPUT"]
        module = qcc.load(program, input_shapes={k: tuple(v.shape)
                                                 for k, v in zip(names, inputs, strict=True)})
        feeds = {k: v.numpy() for k, v in zip(names, inputs, strict=True)}
        _compare(model, inputs, runtime.run(module, feeds), b, rtol)
        if one is not None:
            _compare(model, inputs, runtime.run(one, feeds), b, rtol)
    return module


def _compare(model, inputs, got, b, rtol):
    """Every output of one run against torch's."""
    with torch.no_grad():
        want = model(*inputs)
    want = list(want) if isinstance(want, tuple | list) else [want]
    keys = ["output"] if len(want) == 1 else [f"output{i}" for i in range(len(want))]
    for key, w in zip(keys, want, strict=True):
        g = got[key]
        assert g.shape == tuple(w.shape), (key, b, g.shape, tuple(w.shape))
        if w.dtype == torch.bool:
            np.testing.assert_array_equal(g, w.numpy())
            continue
        err = relative_error(g, w.numpy())
        assert err <= rtol, f"{key} at batch {b}: relative error {err:.3g}"
