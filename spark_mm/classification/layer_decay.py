"""Layer-wise learning-rate decay of SparK's ImageNet fine-tuning (ResNet).

The official ``downstream_imagenet`` rule on mmpretrain classifiers: the
mechanism of :class:`~spark_mm.engine.layer_decay.ResNetLayerDecayOptimWrapperConstructor`
(lr ``base_lr * decay_rate ** (N + 1 - layer_id)``) with the official
fine-tuning block groups (:func:`resnet_cls_layer_ids`) and weight-decay
groups. Registered in spark_mm's registry when configs import
``spark_mm.classification``.
"""
import math
import re
from collections import defaultdict
from typing import Dict, List, Tuple

import torch.nn as nn

from ..engine.layer_decay import ResNetLayerDecayOptimWrapperConstructor
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
