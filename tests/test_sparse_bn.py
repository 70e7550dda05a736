"""One sparse BN layer against autograd through ``F.batch_norm`` on gathered rows.

The reference is the definition: gather the visible positions of the map as
(n, C) rows by boolean indexing, apply torch's training-mode ``F.batch_norm``
to them, scatter back into zeros; its gradients come from autograd. Both of our
paths are checked: NCHW maps (masked reductions over the full map) and
channels_last maps (gathered visible rows), on a non-square 8x12 map, with a
random output gradient, in float64 at 1e-12, plus ``gradcheck``.
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from spark_mm.models.sparse import SparseContext, sparsify

CHANNELS = 5


def data(dtype=torch.float64):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, CHANNELS, 8, 12, generator=gen, dtype=dtype) * 2 + 3
    active = torch.rand(3, 1, 2, 3, generator=gen) < 0.5  # 4x4 cells
    active[:, :, 0, 0] = True
    grad_out = torch.randn(x.shape, generator=gen, dtype=dtype)
    weight = torch.rand(CHANNELS, generator=gen, dtype=dtype) + 0.5
    bias = torch.randn(CHANNELS, generator=gen, dtype=dtype)
    return x, active, grad_out, weight, bias


def expand(active, height, width):
    return (active.repeat_interleave(height // active.shape[2], 2)
            .repeat_interleave(width // active.shape[3], 3))


def sparse_bn(weight, bias):
    bn = nn.BatchNorm2d(CHANNELS).to(weight.dtype)
    with torch.no_grad():
        bn.weight.copy_(weight)
        bn.bias.copy_(bias)
    context = SparseContext()
    sparsify(bn, context, name='bn')
    return bn.train(), context


def reference(x, active, weight, bias, running_mean, running_var):
    visible = expand(active, *x.shape[-2:])[:, 0]
    x_bhwc = x.permute(0, 2, 3, 1)
    rows = F.batch_norm(x_bhwc[visible], running_mean, running_var, weight, bias,
                        True, 0.1, 1e-5)
    out = torch.zeros_like(x_bhwc)
    out[visible] = rows
    return out.permute(0, 3, 1, 2)


@pytest.mark.parametrize('channels_last', [False, True])
def test_sparse_bn_equals_batch_norm_on_gathered_rows(channels_last):
    x, active, grad_out, weight, bias = data()
    layout = torch.channels_last if channels_last else torch.contiguous_format
    mask = expand(active, 8, 12).to(x.dtype)

    bn, context = sparse_bn(weight, bias)
    ours_x = (x * mask).contiguous(memory_format=layout).requires_grad_(True)
    with context.masked(active):
        out = bn(ours_x)
    (out * grad_out).sum().backward()

    ref_x = (x * mask).requires_grad_(True)
    ref_weight = weight.clone().requires_grad_(True)
    ref_bias = bias.clone().requires_grad_(True)
    running_mean = torch.zeros(CHANNELS, dtype=x.dtype)
    running_var = torch.ones(CHANNELS, dtype=x.dtype)
    ref_out = reference(ref_x, active, ref_weight, ref_bias, running_mean, running_var)
    (ref_out * grad_out).sum().backward()

    close = dict(rtol=1e-12, atol=1e-12)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, ref_out, **close)
    torch.testing.assert_close(ours_x.grad * mask, ref_x.grad, **close)
    torch.testing.assert_close(bn.weight.grad, ref_weight.grad, **close)
    torch.testing.assert_close(bn.bias.grad, ref_bias.grad, **close)
    torch.testing.assert_close(bn.running_mean, running_mean, **close)
    torch.testing.assert_close(bn.running_var, running_var, **close)
    assert torch.count_nonzero(out * (1 - mask)) == 0


@pytest.mark.parametrize('channels_last', [False, True])
def test_sparse_bn_gradcheck(channels_last):
    x, active, _, weight, bias = data()
    x, mask = x[:2, :, :4], expand(active[:2, :, :1], 4, 12).to(x.dtype)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    bn, context = sparse_bn(weight, bias)
    bn.track_running_stats = False  # no state changes between evaluations
    bn.running_mean = bn.running_var = None

    def layer(inputs, w, b):
        bn.weight, bn.bias = w, b
        masked = (inputs * mask).contiguous(memory_format=layout)
        with context.masked(active[:2, :, :1]):
            return bn(masked)

    inputs = x.clone().requires_grad_(True)
    w = nn.Parameter(weight.clone())
    b = nn.Parameter(bias.clone())
    assert torch.autograd.gradcheck(layer, (inputs, w, b), eps=1e-6, atol=1e-7)


def test_large_mean_statistics_keep_float32_precision():
    """Statistics of float32 maps whose mean is large against their spread:
    no E[x^2] - mean^2 cancellation (a one-pass formula loses the variance)."""
    x, active, _, weight, bias = data()
    x = (x * 0.01 + 1000.0)
    mask = expand(active, 8, 12)
    rows = x.permute(0, 2, 3, 1)[mask[:, 0]]
    true_var = rows.var(dim=0, unbiased=False)
    for channels_last in (False, True):
        bn, context = sparse_bn(weight.float(), bias.float())
        bn.momentum = 1.0  # running_var becomes the batch's (unbiased) variance
        layout = torch.channels_last if channels_last else torch.contiguous_format
        x32 = (x * mask).float().contiguous(memory_format=layout)
        with context.masked(active):
            bn(x32)
        n = rows.shape[0]
        biased = bn.running_var.double() * (n - 1) / n
        relative = ((biased - true_var).abs() / true_var).max().item()
        assert relative <= 1e-3, f'channels_last={channels_last}: {relative:.2e}'
