"""The fast path computes what the straightforward masked computation computes.

The reference here is written the obvious way, independently of
spark_mm.models.sparse: the dense layers of a copy of the model, every conv /
pooling / linear / layer norm output multiplied by the mask (expanded with
repeat_interleave at each layer), and batch norm on the visible positions
gathered by boolean indexing and scattered back into zeros. The plain
algorithm and the fast-path plug-in (visible-row BN and ResNet stages,
ConvNeXt pointwise layers on visible rows, the decoder's fused ops,
channels_last, each implementation the tuner can pick) must give the same
loss, prediction and gradients (float64, 1e-9 relative); bf16 autocast must
run and stay close.
"""
import copy
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from spark_mm.models.sparse import SparseMixin
from spark_mm.registry import MODELS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_CONVNEXT = dict(depths=[1, 1, 1, 1], channels=[16, 32, 64, 128])


def fast_path(channels_last=True, mode='fast', **kwargs):
    return dict(type='SparKFastPath', channels_last=channels_last,
                tuner=dict(mode=mode, cache_file=''), **kwargs)


# name -> SparK's fast_path
PATHS = {
    'plain': False,
    'fast': fast_path(),                      # every non-plain implementation
    'fast-maps': fast_path(mode='plain'),     # the plug-in's plain choices
    'fast-nchw': fast_path(channels_last=False),
    'fast-measured': fast_path(mode='measure'),
}


def build(backbone: str, fast=False):
    torch.manual_seed(0)
    if backbone == 'resnet':
        backbone_cfg = dict(type='ResNet', depth=18, base_channels=8,
                            stem_channels=8, out_indices=(0, 1, 2, 3))
        densify_norm = dict(type='BN')
    else:
        backbone_cfg = dict(type='ConvNeXt', arch=TINY_CONVNEXT,
                            out_indices=(0, 1, 2, 3), gap_before_final_norm=False,
                            layer_scale_init_value=0.5)
        densify_norm = dict(type='LN2d', eps=1e-6)
    model = MODELS.build(dict(
        type='SparK', backbone=backbone_cfg,
        neck=dict(type='LightUNetDecoder', width=64),
        densify_norm_cfg=densify_norm, input_size=64, mask_ratio=0.6,
        fast_path=fast))
    model.init_weights()
    # Non-trivial affine parameters, so that every term of the norms matters.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.3)
    return model.train()


def inputs(batch=4, size=64):
    gen = torch.Generator().manual_seed(3)
    images = torch.randn(batch, 3, size, size, generator=gen)
    scores = torch.rand(batch, (size // 32) ** 2, generator=gen)
    keep = scores.argsort(dim=1)[:, :2]
    active = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, keep, True)
    return images, active.view(batch, 1, size // 32, size // 32)


# ---- the straightforward reference ------------------------------------------
def expand(active_b1hw, height, width):
    return (active_b1hw.repeat_interleave(height // active_b1hw.shape[2], 2)
            .repeat_interleave(width // active_b1hw.shape[3], 3))


def reference_bn(bn, x, active_b1hw):
    visible = expand(active_b1hw, *x.shape[-2:])[:, 0]  # (B, H, W)
    x_bhwc = x.permute(0, 2, 3, 1)
    rows = F.batch_norm(x_bhwc[visible], bn.running_mean, bn.running_var,
                        bn.weight, bn.bias, True, 0.1, bn.eps)
    out = torch.zeros_like(x_bhwc)
    out[visible] = rows
    return out.permute(0, 3, 1, 2)


def remask_hook(channels_last_output):
    def hook(module, args, kwargs, out):
        data_format = kwargs.get('data_format', args[1] if len(args) > 1 else None)
        last = (data_format in ('channel_last', 'channels_last')
                if data_format is not None else channels_last_output)
        height, width = out.shape[1:3] if last else out.shape[2:]
        mask = expand(module.reference_active, height, width).to(out.dtype)
        return out * (mask.permute(0, 2, 3, 1) if last else mask)
    return hook


def make_reference(model):
    """A copy of ``model`` whose sparse layers are dense layers + the hooks
    above, and whose fast-path layers are the plain ones."""
    ref = copy.deepcopy(model)
    ref.fast_path = None
    for module in ref.modules():
        if type(module).__module__ != 'spark_mm.models.sparse.convert':
            continue  # not a layer made sparse or fast
        masked = (isinstance(module, SparseMixin)
                  and module.sparse_context is ref.sparse_context)
        module.__class__ = type(module).__bases__[-1]  # (mixin, dense class)
        if not masked:
            continue
        if isinstance(module, nn.BatchNorm2d):
            module.forward = (lambda m: lambda x: reference_bn(
                m, x, m.reference_active))(module)
        elif isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d,
                                 nn.LayerNorm, nn.Linear)):
            last = isinstance(module, nn.Linear) or (
                isinstance(module, nn.LayerNorm)
                and not type(module).__name__.endswith('2d'))
            module.register_forward_hook(remask_hook(last), with_kwargs=True)
    return ref


def reference_pred(ref, images, active):
    for module in ref.modules():
        module.reference_active = active
    masked = images * expand(active, *images.shape[-2:]).to(images.dtype)
    features = sorted(ref.backbone(masked), key=lambda f: f.shape[-1])
    dense = []
    for scale, feature in enumerate(features):
        feature = ref.densify.norms[scale](feature)
        visible = expand(active, *feature.shape[-2:])
        feature = torch.where(visible, feature, ref.densify.mask_tokens[scale])
        dense.append(ref.densify.projections[scale](feature))
    return ref.neck(dense)


def fast_pred(model, images, active, dtype=None):
    with torch.autocast('cpu', dtype=dtype or torch.bfloat16,
                        enabled=dtype is not None):
        return model.reconstruct(images, active)


def loss_of(model, pred, images, active):
    return model.head.loss(pred, images, active)


def grads(model):
    return {name: p.grad.clone() for name, p in model.named_parameters()
            if p.grad is not None}


# Compared in float64, where only rounding separates two correct
# implementations: fp32 gradients of a freshly initialized SparK are
# ill-conditioned (1 vs 2 threads alone move them by 1e-2), float64 ones agree
# to 1e-12, so 1e-9 catches any wrong formula.
def assert_same(pred, ref_pred, loss, ref_loss, model, ref, rtol=1e-9,
                grad_rtol=1e-9):
    assert torch.isfinite(loss)
    assert abs(loss.item() - ref_loss.item()) <= rtol * abs(ref_loss.item())
    # At init the loss is dominated by the target: compare predictions too.
    assert ref_pred.abs().max() > 0
    err = (pred - ref_pred).abs().max() / ref_pred.abs().max()
    assert err <= rtol, f'prediction: relative error {err:.2e}'
    fast_grads, ref_grads = grads(model), grads(ref)
    assert fast_grads.keys() == ref_grads.keys()
    for name, grad in fast_grads.items():
        scale = ref_grads[name].abs().max().clamp_min(1e-300)
        err = (grad - ref_grads[name]).abs().max() / scale
        assert err <= grad_rtol, f'{name}: relative gradient error {err:.2e}'


def run_fast(model, images, active):
    pred = fast_pred(model, images, active)
    loss = loss_of(model, pred, images, active)
    loss.backward()
    return pred, loss


# ---- tests ---------------------------------------------------------------------
@pytest.mark.parametrize('path', list(PATHS))
@pytest.mark.parametrize('backbone', ['resnet', 'convnext'])
def test_fast_path_equals_reference(backbone, path):
    model = build(backbone, PATHS[path]).double()
    ref = make_reference(model)
    images, active = inputs()
    images = images.double()
    pred, loss = run_fast(model, images, active)
    ref_pred = reference_pred(ref, images, active)
    ref_loss = loss_of(ref, ref_pred, images, active)
    ref_loss.backward()
    assert_same(pred, ref_pred, loss, ref_loss, model, ref)
    # Running statistics moved the same way.
    for (name, buf), ref_buf in zip(model.named_buffers(), ref.buffers()):
        if 'running' in name:
            torch.testing.assert_close(buf, ref_buf, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize('channels_last', [False, True])
def test_sparse_bn_keeps_little_for_the_backward(channels_last):
    """Sparse BN (gather, batch norm of the rows, scatter) saves only the
    visible rows in either layout: 2 of 16 patches visible here, an eighth of
    the map."""
    from spark_mm.models.sparse import SparseContext, sparsify
    bn, context = nn.BatchNorm2d(16), SparseContext()
    sparsify(bn, context, name='bn')
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 16, 8, 16).contiguous(memory_format=layout)
    x.requires_grad_(True)
    active = torch.zeros(2, 1, 2, 4, dtype=torch.bool)
    active[0, 0, 0, 1] = active[1, 0, 1, 3] = True
    saved = []
    with context.masked(active), torch.autograd.graph.saved_tensors_hooks(
            lambda t: saved.append(t.numel()) or t, lambda t: t):
        mask = context.mask_like(x)
        out = bn(x * mask)
    map_size = x.numel()
    big = [n for n in saved if n >= map_size // 8]  # the mask is 1/16
    assert big == [map_size // 8], saved  # the visible rows only
    out.sum().backward()
    assert x.grad.is_contiguous(memory_format=layout)
    assert torch.all(out[~mask.bool().expand_as(x)] == 0)


def test_convnext_blocks_take_the_visible_rows_path():
    model = build('convnext', fast_path())
    blocks = [m for m in model.backbone.modules()
              if type(m).__name__ == 'SparseConvNeXtBlock']
    assert blocks, 'mmpretrain ConvNeXt blocks should get the pointwise fast path'
    calls = []
    for block in blocks:
        block.pointwise_conv1.register_forward_hook(
            lambda m, a, out: calls.append(out.dim()))
    images, active = inputs()
    fast_pred(model, images, active)
    assert calls == []  # the sparse Linear modules were not run densely
    # Without a mask the converted backbone is the dense one.
    dense = MODELS.build(dict(type='ConvNeXt', arch=TINY_CONVNEXT,
                              out_indices=(0, 1, 2, 3),
                              gap_before_final_norm=False,
                              layer_scale_init_value=0.5))
    # SparK does not use ConvNeXt's output norms (as the official encoder).
    missing, unexpected = dense.load_state_dict(model.backbone.state_dict(),
                                                strict=False)
    assert not unexpected
    assert sorted({key.split('.')[0] for key in missing}) == [
        'norm0', 'norm1', 'norm2', 'norm3']
    for index in range(4):
        setattr(dense, f'norm{index}', nn.Identity())
    dense.train()
    for ours, theirs in zip(model.backbone(images), dense(images)):
        torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize('backbone', ['resnet', 'convnext'])
def test_channels_last_equals_nchw(backbone):
    nchw = build(backbone, fast_path(channels_last=False)).double()
    last = build(backbone, fast_path()).double()
    last.load_state_dict(nchw.state_dict())
    images, active = inputs()
    images = images.double()
    pred, loss = run_fast(nchw, images, active)
    pred_last, loss_last = run_fast(last, images, active)
    conv = next(m for m in last.backbone.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert pred_last.is_contiguous(memory_format=torch.channels_last)
    assert_same(pred_last, pred, loss_last, loss, last, nchw)


def bf16_errors(model, reference64, images, active):
    """Relative L2 errors of ``model``'s prediction and gradients under bf16
    autocast against ``reference64`` (same weights, float64)."""
    pred64 = fast_pred(reference64, images.double(), active)
    loss_of(reference64, pred64, images.double(), active).backward()
    model.zero_grad(set_to_none=True)
    pred16 = fast_pred(model, images, active, dtype=torch.bfloat16)
    assert pred16.dtype == torch.bfloat16
    with torch.autocast('cpu', dtype=torch.bfloat16):
        loss16 = loss_of(model, pred16, images, active)
    loss16.backward()
    assert torch.isfinite(loss16)

    def flat(m):
        return torch.cat([p.grad.double().flatten() for _, p in
                          sorted(m.named_parameters()) if p.grad is not None])
    grad16, grad64 = flat(model), flat(reference64)
    assert torch.isfinite(grad16).all()
    return ((pred16.double() - pred64).norm() / pred64.norm()).item(), \
        ((grad16 - grad64).norm() / grad64.norm()).item()


# The tolerance bf16 allows is the error bf16 brings to the plain algorithm
# itself, against float64 on the same weights and inputs. Every conv / linear
# under autocast rounds its operands to bf16 (unit roundoff 2**-8): the error
# is a sum of many independent roundings, whose L2 norm is concentrated. The
# fast path rounds the same values at partly other points (rows instead of
# maps, fused ops), so its error is another draw of the same size: measured on
# these tiny models, 5 inputs, 3 implementations, its L2 error was 0.93-1.01
# of the plain path's for the prediction (6e-2 ResNet, 2e-2 ConvNeXt) and
# 0.79-1.04 for the gradients (0.5 and 0.17: a freshly initialized SparK's
# gradients are ill-conditioned). A fast path that lost precision (a sum kept
# in bf16, a term rounded twice) would exceed the plain path's error.
BF16_ERROR_RATIO = 1.25


@pytest.mark.parametrize('path', ['fast', 'fast-maps', 'fast-nchw'])
@pytest.mark.parametrize('backbone', ['resnet', 'convnext'])
def test_bf16_fast_path_is_as_accurate_as_the_plain_path(backbone, path):
    images, active = inputs()
    reference64 = build(backbone, False).double()
    plain = bf16_errors(build(backbone, False), reference64, images, active)
    reference64.zero_grad(set_to_none=True)
    fast = bf16_errors(build(backbone, PATHS[path]), reference64, images, active)
    for what, fast_error, plain_error in zip(('prediction', 'gradients'), fast, plain):
        assert fast_error <= BF16_ERROR_RATIO * plain_error, (
            f'bf16 {what}: the {path} path is {fast_error:.2e} from float64, '
            f'the plain path {plain_error:.2e}')


@pytest.mark.slow
def test_benchmark_tool_prints_ratios(tmp_path):
    cmd = [sys.executable, os.path.join(ROOT, 'tools', 'benchmark.py'),
           '--config', os.path.join(ROOT, 'configs', 'spark', 'demo_r18.py'),
           '--batch', '2', '--size', '64', '--decoder-width', '64',
           '--iters', '1', '--warmup', '1', '--channels-last',
           '--candidates', 'ours', 'dense', 'decoder', 'mmpretrain',
           'mmpretrain_nhwc', '--retune',
           '--parallel-memory', '--cfg-options',
           'model.fast_path.compact_saved_maps=False']
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    table = [line.split() for line in out.splitlines()]
    rows = {words[0]: words[1:3] for words in table
            if len(words) > 2 and words[1] == 'fp32'}  # name, precision, layout
    assert rows == {'ours': ['fp32', 'NHWC'], 'dense': ['fp32', 'NHWC'],
                    'decoder': ['fp32', 'NHWC'], 'mmpretrain': ['fp32', 'NCHW'],
                    'mmpretrain_nhwc': ['fp32', 'NHWC']}, out
    assert 'ratio step time ours/mmpretrain_nhwc:' in out, out
    assert 'ratio step time ours/mmpretrain:' in out, out
    assert 'ratio step time ours/dense:' in out, out
    assert 'ratio peak memory ours/mmpretrain:' in out, out
    assert "cfg-options: {'model.fast_path.compact_saved_maps': False}" in out, out


@pytest.mark.parametrize('args, code, message', [
    (['--config', 'no_such_config.py'], 1, "error: config 'no_such_config.py' does not exist"),
    (['--decoder-width', '100'], 1, 'error: decoder width 100 must be divisible'),
    (['--batch', '0'], 2, '--batch must be at least 1'),
])
def test_benchmark_bad_input_is_one_line(tmp_path, args, code, message):
    cmd = [sys.executable, os.path.join(ROOT, 'tools', 'benchmark.py'), '--config',
           os.path.join(ROOT, 'configs', 'spark', 'demo_r18.py'), '--size', '64',
           '--candidates', 'ours', '--no-memory'] + args
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path,
                            timeout=600)
    assert result.returncode == code, result.stderr[-3000:]
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith(
        message if code == 1 else 'benchmark.py: error: ' + message), result.stderr


def test_benchmark_ratios_are_against_the_faster_mmpretrain_layout():
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    from benchmark import Candidate, report
    cands = {'ours': Candidate('ours', 'fp32', True, times=[4.0, 4.2, 4.1]),
             'mmpretrain': Candidate('mmpretrain', 'fp32', False, times=[10.0, 10.0, 10.0]),
             'mmpretrain_nhwc': Candidate('mmpretrain_nhwc', 'fp32', True,
                                          times=[8.0, 8.4, 8.2])}
    for name, cand in cands.items():
        cand.peak_bytes = dict(ours=1, mmpretrain=4, mmpretrain_nhwc=2)[name] * 2**30
    lines = []
    report(cands, 16, log=lines.append)
    ours = next(line.split() for line in lines if line.startswith('ours'))
    # columns: name, precision, layout, s/step, img/s, x base, MiB, x base
    assert ours[5] == f'{4.1 / 8.2:.3f}' and ours[7] == f'{1 / 2:.3f}', lines
    assert any(line.startswith('base: mmpretrain_nhwc (NHWC)') for line in lines), lines
    assert f'ratio step time ours/mmpretrain: {0.41:.3f}' in '\n'.join(lines)
    # the other way round, NCHW is the base
    cands['mmpretrain'].times = [6.0, 6.0, 6.0]
    lines = []
    report(cands, 16, log=lines.append)
    assert any(line.startswith('base: mmpretrain (NCHW)') for line in lines), lines


def test_benchmark_config_takes_cfg_options():
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    from benchmark import load_config
    config = os.path.join(ROOT, 'configs', 'spark', 'r50_pretrain.py')
    cfg = load_config(config, 512, {'model.fast_path.compact_saved_maps': False,
                                    'model.mask_ratio': 0.75})
    assert not cfg.model.fast_path.get('tuner', {}).get('refresh')
    assert load_config(config, 512, retune=True).model.fast_path.tuner.refresh is True
    assert cfg.model.fast_path.compact_saved_maps is False
    assert cfg.model.mask_ratio == 0.75 and cfg.model.neck.width == 512
    assert cfg.model.backbone.norm_cfg.type == 'BN'  # one process


def test_relu6_in_place_keeps_only_its_output():
    from spark_mm.models.fast.relu6_inplace import ReLU6InPlace
    x = torch.randn(2, 4, 8, 8) * 5
    x[0, 0, 0, :4] = torch.tensor([0.0, 6.0, -0.0, 3.0])  # the edges of the gradient
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(
            lambda t: saved.append(t.numel()) or t, lambda t: t):
        y_ours = ReLU6InPlace()(ours * 1)
    y_theirs = nn.ReLU6(inplace=True)(theirs * 1)
    grad = torch.randn_like(y_ours)
    (y_ours * grad).sum().backward()
    (y_theirs * grad).sum().backward()
    assert torch.equal(y_ours, y_theirs)
    assert torch.equal(ours.grad, theirs.grad)
    assert saved == [x.numel()]  # torch's hardtanh_ also keeps a copy of its input


def test_compact_saved_maps_give_the_same_step(monkeypatch):
    """Encoder maps kept as visible rows: bit-identical loss and gradients."""
    from spark_mm.models.fast.compact_saved_maps import CompactSavedMaps
    monkeypatch.setattr(CompactSavedMaps, 'min_numel', 1)  # tiny test maps too
    compacted = []
    original = CompactSavedMaps._compact

    def counting(self, t):
        packed = original(self, t)
        compacted.append(packed is not t)
        return packed
    monkeypatch.setattr(CompactSavedMaps, '_compact', counting)
    images, active = inputs()
    results = []
    for compact in (False, True):
        model = build('resnet', fast_path())
        model.fast_path.compact_saved_maps = compact
        pred, loss = run_fast(model, images, active)
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()
                                         if p.grad is not None]))
    assert sum(compacted) >= 10, compacted  # the encoder's maps went compact
    (loss_full, grads_full), (loss_compact, grads_compact) = results
    assert torch.equal(loss_full, loss_compact)
    assert len(grads_full) == len(grads_compact)
    for full, compact in zip(grads_full, grads_compact):
        assert torch.equal(full, compact)


def test_compact_saved_maps_store_only_masked_maps_as_rows():
    from spark_mm.models.sparse import SparseContext
    from spark_mm.models.fast.compact_saved_maps import CompactSavedMaps
    context = SparseContext()
    active = torch.zeros(2, 1, 2, 2, dtype=torch.bool)
    active[0, 0, 0, 0] = active[1, 0, 1, 1] = True
    store = CompactSavedMaps(context, min_numel=1)
    with context.masked(active), store:
        dense = torch.randn(2, 8, 16, 16).contiguous(memory_format=torch.channels_last)
        masked = dense * context.mask_like(dense)
        packed = store.pack(masked)
        assert store.pack(masked) is packed  # saved twice, packed once
        assert packed.rows.shape == (2 * 8 * 8, 8)  # 2 of 8 patches, 64 px each
        assert torch.equal(store.unpack(packed), masked)
        assert store.unpack(packed).is_contiguous(memory_format=torch.channels_last)
        assert store.pack(dense) is dense  # not zero where masked: kept whole
        nchw = masked.contiguous()
        assert store.pack(nchw) is nchw
        masked.add_(1)  # modified in place: packed again, now whole
        assert store.pack(masked) is masked
