"""Backbone weights in the naming of other toolboxes, checked against the real models.

The SparK encoder keeps the dense backbone's names (mmpretrain/mmdet), see
:mod:`spark_mm.export`. From there:

* mmdet / mmpretrain: the names as they are; checked by loading into mmdet's
  ``ResNet`` (or mmpretrain's ``ConvNeXt``) with zero missing and zero
  unexpected keys.
* torchvision / timm: a pytorch-style ResNet already uses torchvision's names
  (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``); timm's
  ``ResNet`` uses the same ones. Only ``fc.*`` is absent.
* Detectron2: ``stem.conv1`` / ``stem.conv1.norm``, ``res2..res5`` for
  ``layer1..layer4``, ``convK.norm`` for ``bnK``, ``shortcut`` /
  ``shortcut.norm`` for ``downsample.0/1``, values as numpy arrays in a pickle
  ``{'model': ..., '__author__': ..., 'matching_heuristics': True}`` (the
  format the official SparK Detectron2 route reads).
"""
import os
import pickle
import re
from collections import OrderedDict
from typing import Dict, List, Mapping, Tuple

import torch

from .export import CheckpointError

RESNET_DEPTHS = {  # depth -> (bottleneck, blocks per stage)
    18: (False, (2, 2, 2, 2)),
    34: (False, (3, 4, 6, 3)),
    50: (True, (3, 4, 6, 3)),
    101: (True, (3, 4, 23, 3)),
    152: (True, (3, 8, 36, 3)),
}
_BLOCK = re.compile(r'^layer(\d)\.(\d+)\.')
_CONVNEXT_BLOCK = re.compile(r'^stages\.(\d)\.(\d+)\.')


def backbone_kind(state_dict: Mapping[str, torch.Tensor]) -> str:
    """'resnet' or 'convnext', from the parameter names."""
    if any(key.startswith('downsample_layers.') for key in state_dict):
        return 'convnext'
    if any(_BLOCK.match(key) for key in state_dict):
        return 'resnet'
    raise CheckpointError(
        f'unrecognised backbone (first keys: {list(state_dict)[:5]}); '
        'export supports ResNet (mmpretrain/mmdet naming) and mmpretrain '
        'ConvNeXt, pass a SparK checkpoint of one of those')


def resnet_depth(state_dict: Mapping[str, torch.Tensor]) -> int:
    """Depth (18/34/50/101/152) of a ResNet state dict, from its block counts."""
    blocks = [0, 0, 0, 0]
    for key in state_dict:
        match = _BLOCK.match(key)
        if match and 1 <= int(match.group(1)) <= 4:
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


def input_channels(state_dict: Mapping[str, torch.Tensor]) -> int:
    """Image channels the weights take (the first convolution's input width)."""
    for key in ('conv1.weight', 'stem.0.weight', 'stem.0.conv.weight',
                'downsample_layers.0.0.weight'):
        if key in state_dict and state_dict[key].dim() == 4:
            return int(state_dict[key].shape[1])
    return 3


def build_reference(state_dict: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """The dense mmdet/mmpretrain backbone these weights are meant for."""
    in_channels = input_channels(state_dict)
    if backbone_kind(state_dict) == 'resnet':
        from mmdet.models.backbones import ResNet
        deep_stem = any(key.startswith('stem.') for key in state_dict)
        return ResNet(depth=resnet_depth(state_dict), deep_stem=deep_stem,
                      in_channels=in_channels, out_indices=(0, 1, 2, 3))
    from mmpretrain.models.backbones import ConvNeXt
    layer_scale = 1e-6 if any(
        key.endswith('.gamma') for key in state_dict) else 0.0
    return ConvNeXt(arch=convnext_arch(state_dict), in_channels=in_channels,
                    out_indices=(0, 1, 2, 3),
                    gap_before_final_norm=False,
                    layer_scale_init_value=layer_scale)


def compare_keys(model: torch.nn.Module,
                 state_dict: Mapping[str, torch.Tensor]
                 ) -> Tuple[List[str], List[str], List[str]]:
    """(missing, unexpected, shape-mismatched) keys of ``state_dict`` for ``model``."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    mismatched = [
        f'{key} {tuple(state_dict[key].shape)} vs {tuple(value.shape)}'
        for key, value in expected.items()
        if key in state_dict and state_dict[key].shape != value.shape
    ]
    return missing, unexpected, mismatched


def _short(keys: List[str], limit: int = 8) -> str:
    shown = ', '.join(keys[:limit])
    return shown + (f' ... (+{len(keys) - limit} more)'
                    if len(keys) > limit else '')


def check_loads(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor],
                what: str, allowed_missing: Tuple[str, ...] = ()
                ) -> Dict[str, int]:
    """Load strictly (up to ``allowed_missing`` prefixes); raise a one-line error.

    Returns the counts of missing (allowed ones included), unexpected and
    shape-mismatched keys.
    """
    missing, unexpected, mismatched = compare_keys(model, state_dict)
    bad_missing = [key for key in missing
                   if not key.startswith(allowed_missing)]
    if bad_missing or unexpected or mismatched:
        parts = []
        if bad_missing:
            parts.append(f'{len(bad_missing)} missing: {_short(bad_missing)}')
        if unexpected:
            parts.append(f'{len(unexpected)} unexpected: {_short(unexpected)}')
        if mismatched:
            parts.append(f'{len(mismatched)} wrong shape: {_short(mismatched)}')
        raise CheckpointError(
            f'weights do not match {what}: ' + '; '.join(parts) +
            '. Export from a complete SparK checkpoint of this backbone '
            '(tools/export_backbone.py CKPT), or pass --prefix if its keys '
            'are not under "backbone."')
    model.load_state_dict(state_dict, strict=not missing)
    return dict(missing=len(missing), unexpected=0, mismatched=0)


def _require_resnet(state_dict: Mapping[str, torch.Tensor], target: str):
    if backbone_kind(state_dict) != 'resnet' or any(
            key.startswith('stem.') for key in state_dict):
        raise CheckpointError(
            f'{target} naming is defined for pytorch-style ResNet only (this '
            'backbone is a ConvNeXt or a deep-stem ResNet); export it with '
            '--formats mmdet')


def to_torchvision(state_dict: Mapping[str, torch.Tensor]
                   ) -> 'OrderedDict[str, torch.Tensor]':
    """torchvision/timm ResNet naming: identical for pytorch-style ResNet."""
    _require_resnet(state_dict, 'torchvision')
    return OrderedDict((key, value) for key, value in state_dict.items())


def detectron2_name(key: str) -> str:
    """Detectron2 ResNet name of an mmdet/torchvision ResNet parameter name."""
    match = _BLOCK.match(key)
    if match is None:
        key = 'stem.' + key
    else:
        stage = int(match.group(1))
        key = f'res{stage + 1}.' + key[len('layer') + 2:]
    key = re.sub(r'\bbn(\d)\b', r'conv\1.norm', key)
    return key.replace('downsample.0', 'shortcut').replace(
        'downsample.1', 'shortcut.norm')


def to_detectron2(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Detectron2 checkpoint dict (numpy values) for ``MODEL.WEIGHTS``."""
    _require_resnet(state_dict, 'Detectron2')
    model = OrderedDict((detectron2_name(key), value.detach().cpu().numpy())
                        for key, value in state_dict.items())
    return {'model': model, '__author__': 'spark_mm',
            'matching_heuristics': True}


def save_detectron2(state_dict: Mapping[str, torch.Tensor], path: str) -> str:
    """Write :func:`to_detectron2`'s dict as a pickle, atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp_path = f'{path}.tmp.{os.getpid()}'
    with open(tmp_path, 'wb') as f:
        pickle.dump(to_detectron2(state_dict), f)
    os.replace(tmp_path, path)
    return path


def expected_detectron2_names(depth: int) -> List[str]:
    """Every parameter/buffer name of Detectron2's ResNet-``depth`` (FPN style)."""
    bottleneck, counts = RESNET_DEPTHS[depth]
    norm = ('weight', 'bias', 'running_mean', 'running_var',
            'num_batches_tracked')
    names = ['stem.conv1.weight'] + [f'stem.conv1.norm.{n}' for n in norm]
    convs = ('conv1', 'conv2', 'conv3') if bottleneck else ('conv1', 'conv2')
    for stage, count in enumerate(counts, start=2):
        for block in range(count):
            prefix = f'res{stage}.{block}.'
            for conv in convs:
                names.append(prefix + conv + '.weight')
                names += [f'{prefix}{conv}.norm.{n}' for n in norm]
            if block == 0 and (bottleneck or stage > 2):
                names.append(prefix + 'shortcut.weight')
                names += [f'{prefix}shortcut.norm.{n}' for n in norm]
    return names
