"""Every ATen op the PyTorch frontend lowers, imported at two batch sizes and
compared with torch's own outputs (relative error <= 1e-5)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from pt_helpers import Fn, check  # noqa: E402


def img(c=3, h=8, w=8):
    return lambda b: torch.randn(b, c, h, w)


def seq(t=5, d=8):
    return lambda b: torch.randn(b, t, d)


def bn(c):
    m = nn.BatchNorm2d(c)
    m.running_mean.uniform_(-1, 1)
    m.running_var.uniform_(0.5, 2)
    m.weight.data.uniform_(0.5, 1.5)
    m.bias.data.uniform_(-1, 1)
    return m


CASES = {
    # layers
    "conv1d": (Fn(lambda s, x: s.c(x), c=nn.Conv1d(3, 4, 3, padding=1, stride=2)),
               lambda b: torch.randn(b, 3, 10)),
    "conv2d_groups_dilation": (Fn(lambda s, x: s.c(x), c=nn.Conv2d(4, 6, 3, padding=2,
                                                                   dilation=2, groups=2)),
                               img(4)),
    "conv2d_same": (Fn(lambda s, x: s.c(x), c=nn.Conv2d(3, 4, 4, padding="same")), img()),
    "conv3d": (Fn(lambda s, x: s.c(x), c=nn.Conv3d(2, 3, 3, padding=1)),
               lambda b: torch.randn(b, 2, 4, 5, 5)),
    "conv_transpose1d": (Fn(lambda s, x: s.c(x), c=nn.ConvTranspose1d(3, 2, 3, stride=2,
                                                                      padding=1,
                                                                      output_padding=1)),
                         lambda b: torch.randn(b, 3, 6)),
    "conv_transpose2d": (Fn(lambda s, x: s.c(x), c=nn.ConvTranspose2d(4, 6, 3, stride=2,
                                                                      groups=2)), img(4)),
    "conv_transpose3d": (Fn(lambda s, x: s.c(x), c=nn.ConvTranspose3d(2, 3, 2, stride=2)),
                         lambda b: torch.randn(b, 2, 3, 3, 3)),
    "conv_reflect": (Fn(lambda s, x: s.c(x), c=nn.Conv2d(3, 4, 3, padding=1,
                                                         padding_mode="reflect")), img()),
    "linear": (Fn(lambda s, x: s.fc(x), fc=nn.Linear(8, 5)), seq()),
    "linear_2d_no_bias": (Fn(lambda s, x: s.fc(x), fc=nn.Linear(8, 5, bias=False)),
                          lambda b: torch.randn(b, 8)),
    "batchnorm1d": (Fn(lambda s, x: s.n(x), n=nn.BatchNorm1d(4)), lambda b: torch.randn(b, 4, 6)),
    "batchnorm2d": (Fn(lambda s, x: s.n(x), n=bn(3)), img()),
    "batchnorm3d": (Fn(lambda s, x: s.n(x), n=nn.BatchNorm3d(2)),
                    lambda b: torch.randn(b, 2, 3, 4, 4)),
    "groupnorm": (Fn(lambda s, x: s.n(x), n=nn.GroupNorm(2, 4)), img(4)),
    "layernorm": (Fn(lambda s, x: s.n(x), n=nn.LayerNorm(8)), seq()),
    "layernorm_2d_no_affine": (Fn(lambda s, x: s.n(x), n=nn.LayerNorm([5, 8],
                                                                     elementwise_affine=False)),
                               seq()),
    # activations
    "relu": (Fn(lambda s, x: F.relu(x)), img()),
    "relu6": (Fn(lambda s, x: s.a(x * 4), a=nn.ReLU6()), img()),
    "leaky_relu": (Fn(lambda s, x: F.leaky_relu(x, 0.2)), img()),
    "prelu": (Fn(lambda s, x: s.a(x), a=nn.PReLU(3, 0.3)), img()),
    "prelu_single": (Fn(lambda s, x: s.a(x), a=nn.PReLU()), img()),
    "gelu": (Fn(lambda s, x: F.gelu(x)), img()),
    "gelu_tanh": (Fn(lambda s, x: F.gelu(x, approximate="tanh")), img()),
    "silu": (Fn(lambda s, x: F.silu(x)), img()),
    "hardswish": (Fn(lambda s, x: F.hardswish(x * 4)), img()),
    "hardsigmoid": (Fn(lambda s, x: F.hardsigmoid(x * 4)), img()),
    "mish": (Fn(lambda s, x: F.mish(x * 10)), img()),
    "sigmoid_tanh": (Fn(lambda s, x: torch.sigmoid(x) + torch.tanh(x)), img()),
    "softmax": (Fn(lambda s, x: F.softmax(x, dim=1)), img()),
    "log_softmax": (Fn(lambda s, x: F.log_softmax(x * 5, dim=-1)), seq()),
    # pools
    "max_pool": (Fn(lambda s, x: F.max_pool2d(x, 3, 2, 1)), img()),
    "max_pool_ceil": (Fn(lambda s, x: F.max_pool2d(x, 2, ceil_mode=True)), img(3, 7, 7)),
    "max_pool1d": (Fn(lambda s, x: F.max_pool1d(x, 2)), lambda b: torch.randn(b, 3, 10)),
    "avg_pool": (Fn(lambda s, x: F.avg_pool2d(x, 3, 2, 1)), img()),
    "avg_pool_exclude_pad": (Fn(lambda s, x: F.avg_pool2d(x, 3, 2, 1,
                                                          count_include_pad=False)), img()),
    "adaptive_global": (Fn(lambda s, x: F.adaptive_avg_pool2d(x, 1)), img()),
    "adaptive_exact": (Fn(lambda s, x: F.adaptive_avg_pool2d(x, (2, 4))), img()),
    # resize
    "upsample_nearest": (Fn(lambda s, x: F.interpolate(x, scale_factor=2)), img(3, 4, 4)),
    "upsample_nearest_size": (Fn(lambda s, x: F.interpolate(x, size=(6, 10))), img(3, 4, 5)),
    "upsample_bilinear": (Fn(lambda s, x: F.interpolate(x, scale_factor=2, mode="bilinear")),
                          img(3, 4, 4)),
    "upsample_bilinear_align": (Fn(lambda s, x: F.interpolate(x, size=(7, 9), mode="bilinear",
                                                              align_corners=True)),
                                img(3, 4, 5)),
    # element-wise
    "arith": (Fn(lambda s, x, y: (x + y) * 2 - y / (x.abs() + 1) - 3.0 + x ** 2), img(), ),
    "pow_sqrt_exp": (Fn(lambda s, x: torch.pow(x.abs() + 1, 0.5) + torch.exp(-x * x)
                        + torch.rsqrt(x.abs() + 1)), img()),
    "rsub_neg": (Fn(lambda s, x: 1.0 - x - (-x)), img()),
    "max_min_where": (Fn(lambda s, x, y: torch.where(x > y, torch.maximum(x, y),
                                                     torch.minimum(x, y) * 2)), img()),
    # matmul
    "matmul_bmm": (Fn(lambda s, x, y: torch.bmm(x, y.transpose(1, 2)) + x @ y.mT),
                   seq()),
    "matmul_4d": (Fn(lambda s, x: torch.matmul(x, x.transpose(-1, -2))),
                  lambda b: torch.randn(b, 2, 5, 4)),
    "einsum_bij_bjk": (Fn(lambda s, x, y: torch.einsum("bij,bkj->bik", x, y)), seq()),
    "einsum_heads": (Fn(lambda s, x: torch.einsum("bhqd,bhkd->bhqk", x, x)),
                     lambda b: torch.randn(b, 2, 5, 4)),
    "mm_by_constant": (Fn(lambda s, x: x @ s.w.weight.T, w=nn.Linear(8, 6)), lambda b: torch.randn(b, 8)),
    # shape
    "cat_stack": (Fn(lambda s, x, y: torch.cat([x, y], 1).sum(1) + torch.stack([x, y], -1)
                     .mean(-1).sum(1)), img()),
    "split_chunk_unbind": (Fn(lambda s, x: x.split([1, 2], 1)[0].sum(1)
                              + x.split([1, 2], 1)[1].sum(1)
                              + torch.cat(x.chunk(4, -1)[::-1], -1).sum(1)
                              + x.unbind(2)[3].mean(1, True)), img()),
    "flatten_view_reshape": (Fn(lambda s, x: x.flatten(1).view(x.shape[0], 2, -1)
                                .reshape(-1, 96).unsqueeze(1).squeeze(1)), img()),
    "permute_transpose": (Fn(lambda s, x: x.permute(0, 2, 3, 1).transpose(1, 2)
                             .contiguous()), img()),
    "slice_select": (Fn(lambda s, x: x[:, 1:, ::2, -3:] + x[:, 0:1, 0:8:2, :3].select(3, 1)
                        .unsqueeze(-1)), img()),
    "reductions": (Fn(lambda s, x: (x.mean((2, 3)), x.sum(1, keepdim=True), x.amax((1, 3)))),
                   img()),
    "expand": (Fn(lambda s, x: x[:, :1].expand(-1, 3, -1, -1) * x), img()),
    # embeddings, attention, dropout
    "embedding": (Fn(lambda s, i: s.e(i), e=nn.Embedding(10, 6)),
                  lambda b: torch.randint(0, 10, (b, 7))),
    "sdpa": (Fn(lambda s, q, k, v: F.scaled_dot_product_attention(q, k, v)),
             lambda b: tuple(torch.randn(b, 2, 5, 4) for _ in range(3))),
    "sdpa_bool_mask": (Fn(lambda s, q, m: F.scaled_dot_product_attention(q, q, q, attn_mask=m)),
                       lambda b: (torch.randn(b, 2, 5, 4), torch.rand(b, 1, 5, 5) > 0.3)),
    "sdpa_float_mask_causal": (Fn(lambda s, q, m: (
        F.scaled_dot_product_attention(q, q, q, attn_mask=m),
        F.scaled_dot_product_attention(q, q, q, is_causal=True))),
        lambda b: (torch.randn(b, 2, 5, 4), torch.randn(b, 1, 5, 5))),
    "pad_modes": (Fn(lambda s, x: F.pad(x, (1, 2, 0, 1), value=0.5).sum(1)
                     + F.pad(x, (1, 2, 0, 1), mode="replicate").mean(1)
                     + F.pad(x, (1, 2, 0, 1), mode="reflect").amin(1)), img()),
    "masked_fill_clamp_erf": (Fn(lambda s, x: torch.erf(x).masked_fill(x < -0.5, -3.0)
                                 .clamp(-2, 0.7) + x.clamp(min=0.1)), img()),
    "index_select": (Fn(lambda s, x: x.index_select(1, torch.tensor([2, 0, 2]))), img()),
    "dropout_eval": (Fn(lambda s, x: s.d(x) + F.dropout(x, 0.5, training=False),
                        d=nn.Dropout(0.3)), img()),
}


def _two_inputs(name):
    return name in ("arith", "max_min_where", "matmul_bmm", "einsum_bij_bjk", "cat_stack")


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_matches_torch(name):
    model, make = CASES[name]
    if _two_inputs(name):
        check(model, lambda b: (make(b), make(b)))
    else:
        check(model, make)
