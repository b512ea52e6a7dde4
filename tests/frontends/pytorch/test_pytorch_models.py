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
    check(models.ViT(), lambda b: torch.randn(b, 3, 16, 16))


def test_bert_padding_mask():
    torch.manual_seed(0)
    check(models.Bert(), lambda b: models.bert_inputs(b))
