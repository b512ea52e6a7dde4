"""FakeQuantize and ConvBnFold against hand-computed values and gradients
(worked out in the comments), and torch's own batch_norm as the BN oracle."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from qcc.qat.modules import ConvBnFold, FakeQuantize  # noqa: E402


def test_ste_gradient_fixed_range():
    # scale 0.25, [-4, 3]: x/s = [-4.4, 1.04, 2, 8] -> clamp [-4, 1.04, 2, 3] -> round
    # [-4, 1, 2, 3] -> y = [-1, 0.25, 0.5, 0.75]; dy/dx = 1 inside the grid only.
    q = FakeQuantize(0.25, 0, -4, 3)
    x = torch.tensor([-1.1, 0.26, 0.5, 2.0], requires_grad=True)
    y = q(x)
    y.sum().backward()
    assert y.tolist() == [-1.0, 0.25, 0.5, 0.75]
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]
    assert not any(p.requires_grad for p in q.parameters())


def test_lsq_scale_gradient_symmetric():
    # dy/ds = round(x/s) - x/s inside, qmin / qmax outside:
    # -4 + (1 - 1.04) + (2 - 2) + 3 = -1.04
    q = FakeQuantize(0.25, 0, -4, 3, learn=True, learn_zero_point=False)
    x = torch.tensor([-1.1, 0.26, 0.5, 2.0])
    q(x).sum().backward()
    assert q.scale.grad.item() == pytest.approx(-1.04, abs=1e-5)
    assert not isinstance(q.zero_point, torch.nn.Parameter)


def test_lsq_scale_and_offset_gradients_asymmetric():
    # s = 0.1, z = 3, [0, 15]: x/s + z = [-2, 3.4, 13] -> [0, 3.4, 13] -> round [0, 3, 13]
    # y = (q - z) s = [-0.3, 0, 1.0]
    # dy/ds: outside qmin - z = -3; inside round(x/s+z) - z - x/s: 3-3-0.4 = -0.4, 13-3-10 = 0
    # dy/dz: -s outside (-0.1), 0 inside
    q = FakeQuantize(0.1, 3.0, 0, 15, learn=True)
    x = torch.tensor([-0.5, 0.04, 1.0], requires_grad=True)
    y = q(x)
    y.sum().backward()
    np.testing.assert_allclose(y.detach().numpy(), [-0.3, 0.0, 1.0], atol=1e-6)
    assert q.scale.grad.item() == pytest.approx(-3.4, abs=1e-5)
    assert q.zero_point.grad.item() == pytest.approx(-0.1, abs=1e-6)
    assert x.grad.tolist() == [0.0, 1.0, 1.0]


def test_per_channel_vs_per_tensor():
    w = torch.tensor([[0.12, -0.9, 0.3], [0.4, 2.6, -8.0]])
    # per channel (axis 0), scales [0.1, 1], [-7, 7]:
    # row 0: w/s = [1.2, -9, 3] -> [1, -7, 3] -> [0.1, -0.7, 0.3]; ds = -0.2 - 7 + 0 = -7.2
    # row 1: w/s = [0.4, 2.6, -8] -> [0, 3, -7]; ds = -0.4 + 0.4 - 7 = -7.0
    pc = FakeQuantize([0.1, 1.0], [0, 0], -7, 7, axis=0, learn=True, learn_zero_point=False)
    y = pc(w)
    y.sum().backward()
    np.testing.assert_allclose(y.detach().numpy(), [[0.1, -0.7, 0.3], [0, 3, -7]], atol=1e-6)
    np.testing.assert_allclose(pc.scale.grad.numpy(), [-7.2, -7.0], atol=1e-5)
    # per tensor, s = 0.1: row 1 -> [4, 7, -7] -> [0.4, 0.7, -0.7], ds = 0 + 7 - 7;
    # total -7.2
    pt = FakeQuantize(0.1, 0, -7, 7, learn=True, learn_zero_point=False)
    y = pt(w)
    y.sum().backward()
    np.testing.assert_allclose(y.detach().numpy(), [[0.1, -0.7, 0.3], [0.4, 0.7, -0.7]],
                               atol=1e-6)
    assert pt.scale.grad.item() == pytest.approx(-7.2, abs=1e-5)


def test_quant_delay_schedule():
    q = FakeQuantize(0.25, 0, -4, 3, quant_delay=2)
    x = torch.tensor([0.3, 0.6])
    q.train()
    assert q(x).tolist() == pytest.approx([0.3, 0.6])  # step 1: identity
    assert q(x).tolist() == pytest.approx([0.3, 0.6])  # step 2: identity
    assert q(x).tolist() == [0.25, 0.5]                # step 3: quantized
    q.eval()
    fresh = FakeQuantize(0.25, 0, -4, 3, quant_delay=2).eval()
    assert fresh(x).tolist() == [0.25, 0.5]            # eval: always quantized
    assert int(q.step) == 3


def _bn_case():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 2, 5, 5, generator=g)
    w = torch.randn(3, 2, 3, 3, generator=g)
    b = torch.randn(3, generator=g)
    gamma, beta = torch.rand(3, generator=g) + 0.5, torch.randn(3, generator=g)
    mean, var = torch.randn(3, generator=g), torch.rand(3, generator=g) + 0.5
    return x, w, b, gamma, beta, mean, var


def test_bn_fold_training_matches_batch_norm_then_freezes():
    x, w, b, gamma, beta, mean, var = _bn_case()
    kw = {"stride": (1, 1), "padding": (1, 1), "dilation": (1, 1), "groups": 1}
    fold = ConvBnFold(kw, None, 1e-5, 0.1, freeze_bn_delay=1).train()
    rm, rv = mean.clone(), var.clone()
    y = fold(x, w, b, gamma, beta, mean, var)
    want = F.batch_norm(F.conv2d(x, w, b, **kw), rm, rv, gamma, beta, training=True,
                        momentum=0.1, eps=1e-5)
    np.testing.assert_allclose(y.detach().numpy(), want.numpy(), atol=1e-4)
    np.testing.assert_allclose(mean.numpy(), rm.numpy(), atol=1e-5)  # same running update
    np.testing.assert_allclose(var.numpy(), rv.numpy(), atol=1e-5)
    # step 2 >= freeze_bn_delay: running statistics, no more updates
    y = fold(x, w, b, gamma, beta, mean, var)
    want = F.batch_norm(F.conv2d(x, w, b, **kw), rm, rv, gamma, beta, training=False,
                        eps=1e-5)
    np.testing.assert_allclose(y.detach().numpy(), want.numpy(), atol=1e-4)
    np.testing.assert_allclose(mean.numpy(), rm.numpy(), atol=1e-6)


def test_bn_fold_quantizes_the_folded_weight():
    x, w, b, gamma, beta, mean, var = _bn_case()
    kw = {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "groups": 1}
    wq = FakeQuantize([0.05, 0.1, 0.2], [0, 0, 0], -7, 7, axis=0)
    fold = ConvBnFold(kw, wq, 1e-5, 0.1, freeze_bn_delay=0).eval()
    y = fold(x, w, b, gamma, beta, mean, var).detach().numpy()
    # numpy: w_fold = w * gamma / sqrt(var + eps), rounded on the per-channel grid
    sigma = np.sqrt(var.numpy().astype(np.float64) + 1e-5)
    wf = w.numpy() * (gamma.numpy() / sigma)[:, None, None, None]
    s = np.array([0.05, 0.1, 0.2])[:, None, None, None]
    wq_np = np.clip(np.round(wf / s), -7, 7) * s
    bf = beta.numpy() + gamma.numpy() * (b.numpy() - mean.numpy()) / sigma
    want = F.conv2d(x.double(), torch.from_numpy(wq_np), torch.from_numpy(bf), **kw)
    np.testing.assert_allclose(y, want.numpy(), atol=1e-4)
