"""The decoder's composed upsample + conv1 equals the sequential modules."""
from types import SimpleNamespace

import pytest
import torch

from spark_mm.models.decoder import LightUNetDecoder, UpsampleBlock
from spark_mm.models.fast.fused_upsample import (composed_is_cheaper,
                                                 composed_upsample_conv)

SIZES = [(1, 1), (2, 3), (3, 2), (7, 7), (4, 5)]


def _block(cin, dtype=torch.float32, bias=True):
    block = UpsampleBlock(cin, max(cin // 2, 1), dict(type='BN'), fused=False)
    if not bias:
        block.upsample.bias = None
    return block.to(dtype)


def _pair_grads(block, x, fused):
    """Output of upsample+conv1 and the gradients of x and the parameters."""
    block.fused = fused
    block.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    out = block.upsample_conv1(x)
    weights = torch.randn_like(out, memory_format=torch.contiguous_format)
    (out * weights).sum().backward()
    params = [block.upsample.weight, block.conv1.weight]
    if block.upsample.bias is not None:
        params.append(block.upsample.bias)
    return out, [x.grad] + [p.grad for p in params]


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


@pytest.mark.parametrize('bias', [True, False])
@pytest.mark.parametrize('cin', [1, 3, 8])
@pytest.mark.parametrize('size', SIZES)
def test_exact_in_float64(cin, size, bias):
    block = _block(cin, torch.float64, bias)
    x = torch.randn(2, cin, *size, dtype=torch.float64)
    torch.manual_seed(1)
    ref, ref_grads = _pair_grads(block, x, False)
    torch.manual_seed(1)
    out, grads = _pair_grads(block, x, True)
    assert out.shape == ref.shape == (2, cin, 2 * size[0], 2 * size[1])
    assert _rel(out, ref) < 1e-10
    for grad, ref_grad in zip(grads, ref_grads):
        assert _rel(grad, ref_grad) < 1e-10


@pytest.mark.parametrize('channels_last,module_channels_last',
                         [(False, False), (True, True), (True, False)])
@pytest.mark.parametrize('cin,size', [(16, (1, 1)), (16, (7, 7)),
                                      (32, (2, 3)), (8, (12, 9))])
def test_fp32_and_layout(cin, size, channels_last, module_channels_last):
    block = _block(cin)
    x = torch.randn(3, cin, *size)
    if module_channels_last:
        block = block.to(memory_format=torch.channels_last)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    torch.manual_seed(1)
    ref, ref_grads = _pair_grads(block, x, False)
    torch.manual_seed(1)
    out, grads = _pair_grads(block, x, True)
    assert _rel(out, ref) < 1e-5
    for grad, ref_grad in zip(grads, ref_grads):
        assert _rel(grad, ref_grad) < 1e-4
    if size != (1, 1):  # a 1x1 map's layout is ambiguous
        layout = torch.channels_last if channels_last else torch.contiguous_format
        assert out.is_contiguous(memory_format=layout)
    for layout in (torch.channels_last, torch.contiguous_format):
        assert out.is_contiguous(memory_format=layout) == \
            ref.is_contiguous(memory_format=layout)


def test_bf16_autocast():
    block = _block(16)
    x = torch.randn(2, 16, 5, 6)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        ref, _ = _pair_grads(block, x, False)
        out, grads = _pair_grads(block, x, True)
    assert out.dtype == ref.dtype == torch.bfloat16
    assert _rel(out.float(), ref.float()) < 5e-2
    assert all(torch.isfinite(g).all() for g in grads)


def test_gradcheck():
    block = _block(2, torch.float64)

    def fn(x, up_w, up_b, conv_w):  # the function reads .weight and .bias
        return composed_upsample_conv(x, SimpleNamespace(weight=up_w, bias=up_b),
                                      SimpleNamespace(weight=conv_w))

    x = torch.randn(1, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        fn, (x, block.upsample.weight, block.upsample.bias, block.conv1.weight))


@pytest.mark.parametrize('channels_last', [False, True])
def test_whole_decoder(channels_last):
    seq = LightUNetDecoder(width=64, upsample_ratio=8, fused_upsample=False)
    seq.init_weights()
    for module in seq.modules():  # nonzero biases, so that they are checked
        if isinstance(module, torch.nn.ConvTranspose2d):
            torch.nn.init.normal_(module.bias)
    fused = LightUNetDecoder(width=64, upsample_ratio=8, fused_upsample=True)
    assert list(fused.state_dict()) == list(seq.state_dict())
    fused.load_state_dict(seq.state_dict())
    dense = [torch.randn(2, 64 >> i, 3 << i, 3 << i) for i in range(4)]
    dense[2] = None
    if channels_last:
        seq = seq.to(memory_format=torch.channels_last)
        fused = fused.to(memory_format=torch.channels_last)
        dense = [d if d is None else d.contiguous(memory_format=torch.channels_last)
                 for d in dense]
    outs = []
    for model in (seq, fused):
        inputs = [d if d is None else d.clone().requires_grad_(True) for d in dense]
        out = model(inputs)
        out.square().sum().backward()
        outs.append((out, [d.grad for d in inputs if d is not None],
                     [p.grad for p in model.parameters()]))
    (ref, ref_in, ref_p), (out, out_in, out_p) = outs
    assert _rel(out, ref) < 1e-5
    for grad, ref_grad in zip(out_in + out_p, ref_in + ref_p):
        assert _rel(grad, ref_grad) < 1e-4
    for a, b in zip(seq.state_dict().values(), fused.state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)  # BN running stats


def test_state_dict_unchanged_and_modes():
    block = UpsampleBlock(8, 4, dict(type='BN'))
    assert block.fused == 'auto'
    keys = set(block.state_dict())
    for fused in (True, False):
        other = UpsampleBlock(8, 4, dict(type='BN'), fused=fused)
        assert set(other.state_dict()) == keys
        other.load_state_dict(block.state_dict())
    assert {k.split('.')[0] for k in keys} == {
        'upsample', 'conv1', 'norm1', 'conv2', 'norm2'}
    with pytest.raises(ValueError):
        UpsampleBlock(8, 4, dict(type='BN'), fused='yes')


def test_auto_choice():
    # ResNet-50 decoder (width 512): not at 7x7 or 14x14, yes from 28x28
    for batch in (8, 16):
        assert not composed_is_cheaper((batch, 512, 7, 7), 512, 512, 512)
        assert not composed_is_cheaper((batch, 256, 14, 14), 256, 256, 256)
        assert composed_is_cheaper((batch, 128, 28, 28), 128, 128, 128)
        assert composed_is_cheaper((batch, 32, 112, 112), 32, 32, 32)
    block = UpsampleBlock(4, 2, dict(type='BN'))
    assert block.uses_fused(torch.zeros(2, 4, 32, 32))
    assert not block.uses_fused(torch.zeros(2, 4, 1, 1))
    block.fused = True
    assert block.uses_fused(torch.zeros(2, 4, 1, 1))
    block.fused = False
    assert not block.uses_fused(torch.zeros(2, 4, 32, 32))
