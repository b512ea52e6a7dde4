"""Whole models imported through torch.export at two batch sizes, against torch."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import models  # noqa: E402
from pt_helpers import check  # noqa: E402


def _init_bn(model):
    """Non-trivial BatchNorm statistics, as a trained model has."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model


def test_resnet_projection_shortcuts():
    torch.manual_seed(0)
    module = check(_init_bn(models.ResNet()), lambda b: torch.randn(b, 3, 16, 16))
    names = {op.attributes["name"].data for op in module.walk() if "name" in op.attributes}
    assert {"layer2.0.shortcut.0", "layer1.1.conv2", "fc"} <= names
    assert "layer2.0.shortcut.0.weight" in names


def test_mobilenet_v3_style():
    torch.manual_seed(0)
    check(_init_bn(models.MobileNetV3()), lambda b: torch.randn(b, 3, 16, 16))


def test_vit():
    torch.manual_seed(0)
    # cls_token.expand(B, -1, -1) broadcasts a constant to the batch size, which a
    # qnn.broadcast cannot take from a `?` dim: the batch cannot stay symbolic.
    check(models.ViT(), lambda b: torch.randn(b, 3, 16, 16), symbolic=False)


def test_vit_batch_falls_back_to_the_example_size():
    """qcc.load(module) chose the symbolic batch itself: when it cannot stay symbolic
    it warns (naming the node) and fixes the example batch; an ExportedProgram whose
    batch the user made dynamic is an error saying what to pass."""
    import numpy as np

    import qcc
    from qcc import runtime
    from qcc.frontends.errors import FrontendError

    torch.manual_seed(0)
    model = models.ViT().eval()
    x = torch.randn(2, 3, 16, 16)
    with pytest.warns(UserWarning, match=r"node 'expand'.*fixed at the example"):
        module = qcc.load(model, example_inputs=(x,))
    assert tuple(qcc.ir.main_func(module).function_type.inputs.data[0].get_shape()) == (
        2, 3, 16, 16)
    (got,) = runtime.run(module, {"x": x.numpy()}).values()
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-4, atol=1e-5)
    program = torch.export.export(model, (x,), dynamic_shapes={"x": {0: torch.export.Dim.AUTO}})
    with pytest.raises(FrontendError, match=r"node 'expand'.*input_shapes=\{'x': \(N, 3, 16"):
        qcc.load(program)


def test_bert_padding_mask():
    torch.manual_seed(0)
    check(models.Bert(), lambda b: models.bert_inputs(b))
