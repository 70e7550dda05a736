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

The ImageNet fine-tuning rule (``downstream_imagenet``) is mmpretrain's
``LearningRateDecayOptimWrapperConstructor`` (see
:mod:`spark_mm.classification.layer_decay`).

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
