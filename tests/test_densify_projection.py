"""The densify projection with its backward on visible rows equals autograd
through ``torch.where`` and the convolution."""
import pytest
import torch
import torch.nn as nn

from spark_mm.models.fast.row_products import MATMUL, ONEDNN
from spark_mm.models.fast.densify_projection import (densify_projection,
                                                     projects_visible_rows,
                                                     tap_targets)


def _case(kernel, bias, dtype, size=(5, 7), cin=6, cout=4):
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=bias).to(dtype)
    active = torch.rand(3, 1, *size) < 0.4
    active[1] = True   # an image with every position visible
    active[2] = False  # and one with none
    feature = torch.randn(3, cin, *size, dtype=dtype) * active
    feature = feature.contiguous(memory_format=torch.channels_last)
    token = torch.randn(1, cin, 1, 1, dtype=dtype)
    grad = torch.randn(3, cout, *size, dtype=dtype)
    return conv, active, feature, token, grad


def _grads(conv, active, feature, token, grad, fast, engine=MATMUL):
    conv.zero_grad(set_to_none=True)
    feature = feature.detach().clone().requires_grad_(True)
    token = token.detach().clone().requires_grad_(True)
    if fast:
        assert projects_visible_rows(conv, feature)
        index = active.flatten().nonzero().squeeze(1)
        out = densify_projection(feature, active, token, conv, index, engine)
    else:
        out = conv(torch.where(active, feature, token))
    out.backward(grad)
    grads = [feature.grad, token.grad, conv.weight.grad]
    return out, grads + ([conv.bias.grad] if conv.bias is not None else [])


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


@pytest.mark.parametrize('kernel', [1, 3, 5])
@pytest.mark.parametrize('bias', [True, False])
@pytest.mark.parametrize('size', [(5, 7), (1, 1), (2, 9)])
@pytest.mark.parametrize('engine', [MATMUL, ONEDNN])
def test_equal_to_autograd_in_float64(kernel, bias, size, engine):
    case = _case(kernel, bias, torch.float64, size)
    out, grads = _grads(*case, fast=True, engine=engine)
    ref, ref_grads = _grads(*case, fast=False)
    assert _rel(out, ref) < 1e-12
    assert len(grads) == len(ref_grads)
    for ours, theirs in zip(grads, ref_grads):
        assert ours.shape == theirs.shape
        assert _rel(ours, theirs) < 1e-12


def test_feature_gradient_is_zero_where_masked():
    conv, active, feature, token, grad = _case(3, True, torch.float64)
    _, (grad_feature, *_) = _grads(conv, active, feature, token, grad, fast=True)
    assert (grad_feature[~active.expand_as(grad_feature)] == 0).all()
    assert grad_feature.is_contiguous(memory_format=torch.channels_last)


def test_fp32_close_and_keeps_only_rows():
    conv, active, feature, token, grad = _case(3, True, torch.float32, (16, 16), 32, 8)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(
            lambda t: saved.append(t) or t, lambda t: t):
        out, grads = _grads(conv, active, feature, token, grad, fast=True)
    ref, ref_grads = _grads(conv, active, feature, token, grad, fast=False)
    assert _rel(out, ref) < 1e-5
    for ours, theirs in zip(grads, ref_grads):
        assert _rel(ours, theirs) < 1e-5
    visible = int(active.sum())
    float_numel = [t.numel() for t in saved if t.is_floating_point()]
    assert max(float_numel) == visible * 32  # the visible rows, not the map


def test_bf16_autocast_close():
    conv, active, feature, token, grad = _case(3, True, torch.float32, (8, 8), 16, 8)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out, grads = _grads(conv, active, feature, token, grad, fast=True)
        ref, ref_grads = _grads(conv, active, feature, token, grad, fast=False)
    assert out.dtype == ref.dtype == torch.bfloat16
    assert _rel(out.float(), ref.float()) < 2e-2
    for ours, theirs in zip(grads, ref_grads):
        assert ours.dtype == theirs.dtype
        assert _rel(ours.float(), theirs.float()) < 5e-2


def test_tap_targets_against_the_definition():
    active = torch.rand(2, 1, 4, 5) < 0.5
    index = active.flatten().nonzero().squeeze(1)
    targets = tap_targets(index, 2, 4, 5, 3)
    for row, flat in enumerate(index.tolist()):
        b, y, x = flat // 20, (flat // 5) % 4, flat % 5
        for ky in range(3):
            for kx in range(3):
                py, px = y - ky + 1, x - kx + 1
                inside = 0 <= py < 4 and 0 <= px < 5
                expected = b * 20 + py * 5 + px if inside else 40
                assert targets[row, ky * 3 + kx] == expected


def test_other_cases_take_the_modules():
    x = torch.zeros(1, 4, 6, 6).contiguous(memory_format=torch.channels_last)
    assert projects_visible_rows(nn.Conv2d(4, 2, 3, padding=1), x)
    assert not projects_visible_rows(nn.Conv2d(4, 2, 3, padding=1),
                                     torch.zeros(1, 4, 6, 6))  # NCHW
    assert not projects_visible_rows(nn.Conv2d(4, 2, 3, stride=2, padding=1), x)
    assert not projects_visible_rows(nn.Conv2d(4, 2, 3), x)  # no padding
    assert not projects_visible_rows(nn.Conv2d(4, 2, 2, padding=1), x)
    assert not projects_visible_rows(nn.Identity(), x)
    with torch.no_grad():
        assert not projects_visible_rows(nn.Conv2d(4, 2, 3, padding=1), x)
