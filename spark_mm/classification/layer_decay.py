"""Layer-wise lr decay of SparK's ImageNet fine-tuning for the ResNets mmpretrain cannot place.

mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` with ``ResNet.get_layer_depth``
(``flat_decay_mult=0``, ``bias_decay_mult=0``) is the official ``downstream_imagenet``
rule for ResNet-50/101/152 and the recipes use it; it lacks only ResNet-18/34 (its
``get_layer_depth`` raises for depths outside the official table) and timm's ResNet-200
through ``TIMMBackbone`` (no ``get_layer_depth``): this constructor is mmpretrain's with
the layer ids of :func:`resnet_cls_layer_ids` for those. Registered in spark_mm's
registry when configs import ``spark_mm.classification``.
"""
import math
import re
from collections import defaultdict
from typing import Dict, List, Tuple

import torch.nn as nn
from mmpretrain.engine.optimizers import LearningRateDecayOptimWrapperConstructor

from ..errors import SparKInputError
from ..registry import OPTIM_WRAPPER_CONSTRUCTORS

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
        LearningRateDecayOptimWrapperConstructor):
    """mmpretrain's layer-decay constructor with :func:`resnet_cls_layer_ids`.

    lr ``base_lr * layer_decay_rate ** (N + 1 - layer_id)``; weight decay as
    the official ``lr_decay.get_param_groups``: none on 1-D parameters and
    biases (``flat_decay_mult`` and ``bias_decay_mult`` default to 0 here),
    the optimizer's on the rest. ``paramwise_cfg.layer_decay_rate`` is
    required (official: 0.7 for R50, 0.8 for R101-R200).
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict = None):
        paramwise_cfg = dict(paramwise_cfg or {})
        if 'layer_decay_rate' not in paramwise_cfg:
            raise SparKInputError(
                'ResNetClsLayerDecayOptimWrapperConstructor needs '
                'paramwise_cfg.layer_decay_rate (official: 0.7 for '
                'ResNet-50, 0.8 for ResNet-101/152/200)')
        paramwise_cfg.setdefault('flat_decay_mult', 0.0)
        paramwise_cfg.setdefault('bias_decay_mult', 0.0)
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def add_params(self, params: List[dict], module: nn.Module,
                   prefix: str = '', get_layer_depth=None, **kwargs) -> None:
        if get_layer_depth is None:
            layer_ids, last = resnet_cls_layer_ids(
                [name for name, _ in module.named_parameters(remove_duplicate=False)])

            # mmpretrain scales by rate ** (max_id - layer_id - 1)
            def get_layer_depth(name):
                return layer_ids[name], last + 2
        super().add_params(params, module, prefix=prefix,
                           get_layer_depth=get_layer_depth, **kwargs)
