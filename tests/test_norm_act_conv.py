"""The decoder's BN -> ReLU6 -> conv keeping only the BN input equals torch's
modules: values, every gradient, running statistics."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from spark_mm.models.decoder import LightUNetDecoder, UpsampleBlock
from spark_mm.models.fast.norm_act_conv import (batch_norm_relu6_conv,
                                                keeps_only_norm_input)
from spark_mm.models.fast.relu6_inplace import ReLU6InPlace


def _modules(channels, out_channels, kernel, bias, momentum, dtype):
    norm = nn.BatchNorm2d(channels, momentum=momentum).to(dtype)
    conv = nn.Conv2d(channels, out_channels, kernel, padding=kernel // 2,
                     bias=bias).to(dtype)
    with torch.no_grad():  # a spread wide enough that ReLU6 clips both ends
        norm.weight.uniform_(2.0, 6.0)
        norm.bias.uniform_(0.0, 3.0)
        norm.running_mean.normal_()
        norm.running_var.uniform_(0.5, 2.0)
    return norm, conv


def _run(norm, conv, x, grad, fused, steps=2):
    """``steps`` training steps of the pair; the last output and gradients."""
    for _ in range(steps):
        for p in (*norm.parameters(), *conv.parameters()):
            p.grad = None
        inp = x.detach().clone().requires_grad_(True)
        if fused:
            assert keeps_only_norm_input(norm, conv, inp)
            out = batch_norm_relu6_conv(inp, norm, conv)
        else:
            out = conv(F.relu6(norm(inp)))
        out.backward(grad)
    grads = [inp.grad] + [p.grad for p in (*norm.parameters(), *conv.parameters())]
    return out, grads


def _pair(channels_last, dtype, kernel=3, bias=False, momentum=0.1):
    torch.manual_seed(0)
    norm, conv = _modules(6, 5, kernel, bias, momentum, dtype)
    x = torch.randn(3, 6, 7, 9, dtype=dtype) * 2 + 0.5
    grad = torch.randn(3, 5, 7, 9, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        norm, conv = norm.to(memory_format=torch.channels_last), conv.to(
            memory_format=torch.channels_last)
    return norm, conv, x, grad


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('kernel,bias', [(3, False), (1, True)])
@pytest.mark.parametrize('momentum', [0.1, None])
def test_equal_to_modules_in_float64(channels_last, kernel, bias, momentum):
    norm, conv, x, grad = _pair(channels_last, torch.float64, kernel, bias, momentum)
    ref_norm, ref_conv = copy.deepcopy(norm), copy.deepcopy(conv)
    out, grads = _run(norm, conv, x, grad, fused=True)
    ref, ref_grads = _run(ref_norm, ref_conv, x, grad, fused=False)
    assert _rel(out, ref) < 1e-12
    assert len(grads) == len(ref_grads) == (5 if bias else 4)
    for ours, theirs in zip(grads, ref_grads):
        assert _rel(ours, theirs) < 1e-12
    for name in ('running_mean', 'running_var'):
        assert _rel(getattr(norm, name), getattr(ref_norm, name)) < 1e-12
    assert norm.num_batches_tracked.item() == ref_norm.num_batches_tracked.item() == 2


def test_without_running_statistics():
    norm, conv, x, grad = _pair(True, torch.float64)
    norm = nn.BatchNorm2d(6, track_running_stats=False).double()
    ref_norm, ref_conv = copy.deepcopy(norm), copy.deepcopy(conv)
    out, grads = _run(norm, conv, x, grad, fused=True)
    ref, ref_grads = _run(ref_norm, ref_conv, x, grad, fused=False)
    assert _rel(out, ref) < 1e-12
    for ours, theirs in zip(grads, ref_grads):
        assert _rel(ours, theirs) < 1e-12


def test_clipped_region_is_exercised():
    """The check above means something only if ReLU6 clips at 0 and at 6."""
    norm, conv, x, _ = _pair(False, torch.float64)
    a = F.relu6(copy.deepcopy(norm)(x))
    assert (a == 0).float().mean() > 0.05 and (a == 6).float().mean() > 0.05


def test_float32_bit_identical_to_modules():
    """The recomputed activation is bit-identical to the forward's: with the
    same kernels the gradients equal autograd's exactly."""
    norm, conv, x, grad = _pair(True, torch.float32)
    ref_norm, ref_conv = copy.deepcopy(norm), copy.deepcopy(conv)
    out, grads = _run(norm, conv, x, grad, fused=True, steps=1)
    ref, ref_grads = _run(ref_norm, ref_conv, x, grad, fused=False, steps=1)
    assert torch.equal(out, ref)
    for ours, theirs in zip(grads, ref_grads):
        assert torch.equal(ours, theirs)


def test_keeps_only_the_norm_input():
    norm, conv, x, _ = _pair(True, torch.float32)
    map_numel = x.numel()
    for fused, expected in ((True, 1), (False, 2)):
        saved = []
        inp = x.clone().requires_grad_(True)
        with torch.autograd.graph.saved_tensors_hooks(
                lambda t: saved.append(t) or t, lambda t: t):
            if fused:
                batch_norm_relu6_conv(inp, norm, conv)
            else:
                conv(ReLU6InPlace()(norm(inp)))  # the decoder's plain path
        storages = {t.untyped_storage().data_ptr() for t in saved
                    if t.numel() == map_numel}
        # plain path: the BN input and the activation (kept by ReLU6 and conv)
        assert len(storages) == expected


def test_bf16_autocast_matches_modules():
    norm, conv, x, grad = _pair(True, torch.float32)
    ref_norm, ref_conv = copy.deepcopy(norm), copy.deepcopy(conv)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out, grads = _run(norm, conv, x, grad, fused=True, steps=1)
        ref, ref_grads = _run(ref_norm, ref_conv, x, grad, fused=False, steps=1)
    assert out.dtype == ref.dtype == torch.bfloat16
    assert _rel(out.float(), ref.float()) < 2e-2
    for ours, theirs in zip(grads, ref_grads):
        assert ours.dtype == theirs.dtype
        assert _rel(ours.float(), theirs.float()) < 5e-2


def test_other_cases_take_the_modules():
    norm, conv, x, _ = _pair(True, torch.float32)
    inp = x.clone().requires_grad_(True)
    assert keeps_only_norm_input(norm, conv, inp)
    assert not keeps_only_norm_input(norm, conv, x)  # no gradient wanted
    with torch.no_grad():
        assert not keeps_only_norm_input(norm, conv, inp)
    assert not keeps_only_norm_input(norm.eval(), conv, inp)
    assert not keeps_only_norm_input(nn.GroupNorm(2, 6), conv, inp)
    assert not keeps_only_norm_input(nn.BatchNorm2d(6), nn.Conv2d(
        6, 5, 3, padding=1, padding_mode='reflect'), inp)


@pytest.mark.parametrize('channels_last', [False, True])
def test_whole_decoder_against_plain_modules(channels_last):
    """The decoder (fused upsample and this path) against a step-by-step
    reference written with torch's modules, float64."""
    torch.manual_seed(1)
    decoder = LightUNetDecoder(width=32, upsample_ratio=8).double()
    decoder.init_weights()
    reference = copy.deepcopy(decoder)
    dense = [torch.randn(2, 32 >> i, 3 << i, 3 << i, dtype=torch.float64)
             for i in range(4)]
    if channels_last:
        decoder = decoder.to(memory_format=torch.channels_last)
        dense = [d.contiguous(memory_format=torch.channels_last) for d in dense]

    def plain_block(block: UpsampleBlock, x):
        x = block.conv1(block.upsample(x))
        x = block.conv2(F.relu6(block.norm1(x)))
        return block.norm2(x)

    results = []
    for fast in (True, False):
        model = decoder if fast else reference
        inputs = [d.clone().requires_grad_(True) for d in dense]
        if fast:
            out = model(inputs)
        else:
            x = inputs[0]
            for index, block in enumerate(model.blocks):
                x = plain_block(block, x)
                if index + 1 < len(inputs):
                    x = x + inputs[index + 1]
            out = model.predict(x)
        out.square().sum().backward()
        results.append([out] + [d.grad for d in inputs]
                       + [p.grad for p in model.parameters()]
                       + [b for b in model.buffers() if b.is_floating_point()])
    for ours, theirs in zip(*results):
        assert _rel(ours, theirs) < 1e-10
