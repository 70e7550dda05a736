"""Sparse semantics of the converted encoder, on several backbone families."""
import copy

import pytest
import torch
import torch.nn as nn

from spark_mm.models import SparseContext, UnsupportedLayerError, sparsify
from spark_mm.models.sparse import SparseMixin
from spark_mm.registry import MODELS

TINY_CONVNEXT = dict(type='ConvNeXt', arch=dict(depths=[1, 1, 1, 1],
                                                channels=[16, 32, 64, 128]),
                     out_indices=(0, 1, 2, 3), gap_before_final_norm=False)
BACKBONES = {
    'mmpretrain-resnet18': dict(type='ResNet', depth=18, out_indices=(0, 1, 2, 3)),
    'mmpretrain-resnet50-syncbn': dict(type='ResNet', depth=50, out_indices=(0, 1, 2, 3),
                                       base_channels=16, norm_cfg=dict(type='SyncBN')),
    'mmdet-resnet18': dict(type='mmdet.ResNet', depth=18, out_indices=(0, 1, 2, 3)),
    'mmpretrain-convnext': TINY_CONVNEXT,
    'timm-resnet18': dict(type='TIMMBackbone', model_name='resnet18', features_only=True,
                          pretrained=False, out_indices=(1, 2, 3, 4)),
    'timm-convnext-atto': dict(type='TIMMBackbone', model_name='convnext_atto',
                               features_only=True, pretrained=False,
                               out_indices=(0, 1, 2, 3)),
}


def build_spark(backbone, **kwargs):
    densify_norm = (dict(type='LN2d', eps=1e-6) if 'convnext' in str(backbone).lower()
                    else dict(type='BN'))
    cfg = dict(type='SparK', backbone=backbone,
               neck=dict(type='LightUNetDecoder', width=64),
               densify_norm_cfg=densify_norm, input_size=64)
    cfg.update(kwargs)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def mask_at(active_b1hw, height, width):
    grid_h, grid_w = active_b1hw.shape[-2:]
    return (active_b1hw.repeat_interleave(height // grid_h, 2)
            .repeat_interleave(width // grid_w, 3))


@pytest.mark.parametrize('name', list(BACKBONES))
def test_masked_positions_stay_zero_in_every_layer(name):
    model = build_spark(BACKBONES[name])
    images = torch.randn(2, 3, 64, 96)
    active = model.generate_mask(images)
    offenders = []

    def check(module, args, kwargs, out):
        if isinstance(out, tuple):  # the backbone's features: checked below
            return
        data_format = kwargs.get('data_format', args[1] if len(args) > 1 else None)
        channels_last = (data_format == 'channel_last' if data_format else
                         getattr(module, 'sparse_channels_last', False))
        nchw = out.permute(0, 3, 1, 2) if channels_last else out
        hidden = ~mask_at(active, *nchw.shape[-2:])
        if (nchw * hidden).abs().max() != 0:
            offenders.append(module_names[module])

    module_names = {m: n for n, m in model.backbone.named_modules()}
    hooks = [m.register_forward_hook(check, with_kwargs=True) for m in model.backbone.modules()
             if isinstance(m, SparseMixin)]
    with model.sparse_context.masked(active):
        features = model.encode(images)
    for hook in hooks:
        hook.remove()
    assert len(hooks) > 10
    assert offenders == []
    for feature in features:
        hidden = ~mask_at(active, *feature.shape[-2:])
        assert (feature * hidden).abs().max() == 0
        assert (feature * ~hidden).abs().max() > 0


@pytest.mark.parametrize('name', ['mmpretrain-resnet18', 'mmpretrain-convnext',
                                  'timm-convnext-atto'])
def test_visible_features_do_not_depend_on_masked_pixels(name):
    model = build_spark(BACKBONES[name])
    images = torch.randn(4, 3, 64, 64)
    active = model.generate_mask(images)
    noisy = torch.where(mask_at(active, 64, 64), images,
                        torch.randn_like(images) * 10)
    with model.sparse_context.masked(active):
        clean_features = model.encode(images)
        noisy_features = model.encode(noisy)
    for clean, noisy in zip(clean_features, noisy_features):
        assert torch.equal(clean, noisy)


def test_batch_norm_statistics_cover_visible_positions_only():
    context = SparseContext()
    sparse_bn = nn.BatchNorm2d(8, momentum=0.3)
    with torch.no_grad():
        sparse_bn.weight.uniform_(0.5, 1.5)
        sparse_bn.bias.uniform_(-0.5, 0.5)
    plain_bn = nn.BatchNorm1d(8, momentum=0.3)
    plain_bn.load_state_dict(sparse_bn.state_dict())
    sparsify(sparse_bn, context)

    active = torch.rand(3, 1, 4, 4) > 0.5
    visible = mask_at(active, 8, 8)
    x = (torch.randn(3, 8, 8, 8) * 3 + 2) * visible
    with context.masked(active):
        out = sparse_bn(x)
    rows = x.permute(0, 2, 3, 1)[visible[:, 0]]  # (N_visible, C)
    expected = plain_bn(rows)
    torch.testing.assert_close(out.permute(0, 2, 3, 1)[visible[:, 0]], expected,
                               rtol=1e-5, atol=1e-5)
    assert (out * ~visible).abs().max() == 0
    torch.testing.assert_close(sparse_bn.running_mean, plain_bn.running_mean)
    torch.testing.assert_close(sparse_bn.running_var, plain_bn.running_var)


@pytest.mark.parametrize('name', list(BACKBONES))
def test_without_mask_the_converted_backbone_is_the_dense_one(name):
    dense = MODELS.build(BACKBONES[name])
    converted = copy.deepcopy(dense)
    sparsify(converted, SparseContext())
    images = torch.randn(2, 3, 64, 64)
    for mode in ('train', 'eval'):
        getattr(dense, mode)()
        getattr(converted, mode)()
        for expected, actual in zip(dense(images), converted(images)):
            assert torch.equal(expected, actual)
    for (key, expected), (key2, actual) in zip(dense.state_dict().items(),
                                               converted.state_dict().items()):
        assert key == key2 and torch.equal(expected, actual)


@pytest.mark.parametrize('name', ['mmpretrain-resnet18', 'mmdet-resnet18',
                                  'mmpretrain-convnext', 'timm-resnet18'])
def test_parameter_names_are_the_dense_backbone_names(name):
    model = build_spark(BACKBONES[name])
    dense = MODELS.build(BACKBONES[name])
    # SparK feeds ConvNeXt's raw stage outputs to the densify step, as the
    # official encoder: mmpretrain ConvNeXt's output norms are not part of it.
    output_norms = [key for key in dense.state_dict()
                    if 'convnext' in name and key.split('.')[0] in
                    ('norm0', 'norm1', 'norm2', 'norm3')]
    assert bool(output_norms) == ('convnext' in name)
    kept = [key for key in dense.state_dict() if key not in output_norms]
    assert list(model.backbone.state_dict()) == kept
    assert [n for n, _ in model.backbone.named_parameters()] == \
        [n for n, _ in dense.named_parameters() if n not in output_norms]
    missing, unexpected = dense.load_state_dict(model.backbone.state_dict(),
                                                strict=False)
    assert sorted(missing) == sorted(output_norms) and not unexpected
    spark_keys = set(model.state_dict())
    assert {f'backbone.{key}' for key in kept} <= spark_keys


def test_backbone_weights_load_into_mmdet_resnet():
    model = build_spark(BACKBONES['mmpretrain-resnet18'])
    detector_backbone = MODELS.build(BACKBONES['mmdet-resnet18'])
    result = detector_backbone.load_state_dict(model.backbone.state_dict(),
                                               strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_unsupported_layers_are_named_in_the_error():
    # refused before the backbone runs (a hybrid would fail in the probe)
    backbone = dict(type='TIMMBackbone', model_name='coatnet_nano_rw_224',
                    features_only=True, pretrained=False)
    with pytest.raises(UnsupportedLayerError,
                       match=r'stages_2\.blocks\.0\.attn \(Attention2d\)'):
        build_spark(backbone)


def test_two_models_in_one_process_do_not_interfere():
    first = build_spark(BACKBONES['mmpretrain-resnet18'])
    second = build_spark(BACKBONES['mmpretrain-resnet18'])
    second.load_state_dict(first.state_dict())
    dense = MODELS.build(BACKBONES['mmpretrain-resnet18'])
    dense.load_state_dict(first.backbone.state_dict())
    for model in (first, second, dense):
        model.eval()
    images = torch.randn(2, 3, 64, 64)
    active = first.generate_mask(images)
    expected = dense(images)
    with first.sparse_context.masked(active):
        # the second model and the dense backbone see no mask
        for out, ref in zip(second.backbone(images), expected):
            assert torch.equal(out, ref)
        masked_features = first.encode(images)
    assert any(not torch.equal(a, b) for a, b in zip(masked_features, expected[::-1]))
    assert not first.sparse_context.is_active and not second.sparse_context.is_active


def test_converting_a_backbone_bound_to_another_model_is_refused():
    model = build_spark(BACKBONES['mmpretrain-resnet18'])
    with pytest.raises(ValueError, match='already sparse'):
        sparsify(model.backbone, SparseContext())
