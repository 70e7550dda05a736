"""Which backbone canonical weights are for, read from their names and shapes.

Canonical naming (:mod:`spark_mm.checkpoint.sources`): torchvision's for
ResNet, mmpretrain's for ConvNeXt. Nothing here builds a model.
"""
import re
from typing import Mapping

import torch

from ..errors import CheckpointError

RESNET_DEPTHS = {  # depth -> (bottleneck, blocks per stage)
    18: (False, (2, 2, 2, 2)),
    34: (False, (3, 4, 6, 3)),
    50: (True, (3, 4, 6, 3)),
    101: (True, (3, 4, 23, 3)),
    152: (True, (3, 8, 36, 3)),
    200: (True, (3, 24, 36, 3)),  # timm only
}
# depths that mmdet/mmpretrain, torchvision and Detectron2 can build
STANDARD_DEPTHS = (18, 34, 50, 101, 152)
RESNET_BLOCK = re.compile(r'^layer([1-4])\.(\d+)\.')  # stage, block
_CONVNEXT_BLOCK = re.compile(r'^stages\.(\d)\.(\d+)\.')


def backbone_kind(state_dict: Mapping[str, torch.Tensor]) -> str:
    """'resnet' or 'convnext', from canonical parameter names."""
    if any(key.startswith('downsample_layers.') for key in state_dict):
        return 'convnext'
    if any(RESNET_BLOCK.match(key) for key in state_dict):
        return 'resnet'
    raise CheckpointError(
        f'unrecognised backbone (first keys: {list(state_dict)[:5]}); '
        'export supports ResNet and ConvNeXt, pass a SparK checkpoint of one '
        'of those')


def resnet_depth(state_dict: Mapping[str, torch.Tensor]) -> int:
    """Depth (18 .. 200) of a ResNet state dict, from its block counts."""
    blocks = [0, 0, 0, 0]
    for key in state_dict:
        match = RESNET_BLOCK.match(key)
        if match:
            stage = int(match.group(1)) - 1
            blocks[stage] = max(blocks[stage], int(match.group(2)) + 1)
    bottleneck = any('.conv3.' in key for key in state_dict)
    for depth, (is_bottleneck, counts) in RESNET_DEPTHS.items():
        if is_bottleneck == bottleneck and tuple(blocks) == counts:
            return depth
    raise CheckpointError(
        f'ResNet with blocks per stage {blocks} '
        f'({"bottleneck" if bottleneck else "basic"}) matches no depth of '
        f'{sorted(RESNET_DEPTHS)}; the checkpoint is truncated or not a '
        'standard ResNet, re-export it from a complete checkpoint')


def is_deep_stem(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """A ResNet with a deep stem (``stem.*``, mmdet's ``deep_stem=True``)."""
    return any(key.startswith('stem.') for key in state_dict)


def convnext_arch(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """mmpretrain ``ConvNeXt`` arch dict (depths, channels) of a state dict."""
    depths = [0, 0, 0, 0]
    for key in state_dict:
        match = _CONVNEXT_BLOCK.match(key)
        if match:
            stage = int(match.group(1))
            depths[stage] = max(depths[stage], int(match.group(2)) + 1)
    channels = []
    for stage in range(4):
        # the stem is (conv, norm), later downsamples are (norm, conv)
        key = f'downsample_layers.{stage}.{0 if stage == 0 else 1}.weight'
        if key not in state_dict:
            raise CheckpointError(
                f'ConvNeXt weights lack {key!r}; the checkpoint is truncated, '
                're-export it from a complete checkpoint')
        channels.append(int(state_dict[key].shape[0]))
    return dict(depths=depths, channels=channels)


def convnext_options(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """``layer_scale`` and ``grn`` (ConvNeXt V2) of ConvNeXt weights."""
    return dict(layer_scale=any(key.endswith('.gamma') and '.grn.' not in key
                                for key in state_dict),
                grn=any('.grn.' in key for key in state_dict))


def input_channels(state_dict: Mapping[str, torch.Tensor]) -> int:
    """Image channels the weights take (the first convolution's input width)."""
    for key in ('conv1.weight', 'stem.0.weight', 'stem.0.conv.weight',
                'downsample_layers.0.0.weight'):
        if key in state_dict and state_dict[key].dim() == 4:
            return int(state_dict[key].shape[1])
    return 3
