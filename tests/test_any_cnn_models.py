"""Whole backbones beyond plain conv/BN nets, through the coverage tool's
checks: converted, masked positions exactly zero at every scale, all-visible
equal to the dense model (float64), a finite training step, and a strict
export. A few small representatives here; the broad sweep is marked slow."""
import os

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.hub import get_config
from mmdet.registry import MODELS as MMDET_MODELS
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS

from spark_mm.checkpoint import BACKBONE_PREFIX
from spark_mm.checkpoint.checked_pretrained import backbone_weights
from spark_mm.errors import UnsupportedLayerError
from spark_mm.registry import MODELS
from tools.backbone_coverage import build_spark, check_backbone, check_model
from tools.backbone_coverage import main as coverage_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

REPRESENTATIVES = {
    'timm SE-ResNet': "dict(type='TIMMBackbone', model_name='seresnet18', "
                      'features_only=True, pretrained=False, out_indices=(1, 2, 3, 4), '
                      'layers=(1, 1, 1, 1))',
    'mmpretrain GroupNorm ResNet': "dict(type='ResNet', depth=18, base_channels=16, "
                                   'stem_channels=16, out_indices=(0, 1, 2, 3), '
                                   "norm_cfg=dict(type='GN', num_groups=8))",
    'timm MobileNetV3 (hard-sigmoid SE)': 'mobilenetv3_small_050',
}


def assert_row_passes(row):
    assert row.converted == 'yes', row
    for cell in (row.masked_zero, row.all_visible, row.train_step, row.export):
        assert cell.startswith('yes'), row


@pytest.mark.parametrize('name', list(REPRESENTATIVES))
def test_representative_backbone_passes_every_check(name):
    # the training step in channels_last, as the pretraining configs
    assert_row_passes(check_model(REPRESENTATIVES[name], size=64, channels_last=True))


class UpsampleTo(nn.Upsample):
    """Nearest upsampling to a given size (HRNet/PSP-style fusion)."""

    def forward(self, x, size=None):
        return nn.functional.interpolate(x, size=size, mode=self.mode)


class PyramidPoolNet(nn.Module):
    """Four stride-2 stages (grouped convs, GroupNorm); the stride-8 map gets
    a pyramid-pooling context: adaptive average pool to 4x4, 1x1 conv,
    upsampling back, added."""

    def __init__(self, width=8, stem_padding=1):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, stem_padding),
                                  nn.Conv2d(width, width, 3, 2, 1), nn.BatchNorm2d(width),
                                  nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, width, 3, 2 if i else 1, 1, groups=2),
                          nn.GroupNorm(2, width), nn.ReLU()) for i in range(4))
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.context = nn.Conv2d(width, width, 1)
        self.upsample = UpsampleTo(scale_factor=None, mode='nearest')

    def forward(self, x):
        x = self.stem(x)
        features = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index == 1:  # at 128 px: 16x16, pooled to the 4x4 mask grid
                pooled = self.context(self.pool(x))
                x = x + self.upsample(pooled, size=x.shape[-2:])
            features.append(x)
        return tuple(features)


def test_adaptive_pooling_and_upsampling_backbone_passes_every_check():
    assert_row_passes(check_backbone('pyramid pool', PyramidPoolNet, size=128))


def test_attention_and_selective_kernel_are_refused_at_build_in_one_line():
    for name, layer in (('vit_tiny_patch16_224', '(Attention)'),
                        ('skresnet18', '(SelectiveKernel)')):
        row = check_model(name, size=64)
        assert row.refused and layer in row.notes and '\n' not in row.notes, row


def test_a_scale_the_mask_grid_does_not_divide_is_refused_at_build():
    """An unpadded stem conv: 128 px gives a 126x126 map, which the 4x4 mask
    grid does not divide; only 32 px (a 1x1 grid) fits near 128."""
    with pytest.raises(UnsupportedLayerError) as error:
        build_spark(PyramidPoolNet(stem_padding=0), size=128)
    message = str(error.value)
    assert 'at 128x128' in message and 'stem.0 (SparseConv2d)' in message
    assert '126x126' in message and 'input sizes that work: 32x32' in message


@pytest.mark.parametrize('config,target', [
    ('seresnet50_pretrain.py', ('mmpretrain::seresnet/seresnet50_8xb32_in1k.py',
                                MMPRETRAIN_MODELS)),
    ('r50_gn_pretrain.py', ('mmdet::gn/mask-rcnn_r50_fpn_gn-all_2x_coco.py', MMDET_MODELS)),
])
def test_pretraining_config_exports_into_the_downstream_backbone(config, target, tmp_path):
    """The exported backbone loads strictly into the backbone of the
    downstream config and computes what the pretrained encoder computes."""
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', 'spark', config))
    assert cfg.work_dir.startswith('work_dirs/')
    cfg.model.input_size = 64  # the weights are the point, not the 224 px check
    with DefaultScope.overwrite_default_scope('spark_mm'):
        spark = MODELS.build(cfg.model)
    path = str(tmp_path / 'spark.pth')
    torch.save({'state_dict': spark.state_dict()}, path)
    downstream_config, registry = target
    backbone_cfg = get_config(downstream_config).model.backbone
    backbone_cfg.pop('init_cfg', None)  # pretrained weights: ours, loaded below
    backbone_cfg.out_indices = (0, 1, 2, 3)
    with DefaultScope.overwrite_default_scope(registry.scope):
        dense = registry.build(backbone_cfg)
    dense.load_state_dict(backbone_weights(path, BACKBONE_PREFIX), strict=True)
    # float64 and one memory layout: equal up to summation order
    spark.backbone.double().to(memory_format=torch.contiguous_format).eval()
    dense.double().eval()
    images = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        for ours, theirs in zip(spark.backbone(images), dense(images)):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)


SWEEP = [
    'resnet18', 'resnet18d', 'seresnet18', 'ecaresnet26t', 'resnet50_gn',
    'resnext50_32x4d', 'seresnext26d_32x4d', 'regnetx_002', 'regnety_002',
    'mobilenetv2_050', 'mobilenetv3_small_050', 'efficientnet_b0', 'ghostnet_050',
    'densenet121', 'dla34', 'cspresnet50', 'repvgg_a0', 'convnext_atto',
    'convnextv2_atto', 'hrnet_w18_small', 'vgg11_bn', 'resnest14d',
    'res2net50_14w_8s', 'rexnet_100', 'mixnet_s', 'fbnetc_100',
    "dict(type='SEResNet', depth=50, out_indices=(0, 1, 2, 3))",
    "dict(type='RegNet', arch='regnetx_400mf', out_indices=(0, 1, 2, 3))",
    "dict(type='MobileNetV2', widen_factor=0.5, out_indices=(1, 2, 4, 7))",
    "dict(type='MobileNetV3', arch='small', out_indices=(1, 3, 8, 11))",
    "dict(type='EfficientNet', arch='b0', out_indices=(2, 3, 4, 6))",
    "dict(type='HRNet', arch='w18')",
    "dict(type='mmdet.ResNet', depth=50, norm_cfg=dict(type='GN', num_groups=32), "
    'out_indices=(0, 1, 2, 3))',
    "dict(type='mmdet.RegNet', arch='regnetx_400mf', out_indices=(0, 1, 2, 3))",
]


@pytest.mark.slow
@pytest.mark.parametrize('spec', SWEEP)
def test_backbone_family_passes_every_check(spec):
    assert_row_passes(check_model(spec, size=128))


@pytest.mark.parametrize('argument', ['not_a_model', "dict(depth=18)", "dict(type='ResNet'"])
def test_coverage_tool_refuses_a_bad_model_argument_in_one_line(argument, capsys):
    assert coverage_main([argument]) == 2
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and 'config' in out
