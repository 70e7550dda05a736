"""Layer-wise learning-rate decay for ResNet detectors and segmentors (SparK's COCO recipe).

mmdet and mmseg ship layer-decay constructors for ConvNeXt (and ViTs) only. This
one (registered in ours here, in mmdet's by importing :mod:`spark_mm.detection`
and in mmseg's by importing :mod:`spark_mm.segmentation`) follows the
official SparK Detectron2 code (``downstream_d2/lr_decay.py``), translated to
mmdet's ResNet names:

======================================  ==========================
parameter                               layer id
======================================  ==========================
``backbone.conv1/bn1`` (or ``stem``)    0
``backbone.layer1.*``                   1
``backbone.layer2.*``                   2
``backbone.layer3.<b>.*``               3 + b // 3  (groups of 3 blocks)
``backbone.layer4.*``                   N = 3 + ceil(len(layer3) / 3)
everything else (neck, heads)           N + 1
======================================  ==========================

A parameter with layer id ``d`` gets ``lr * decay_rate ** (N + 1 - d)``: the
heads keep the base lr, ``layer4`` gets one factor of ``decay_rate`` and the
stem ``decay_rate ** (N + 1)``. For ResNet-50 (6 blocks in ``layer3``) N = 5
and for ResNet-101 (23 blocks) N = 11, exactly the official values; other
depths follow the same rule (R18: N = 4, R152: N = 15).

``ResNetClsLayerDecayOptimWrapperConstructor`` (in spark_mm's registry, for
mmpretrain classifiers) is the same mechanism with the official ImageNet
fine-tuning rule (``downstream_imagenet``): its own block groups and
weight-decay groups, see :func:`resnet_cls_layer_ids`.

Weight decay (detection) follows Detectron2's defaults, which the official recipe keeps:
0 for the parameters of normalization layers (``norm_decay_mult=0``), the base
weight decay for everything else, biases included (``bias_decay_mult=1``).
"""
import math
import re
from collections import defaultdict
from typing import Dict, List, Tuple

import torch.nn as nn
from mmengine.dist import get_dist_info
from mmengine.logging import MMLogger
from mmengine.optim import DefaultOptimWrapperConstructor
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from ..errors import SparKInputError
from ..registry import OPTIM_WRAPPER_CONSTRUCTORS

NORM_TYPES = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm,
              nn.LocalResponseNorm)
_STAGE = re.compile(r'^layer(\d+)\.(\d+)\.')


def resnet_layer_ids(param_names: List[str],
                     prefix: str = 'backbone.') -> Tuple[Dict[str, int], int]:
    """Layer id of every parameter name, and N (the id of ``layer4``).

    ``param_names`` are the model's parameter names; the block count of
    ``layer3`` (hence N) is read from them, so any ResNet depth works.
    """
    layer3_blocks = {
        int(match.group(2))
        for name in param_names if name.startswith(prefix)
        for match in [_STAGE.match(name[len(prefix):])]
        if match and match.group(1) == '3'
    }
    num_layer3 = max(layer3_blocks) + 1 if layer3_blocks else 0
    last = 3 + math.ceil(num_layer3 / 3)
    layer_ids = {}
    for name in param_names:
        if not name.startswith(prefix):
            layer_ids[name] = last + 1
            continue
        local = name[len(prefix):]
        match = _STAGE.match(local)
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
            if stage not in (1, 2, 3, 4):
                raise SparKInputError(
                    f'parameter {name!r} is in stage {stage}; '
                    'ResNetLayerDecayOptimWrapperConstructor expects a '
                    'ResNet with layer1..layer4')
            layer_ids[name] = {1: 1, 2: 2, 3: 3 + block // 3, 4: last}[stage]
        elif local.split('.')[0] in ('conv1', 'bn1', 'norm1', 'stem'):
            layer_ids[name] = 0
        else:
            raise SparKInputError(
                f'cannot place backbone parameter {name!r} in a ResNet stage '
                '(expected conv1/bn1/stem/layer1..4.*); use this constructor '
                'only with ResNet backbones, or mmdet\'s/mmseg\'s '
                'LearningRateDecayOptimizerConstructor for ConvNeXt')
    return layer_ids, last


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class ResNetLayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Per-parameter lr ``base_lr * decay_rate ** (N + 1 - layer_id)``.

    ``paramwise_cfg`` keys: ``decay_rate`` (default 0.6, the SparK value; the
    key mmdet's and mmseg's layer-decay constructors use),
    ``norm_decay_mult`` (default 0.0) and ``bias_decay_mult`` (default 1.0),
    both multiplying the optimizer's weight decay.
    """

    rate_key = 'decay_rate'

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict = None):
        paramwise_cfg = dict(paramwise_cfg or {})
        paramwise_cfg.setdefault(self.rate_key, 0.6)
        paramwise_cfg.setdefault('norm_decay_mult', 0.0)
        paramwise_cfg.setdefault('bias_decay_mult', 1.0)
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    log_title = 'ResNet layer-wise lr decay'

    def layer_ids(self, names: List[str]) -> Tuple[Dict[str, int], int]:
        """Layer id of every parameter name, and N (the backbone's last id)."""
        return resnet_layer_ids(names)

    def decay_kind(self, name: str, param: nn.Parameter,
                   is_norm: bool) -> Tuple[str, float]:
        """(group kind, weight-decay multiplier) of one parameter."""
        if is_norm:
            return 'norm', self.paramwise_cfg['norm_decay_mult']
        if name.endswith('.bias'):
            return 'bias', self.paramwise_cfg['bias_decay_mult']
        return 'weight', 1.0

    def add_params(self, params: List[dict], module: nn.Module,
                   **kwargs) -> None:
        decay_rate = self.paramwise_cfg[self.rate_key]
        base_wd = self.base_wd or 0.0
        trainable = []
        seen = set()
        for module_name, sub in module.named_modules():
            for param_name, param in sub.named_parameters(recurse=False):
                if not param.requires_grad or param in seen:
                    continue
                seen.add(param)
                name = f'{module_name}.{param_name}' if module_name \
                    else param_name
                trainable.append((name, param, isinstance(sub, NORM_TYPES)))

        layer_ids, last = self.layer_ids([name for name, _, _ in trainable])
        groups = {}
        members = defaultdict(list)
        for name, param, is_norm in trainable:
            layer_id = layer_ids[name]
            kind, wd_mult = self.decay_kind(name, param, is_norm)
            key = f'layer_{layer_id}_{kind}'
            if key not in groups:
                lr_scale = decay_rate**(last + 1 - layer_id)
                groups[key] = dict(
                    params=[],
                    lr=self.base_lr * lr_scale,
                    lr_scale=lr_scale,
                    weight_decay=base_wd * wd_mult,
                    group_name=key)
            groups[key]['params'].append(param)
            members[key].append(name)

        if get_dist_info()[0] == 0:
            logger = MMLogger.get_current_instance()
            logger.info(
                f'{self.log_title} {decay_rate}, N={last}: ' +
                '; '.join(f'{key} lr x{groups[key]["lr_scale"]:.4g} '
                          f'wd {groups[key]["weight_decay"]:g} '
                          f'({len(members[key])} params)'
                          for key in sorted(groups)))
        params.extend(groups.values())


# Official downstream_imagenet/models/__init__.py groups the blocks of layer2
# and layer3 per depth, keyed by their block counts (L2, L3); the depths it
# lists: R50 (4, 6), R101 (4, 23), R152 (8, 36), R200 (24, 36), ECA-R269 (30, 48).
OFFICIAL_BLOCK_GROUPS = {(4, 6): (2, 3), (4, 23): (2, 3), (8, 36): (4, 4),
                         (24, 36): (4, 4), (30, 48): (5, 6)}
_CLS_STAGE = re.compile(r'^(?:timm_model\.)?layer(\d+)\.(\d+)\.')


def resnet_cls_layer_ids(param_names: List[str], prefix: str = 'backbone.'
                         ) -> Tuple[Dict[str, int], int]:
    """Layer ids of SparK's ImageNet fine-tuning (``downstream_imagenet``).

    With ``blk2, blk3`` from :data:`OFFICIAL_BLOCK_GROUPS`, ``N2 = ceil(L2 /
    blk2)``, ``N3 = ceil(L3 / blk3)`` and ``N = 2 + N2 + N3``: the stem (and
    every other backbone parameter outside ``layer1..4``) 0, ``layer1`` 1,
    ``layer2.<b>`` ``2 + b // blk2``, ``layer3.<b>`` ``2 + N2 + b // blk3``,
    ``layer4`` N, everything after the backbone (the classifier) N + 1.
    R50: N = 6, R101: 12, R152: 13, R200: 17. Depths the official table lacks
    (R18: L2 = L3 = 2) use R50's groups (2, 3). mmpretrain ``ResNet`` names
    and timm's through ``TIMMBackbone`` (``timm_model.layer1...``) both work.
    """
    blocks = defaultdict(set)
    for name in param_names:
        match = _CLS_STAGE.match(name[len(prefix):]) \
            if name.startswith(prefix) else None
        if match:
            blocks[int(match.group(1))].add(int(match.group(2)))
    if not blocks[2] or not blocks[3]:
        raise SparKInputError(
            f'no {prefix}layer2/layer3 blocks among the parameters: '
            'ResNetClsLayerDecayOptimWrapperConstructor expects a ResNet '
            "backbone (use mmpretrain's LearningRateDecayOptimWrapperConstructor "
            'for ConvNeXt)')
    num2, num3 = max(blocks[2]) + 1, max(blocks[3]) + 1
    blk2, blk3 = OFFICIAL_BLOCK_GROUPS.get((num2, num3), (2, 3))
    groups2, groups3 = math.ceil(num2 / blk2), math.ceil(num3 / blk3)
    last = 2 + groups2 + groups3
    layer_ids = {}
    for name in param_names:
        if not name.startswith(prefix):
            layer_ids[name] = last + 1
            continue
        match = _CLS_STAGE.match(name[len(prefix):])
        if match is None:
            layer_ids[name] = 0
            continue
        stage, block = int(match.group(1)), int(match.group(2))
        layer_ids[name] = {1: 1, 2: 2 + block // blk2,
                           3: 2 + groups2 + block // blk3}.get(stage, last)
    return layer_ids, last


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class ResNetClsLayerDecayOptimWrapperConstructor(
        ResNetLayerDecayOptimWrapperConstructor):
    """SparK's ImageNet fine-tuning groups (official ``downstream_imagenet``).

    lr ``base_lr * decay_rate ** (N + 1 - layer_id)`` with the layer ids of
    :func:`resnet_cls_layer_ids`; weight decay as the official
    ``lr_decay.get_param_groups``: none on 1-D parameters (norms, biases) and
    on every ``*.bias``, the optimizer's weight decay on the rest.
    ``paramwise_cfg``: ``layer_decay_rate`` (mmpretrain's key; 0.7 for R50,
    0.8 for R101-R200 in the official table).
    """

    log_title = 'ResNet (ImageNet fine-tuning) layer-wise lr decay'
    rate_key = 'layer_decay_rate'

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict = None):
        if self.rate_key not in (paramwise_cfg or {}):
            raise SparKInputError(
                'ResNetClsLayerDecayOptimWrapperConstructor needs '
                'paramwise_cfg.layer_decay_rate (official: 0.7 for '
                'ResNet-50, 0.8 for ResNet-101/152/200)')
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def layer_ids(self, names: List[str]) -> Tuple[Dict[str, int], int]:
        return resnet_cls_layer_ids(names)

    def decay_kind(self, name: str, param: nn.Parameter,
                   is_norm: bool) -> Tuple[str, float]:
        if param.ndim == 1 or name.endswith('.bias'):
            return 'no_decay', 0.0
        return 'decay', 1.0
