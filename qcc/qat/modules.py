"""Trainable quantizers and the folded Conv+BatchNorm, as torch modules.

FakeQuantize.forward (real = scale * (q - zero_point), q clamped to [qmin, qmax]):

    xs = clamp(x / scale + zp, qmin, qmax)          # zp rounded half to even, STE
    y  = (xs + (round(xs) - xs).detach() - zp) * scale

so dy/dx = 1 inside the grid and 0 outside (the clipped straight-through
estimator), and when scale/zero_point are parameters (range learning) their
gradients are LSQ's: dy/dscale = round(x/s + z) - z - x/s inside, qmin - z or
qmax - z outside; dy/dzp = 0 inside, -scale outside.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FakeQuantize(nn.Module):
    """Quantize-dequantize with a straight-through estimator.

    `scale`/`zero_point` are nn.Parameters under range learning, buffers otherwise;
    `axis` is the channel axis of per-channel scales (None: per tensor). During
    training the quantizer is an identity for the first `quant_delay` steps."""

    step: torch.Tensor

    def __init__(self, scale, zero_point, qmin: int, qmax: int, axis: int | None = None,
                 learn: bool = False, learn_zero_point: bool = True, quant_delay: int = 0,
                 ident: str = "") -> None:
        super().__init__()
        scale = torch.as_tensor(scale, dtype=torch.float32).reshape(-1).clone()
        zp = torch.as_tensor(zero_point, dtype=torch.float32).reshape(-1).clone()
        if learn:
            self.scale = nn.Parameter(scale)
        else:
            self.register_buffer("scale", scale)
        if learn and learn_zero_point:
            self.zero_point = nn.Parameter(zp)
        else:
            self.register_buffer("zero_point", zp)
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self.qmin, self.qmax, self.axis = int(qmin), int(qmax), axis
        self.quant_delay = int(quant_delay)
        self.ident = ident

    def extra_repr(self) -> str:
        kind = "learned" if isinstance(self.scale, nn.Parameter) else "fixed"
        return (f"{self.ident!r}, [{self.qmin}, {self.qmax}], axis={self.axis}, {kind}, "
                f"quant_delay={self.quant_delay}")

    def _shape(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.axis is None:
            return t.reshape(())
        shape = [1] * x.dim()
        shape[self.axis] = -1
        return t.reshape(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.step += 1
            if int(self.step) <= self.quant_delay:
                return x
        return fake_quantize(x, self._shape(self.scale, x), self._shape(self.zero_point, x),
                             self.qmin, self.qmax)


def fake_quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
                  qmin: int, qmax: int) -> torch.Tensor:
    """The STE/LSQ quantize-dequantize of the module docstring."""
    s = scale.clamp(min=1e-12)
    zp = zero_point + (torch.round(zero_point) - zero_point).detach()
    xs = torch.clamp(x / s + zp, qmin, qmax)
    return (xs + (torch.round(xs) - xs).detach() - zp) * s


class ConvBnFold(nn.Module):
    """Conv followed by BatchNorm, folded in every forward (TF's fold, MindSpore's
    Conv2dBnFoldQuant). With sigma = sqrt(var + eps):

    training, before `freeze_bn_delay` steps: batch statistics mu_B, sigma_B of the
    conv output z = conv(x, w) + b, running statistics updated with `momentum`, and
        y = conv(x, q(w * gamma / sigma_R)) * sigma_R / sigma_B + beta + gamma * (b - mu_B) / sigma_B
    after the freeze, and in eval:
        y = conv(x, q(w * gamma / sigma_R)) + beta + gamma * (b - mu_R) / sigma_R
    (b cancels under batch statistics: its gradient is zero, but it takes part, as
    DistributedDataParallel requires of every parameter)."""

    step: torch.Tensor

    def __init__(self, conv_kwargs: dict, weight_quant: nn.Module | None, eps: float,
                 momentum: float, freeze_bn_delay: int | None) -> None:
        super().__init__()
        self.conv_kwargs = conv_kwargs
        self.weight_quant = weight_quant
        self.eps, self.momentum = float(eps), float(momentum)
        self.freeze_bn_delay = freeze_bn_delay
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))

    def extra_repr(self) -> str:
        return f"{self.conv_kwargs}, eps={self.eps}, freeze_bn_delay={self.freeze_bn_delay}"

    def folded(self, w, b, gamma, beta, mean, var):
        """The conv weight and bias BatchNorm folds into with running statistics."""
        sigma = torch.sqrt(var + self.eps)
        shape = (-1,) + (1,) * (w.dim() - 1)
        bias = b if b is not None else torch.zeros_like(mean)
        return w * (gamma / sigma).reshape(shape), beta + gamma * (bias - mean) / sigma

    def forward(self, x, w, b, gamma, beta, mean, var):
        conv = _conv(x.dim())
        frozen = self.freeze_bn_delay is not None and int(self.step) >= self.freeze_bn_delay
        if self.training:
            self.step += 1
        w_fold, b_fold = self.folded(w, b, gamma, beta, mean, var)
        wq = self.weight_quant(w_fold) if self.weight_quant is not None else w_fold
        if not self.training or frozen:
            return conv(x, wq, b_fold, **self.conv_kwargs)
        dims = [0] + list(range(2, x.dim()))
        sigma_r = torch.sqrt(var + self.eps)  # the statistics w_fold used
        z = conv(x, w, b, **self.conv_kwargs)
        mu_b = z.mean(dims)
        var_b = z.var(dims, unbiased=False)
        with torch.no_grad():
            n = z.numel() / z.shape[1]
            mean.mul_(1 - self.momentum).add_(self.momentum * mu_b)
            var.mul_(1 - self.momentum).add_(self.momentum * var_b * n / max(n - 1, 1))
        sigma_b = torch.sqrt(var_b + self.eps)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        bias = b if b is not None else torch.zeros_like(mu_b)
        y = conv(x, wq, None, **self.conv_kwargs) * (sigma_r / sigma_b).reshape(shape)
        return y + (beta + gamma * (bias - mu_b) / sigma_b).reshape(shape)


def _conv(rank: int):
    return {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}[rank]
