"""The Ascend target's PyTorch rules fire on imported modules, with remarks."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import qcc  # noqa: E402
from qcc.passes.legalize_ascend import legalize  # noqa: E402


class Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.small = nn.Conv2d(3, 32, 3, padding=1)                       # Cin 3 <= 16
        self.reflect = nn.Conv2d(32, 32, 3, padding=1, padding_mode="reflect")
        self.plain = nn.Conv2d(32, 32, 3, padding=1)                      # quantized
        self.deconv = nn.ConvTranspose2d(32, 32, 3, dilation=2)
        self.conv3d = nn.Conv3d(32, 32, 3, padding=(2, 1, 1), dilation=(2, 1, 1))
        self.conv3d_ok = nn.Conv3d(32, 32, 3, padding=(1, 2, 2), dilation=(1, 2, 2))
        self.fc = nn.Linear(32, 20)                                       # quantized

    def forward(self, x):
        y = self.deconv(self.plain(self.reflect(self.small(x))))
        v = self.conv3d_ok(self.conv3d(y.unsqueeze(2).expand(-1, -1, 4, -1, -1)))
        return self.fc(v.mean((2, 3, 4)))


@pytest.fixture(scope="module")
def remarks():
    module = qcc.load(Mixed(), example_inputs=(torch.randn(2, 3, 6, 6),))
    qcc.passes.run(module, "canonicalize")
    cfg, notes = legalize(module, None, "ascend")
    return cfg, {n.split(":")[1].strip(): n for n in notes}


def test_rules_fire_with_remarks(remarks):
    cfg, notes = remarks
    layers = cfg["layers"]
    expected = {
        "small": "min_cin: Cin = 3 <= 16",
        "reflect": "padding_zeros: padding mode reflect is not supported",
        "deconv": "deconv_dilation: conv_transpose with dilations",
        "conv3d": "conv3d_dilation: a 3-d convolution needs dilation_d = 1",
    }
    for layer, text in expected.items():
        assert layers[layer]["quantize"] is False, layer
        assert text in notes[layer], notes.get(layer)
    for layer in ("plain", "conv3d_ok", "fc"):
        assert layers[layer]["quantize"] is True, (layer, notes.get(layer))


def test_sources_are_pytorch_classes():
    module = qcc.load(Mixed(), example_inputs=(torch.randn(2, 3, 6, 6),))
    sources = {op.attributes["name"].data: op.attributes["source"].data
               for op in module.walk() if "source" in op.attributes}
    assert sources == {"small": "pytorch.Conv2d", "reflect": "pytorch.Conv2d",
                       "plain": "pytorch.Conv2d", "deconv": "pytorch.ConvTranspose2d",
                       "conv3d": "pytorch.Conv3d", "conv3d_ok": "pytorch.Conv3d",
                       "fc": "pytorch.Linear"}
