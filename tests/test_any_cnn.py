"""Sparse versions of spatially aggregating layers, against references
written from their definition: gather each sample's visible positions, apply
the dense formula to them alone, scatter the result back (masked positions
zero). float64, forward and backward, NCHW and channels_last, <= 1e-12."""
import copy
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.utils.se_layer import SELayer
from timm.layers import GroupNormAct
from timm.layers.eca import CecaModule, EcaModule
from timm.layers.split_attn import SplitAttn
from timm.layers.squeeze_excite import EffectiveSEModule, SEModule
from timm.models._efficientnet_blocks import SqueezeExcite

from spark_mm.errors import UnsupportedLayerError
from spark_mm.models.sparse import SparseContext, sparsify
from spark_mm.models.sparse.context import expand_mask

TOL = dict(rtol=0, atol=1e-12)
LAYOUTS = [torch.contiguous_format, torch.channels_last]


def random_active(batch, grid, generator):
    """(B, 1, grid, grid) bool, each sample with at least one visible patch."""
    active = torch.rand(batch, 1, grid, grid, generator=generator) < 0.5
    active[:, 0, 0, 0] |= ~active.flatten(1).any(1)
    return active


def gather_apply_scatter(module, x, active, out_channels=None):
    """``module`` (dense) on each sample's visible positions, laid out as a
    (1, C, 1, n) map, scattered back into zeros."""
    visible = expand_mask(active, *x.shape[-2:])[:, 0]
    samples = []
    for b in range(x.shape[0]):
        rows, cols = visible[b].nonzero(as_tuple=True)
        out = module(x[b][:, rows, cols][None, :, None, :])[0, :, 0]
        sample = x.new_zeros(out.shape[0], *x.shape[-2:])
        sample[:, rows, cols] = out
        samples.append(sample)
    return torch.stack(samples)


def run_both(dense, reference_fn, shape, grid=4, layout=torch.contiguous_format,
             masked_input_is_zero=False, train=True, seed=0):
    """Sparse (converted copy of ``dense``) and reference outputs and grads."""
    generator = torch.Generator().manual_seed(seed)
    dense = dense.double().train(train)
    sparse, reference = copy.deepcopy(dense), copy.deepcopy(dense)
    context = SparseContext()
    sparsify(sparse, context, name='layer')
    active = random_active(shape[0], grid, generator)
    x = torch.randn(*shape, generator=generator, dtype=torch.float64)
    if masked_input_is_zero:  # what a sparse encoder hands its layers
        x = x * expand_mask(active, *shape[-2:])
    x = x.contiguous(memory_format=layout)
    sparse.to(memory_format=layout)
    x_sparse, x_reference = x.clone().requires_grad_(), x.clone().requires_grad_()
    with context.masked(active):
        out = sparse(x_sparse)
    expected = reference_fn(reference, x_reference, active)
    weights = torch.randn(out.shape, generator=generator, dtype=torch.float64)
    grads = list(torch.autograd.grad((out * weights).sum(),
                                     [x_sparse] + list(sparse.parameters())))
    expected_grads = list(torch.autograd.grad(
        (expected * weights).sum(), [x_reference] + list(reference.parameters())))
    if masked_input_is_zero:
        # masked input positions do not exist: their gradient is not defined
        # (the sparse layer before zeroes it), so only visible ones compare
        visible = expand_mask(active, *shape[-2:])
        grads[0], expected_grads[0] = grads[0] * visible, expected_grads[0] * visible
    return active, out, expected, grads, expected_grads


def assert_matches(active, out, expected, grads, expected_grads):
    if out.dim() == 4 and out.shape[-1] % active.shape[-1] == 0:
        masked = ~expand_mask(active, *out.shape[-2:]).expand_as(out)
        assert torch.equal(out[masked], torch.zeros_like(out[masked]))
    torch.testing.assert_close(out, expected, **TOL)
    assert len(grads) == len(expected_grads)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, **TOL)


NORMS = {
    'group_norm': lambda: nn.GroupNorm(4, 16),
    'group_norm_one_group': lambda: nn.GroupNorm(1, 16),
    'timm_group_norm_act': lambda: GroupNormAct(16, num_groups=4, act_layer=nn.SiLU),
    'instance_norm_affine': lambda: nn.InstanceNorm2d(16, affine=True),
    'instance_norm_plain': lambda: nn.InstanceNorm2d(16),
}


def _randomize(module):
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.uniform_(-1, 1)
    return module


@pytest.mark.parametrize('layout', LAYOUTS, ids=['nchw', 'channels_last'])
@pytest.mark.parametrize('name', list(NORMS))
def test_norm_statistics_cover_visible_positions_of_each_sample(name, layout):
    # masked input values are arbitrary: statistics must ignore them
    results = run_both(_randomize(NORMS[name]()), gather_apply_scatter,
                       (3, 16, 8, 8), layout=layout)
    assert_matches(*results)


def test_instance_norm_running_stats_follow_the_visible_positions():
    dense = nn.InstanceNorm2d(8, track_running_stats=True, momentum=0.3).double()
    sparse, context = copy.deepcopy(dense), SparseContext()
    sparsify(sparse, context)
    generator = torch.Generator().manual_seed(1)
    active = random_active(3, 4, generator)
    x = torch.randn(3, 8, 8, 8, generator=generator, dtype=torch.float64)
    with context.masked(active):
        sparse(x)
    visible = expand_mask(active, 8, 8)[:, 0]
    means, variances = [], []
    for b in range(3):
        rows = x[b][:, visible[b]]
        means.append(rows.mean(1))
        variances.append(rows.var(1, correction=1))
    expected_mean = 0.3 * torch.stack(means).mean(0)
    expected_var = 0.7 + 0.3 * torch.stack(variances).mean(0)
    torch.testing.assert_close(sparse.running_mean, expected_mean, **TOL)
    torch.testing.assert_close(sparse.running_var, expected_var, **TOL)


SQUEEZE = {
    'timm_se': lambda: SEModule(16, rd_channels=4),
    'timm_se_maxpool': lambda: SEModule(16, rd_channels=4, add_maxpool=True),
    'timm_effective_se': lambda: EffectiveSEModule(16),
    'timm_efficientnet_se': lambda: SqueezeExcite(16, rd_ratio=0.25),
    'timm_eca': lambda: EcaModule(16),
    'timm_eca_mlp': lambda: EcaModule(16, use_mlp=True),
    'timm_ceca': lambda: CecaModule(16),
    'mmpretrain_se_layer': lambda: SELayer(16, ratio=4),
}


@pytest.mark.parametrize('layout', LAYOUTS, ids=['nchw', 'channels_last'])
@pytest.mark.parametrize('name', list(SQUEEZE))
def test_squeeze_excitation_pools_visible_positions_and_gates_them(name, layout):
    results = run_both(_randomize(SQUEEZE[name]()), gather_apply_scatter,
                       (3, 16, 8, 8), layout=layout)
    assert_matches(*results)


def test_squeeze_excitation_with_norm_uses_the_batch_of_visible_means():
    """ReXNet's SE: a BatchNorm on the per-sample vectors; training mode needs
    all samples at once, so the reference computes the visible means first."""
    dense = _randomize(SEModule(16, rd_channels=8, norm_layer=nn.BatchNorm2d))

    def reference(module, x, active):
        visible = expand_mask(active, *x.shape[-2:])[:, 0]
        means = torch.stack([x[b][:, visible[b]].mean(1) for b in range(x.shape[0])])
        gate = module.gate(module.fc2(module.act(module.bn(module.fc1(means[:, :, None, None])))))
        return x * gate * visible[:, None]

    assert_matches(*run_both(dense, reference, (4, 16, 8, 8)))


@pytest.mark.parametrize('layout', LAYOUTS, ids=['nchw', 'channels_last'])
@pytest.mark.parametrize('radix', [1, 2])
def test_split_attention_attends_over_visible_means(radix, layout):
    # kernel 1: the conv acts on each position, so per-sample gathering is exact;
    # eval: bn0 and bn1 use running statistics, as a per-sample reference can
    dense = _randomize(SplitAttn(16, 16, kernel_size=1, radix=radix,
                                 norm_layer=nn.BatchNorm2d))
    results = run_both(dense, gather_apply_scatter, (3, 16, 8, 8), layout=layout,
                       train=False)
    assert_matches(*results)


def bin_bounds(index, size, bins):
    return (index * size) // bins, -((-(index + 1) * size) // bins)


def adaptive_reference(reduce):
    def reference(module, x, active):
        visible = expand_mask(active, *x.shape[-2:])[:, 0]
        out_h, out_w = torch.nn.modules.utils._pair(module.output_size)
        height, width = x.shape[-2:]
        samples = []
        for b in range(x.shape[0]):
            values = []
            for i in range(out_h):
                for j in range(out_w):
                    top, bottom = bin_bounds(i, height, out_h)
                    left, right = bin_bounds(j, width, out_w)
                    inside = visible[b, top:bottom, left:right]
                    region = x[b, :, top:bottom, left:right][:, inside]
                    values.append(reduce(region) if region.shape[1] else
                                  x.new_zeros(x.shape[1]))
            samples.append(torch.stack(values, 1).view(x.shape[1], out_h, out_w))
        return torch.stack(samples)
    return reference


@pytest.mark.parametrize('layout', LAYOUTS, ids=['nchw', 'channels_last'])
@pytest.mark.parametrize('output_size', [1, 3, (2, 5)])
@pytest.mark.parametrize('kind', ['avg', 'max'])
def test_adaptive_pooling_reduces_the_visible_positions_of_each_bin(kind, output_size, layout):
    dense = (nn.AdaptiveAvgPool2d(output_size) if kind == 'avg'
             else nn.AdaptiveMaxPool2d(output_size))
    reduce = ((lambda region: region.mean(1)) if kind == 'avg'
              else (lambda region: region.amax(1)))
    # 12 px on a 4x4 grid: bins of 3 px (k = 1, 3) and uneven, overlapping ones
    results = run_both(dense, adaptive_reference(reduce), (3, 8, 12, 12),
                       layout=layout)
    assert_matches(*results)


def test_adaptive_pooling_bin_without_visible_positions_is_zero():
    sparse, context = nn.AdaptiveAvgPool2d(2), SparseContext()
    sparsify(sparse, context)
    active = torch.zeros(1, 1, 2, 2, dtype=torch.bool)
    active[0, 0, 0, 0] = True
    with context.masked(active):
        out = sparse(torch.ones(1, 3, 8, 8))
    assert torch.equal(out[0, :, 0, 0], torch.ones(3))
    assert torch.equal(out[0, :, 1:, :], torch.zeros(3, 1, 2))


def conv_reference(module, x, active):
    """Each visible output position: the sum over the kernel taps that fall
    on visible input positions (masked ones do not exist) of weight x input,
    per group, plus the bias; masked output positions zero."""
    mask = expand_mask(active, *x.shape[-2:]).to(x.dtype)
    columns = F.unfold(x * mask, module.kernel_size, module.dilation,
                       module.padding, module.stride)  # (B, C/g * k * k per group, L)
    out_h = math.floor((x.shape[2] + 2 * module.padding[0] - module.dilation[0]
                        * (module.kernel_size[0] - 1) - 1) / module.stride[0] + 1)
    out_w = math.floor((x.shape[3] + 2 * module.padding[1] - module.dilation[1]
                        * (module.kernel_size[1] - 1) - 1) / module.stride[1] + 1)
    groups = module.groups
    taps = module.kernel_size[0] * module.kernel_size[1]
    in_per_group = x.shape[1] // groups
    columns = columns.view(x.shape[0], groups, in_per_group * taps, -1)
    weight = module.weight.view(groups, -1, in_per_group * taps)
    out = torch.einsum('gok,bgkl->bgol', weight, columns).reshape(
        x.shape[0], -1, out_h, out_w)
    if module.bias is not None:
        out = out + module.bias.view(1, -1, 1, 1)
    return out * expand_mask(active, out_h, out_w)


CONVS = {
    'depthwise': lambda: nn.Conv2d(8, 8, 3, padding=1, groups=8),
    'grouped': lambda: nn.Conv2d(8, 12, 3, padding=1, groups=4),
    'dilated': lambda: nn.Conv2d(8, 8, 3, padding=2, dilation=2),
    'strided': lambda: nn.Conv2d(8, 8, 3, stride=2, padding=1),
    'strided_depthwise_5x5': lambda: nn.Conv2d(8, 8, 5, stride=2, padding=2, groups=8),
}


@pytest.mark.parametrize('layout', LAYOUTS, ids=['nchw', 'channels_last'])
@pytest.mark.parametrize('name', list(CONVS))
def test_convolutions_are_re_masked_at_their_output_scale(name, layout):
    results = run_both(CONVS[name](), conv_reference, (3, 8, 16, 16), layout=layout,
                       masked_input_is_zero=True)
    assert_matches(*results)


@pytest.mark.parametrize('layout', LAYOUTS, ids=['nchw', 'channels_last'])
def test_upsample_is_re_masked_at_the_target_scale(layout):
    def reference(module, x, active):
        # nearest x2: output (i, j) reads input (i // 2, j // 2), where visible
        rows = torch.arange(16) // 2
        out = x[:, :, rows][:, :, :, rows]
        return out * expand_mask(active, 16, 16)

    results = run_both(nn.Upsample(scale_factor=2, mode='nearest'), reference,
                       (3, 8, 8, 8), layout=layout, masked_input_is_zero=True)
    assert_matches(*results)


def test_bilinear_upsample_keeps_masked_positions_zero():
    sparse, context = nn.Upsample(scale_factor=2, mode='bilinear'), SparseContext()
    sparsify(sparse, context)
    active = random_active(2, 4, torch.Generator().manual_seed(3))
    x = torch.randn(2, 4, 8, 8) * expand_mask(active, 8, 8)
    with context.masked(active):
        out = sparse(x)
    masked = ~expand_mask(active, 16, 16).expand_as(out)
    assert torch.equal(out[masked], torch.zeros_like(out[masked]))


def test_squeeze_excitation_inner_layers_stay_dense():
    """The 1x1 convs inside an SE act on (B, C, 1, 1) vectors: not converted."""
    module = SEModule(16, rd_channels=4)
    converted = sparsify(module, SparseContext(), name='se')
    assert converted == ['se']
    assert type(module.fc1) is nn.Conv2d and type(module.fc2) is nn.Conv2d


def test_attention_is_refused_before_anything_runs():
    from timm.layers.attention import Attention
    block = nn.Sequential(nn.Conv2d(3, 8, 3), Attention(8, num_heads=2))
    with pytest.raises(UnsupportedLayerError, match=r'backbone\.1 \(Attention\)'):
        sparsify(block, SparseContext())
    assert type(block[0]) is nn.Conv2d  # nothing converted
