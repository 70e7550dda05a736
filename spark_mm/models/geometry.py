"""What a backbone outputs: channels and stride of each feature map."""
from typing import List, NamedTuple

import torch
import torch.nn as nn

from ..errors import SparKInputError


class FeatureInfo(NamedTuple):
    channels: int
    stride: int


def as_feature_list(outputs) -> List[torch.Tensor]:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


@torch.no_grad()
def probe_features(backbone: nn.Module, in_channels: int = 3,
                   probe_size: int = 256) -> List[FeatureInfo]:
    """Run a blank image through ``backbone`` (in eval mode) and read its outputs.

    Returns the outputs sorted by stride, finest first. Raises a ValueError for
    outputs that are not feature maps (e.g. pooled vectors).
    """
    was_training = backbone.training
    backbone.eval()
    try:
        parameter = next(backbone.parameters(), None)
        device = parameter.device if parameter is not None else 'cpu'
        image = torch.zeros(1, in_channels, probe_size, probe_size, device=device)
        outputs = as_feature_list(backbone(image))
    finally:
        backbone.train(was_training)
    infos = []
    for index, feature in enumerate(outputs):
        if feature.dim() != 4:
            raise SparKInputError(
                f'backbone output {index} has shape {tuple(feature.shape)}, '
                'not (B, C, H, W); SparK needs feature maps (for mmpretrain '
                'ConvNeXt set gap_before_final_norm=False)')
        infos.append(FeatureInfo(feature.shape[1], probe_size // feature.shape[-1]))
    return sorted(infos, key=lambda info: info.stride)


def remove_output_norms(backbone: nn.Module) -> List[str]:
    """Replace a backbone's per-stage output norms by identities; their names.

    mmpretrain's ConvNeXt (and its relatives) normalizes each returned stage
    with ``norm{i}``; the official SparK encoder feeds the raw stage outputs
    to the densify step, which normalizes them itself. Backbones without
    such norms (ResNets, timm ``features_only`` models) are left as they are.
    """
    out_indices = getattr(backbone, 'out_indices', None)
    if out_indices is None or getattr(backbone, 'gap_before_final_norm', True):
        return []
    names = [f'norm{index}' for index in out_indices]
    if not all(isinstance(getattr(backbone, name, None), nn.Module)
               for name in names):
        return []
    for name in names:
        setattr(backbone, name, nn.Identity())
    return names
