"""Weights checked against the real models of other toolboxes.

Each target model (mmdet/mmpretrain, torchvision, timm) is built with the
architecture read from the weights and loads them; :func:`check_loads`
accepts only the missing keys that the target initialises itself and reports
what the real ``load_state_dict`` said. Detectron2 is not installed here:
its names are checked against the complete list of its ResNet's names.
"""
import re
from typing import Dict, List, Mapping

import torch
import torchvision
from mmpretrain.models.backbones import ConvNeXt as MMPretrainConvNeXt
from timm.models.convnext import ConvNeXt as TimmConvNeXt
from torchvision.models.convnext import CNBlockConfig
from torchvision.models.convnext import ConvNeXt as TorchvisionConvNeXt

from ..errors import CheckpointError
from .architecture import (RESNET_DEPTHS, STANDARD_DEPTHS, backbone_kind,
                           convnext_arch, convnext_options, input_channels,
                           is_deep_stem, resnet_depth)
from .key_report import NOTHING, compare_keys, listed
from .names import CONVNEXT_STAGE_NORM

STAGE_NORM_NOTE = ('absent: initialised fresh by the downstream model '
                   '(weight 1, bias 0), as in the official SparK/ConvNeXt '
                   'detection code')


# ------------------------------------------------------------ target models
def build_reference(state_dict: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """The dense mmdet/mmpretrain backbone these (canonical) weights are for."""
    if backbone_kind(state_dict) == 'resnet':
        depth = resnet_depth(state_dict)
        if depth not in STANDARD_DEPTHS:
            raise CheckpointError(
                f'mmdet/mmpretrain ResNet has no depth {depth} (only '
                f'{", ".join(map(str, STANDARD_DEPTHS))}); export ResNet-'
                f'{depth} with --formats timm')
        # mmdet is optional: `import spark_mm` and ConvNeXt exports work without it
        from mmdet.models.backbones import ResNet
        return ResNet(depth=depth, deep_stem=is_deep_stem(state_dict),
                      in_channels=input_channels(state_dict),
                      out_indices=(0, 1, 2, 3))
    options = convnext_options(state_dict)
    return MMPretrainConvNeXt(
        arch=convnext_arch(state_dict), out_indices=(0, 1, 2, 3),
        in_channels=input_channels(state_dict), gap_before_final_norm=False,
        layer_scale_init_value=1e-6 if options['layer_scale'] else 0.0,
        use_grn=options['grn'])


def build_timm_convnext(state_dict: Mapping[str, torch.Tensor]
                        ) -> torch.nn.Module:
    """timm's ``ConvNeXt`` of the architecture of canonical ConvNeXt weights."""
    arch, options = convnext_arch(state_dict), convnext_options(state_dict)
    return TimmConvNeXt(depths=tuple(arch['depths']),
                        dims=tuple(arch['channels']), num_classes=0,
                        in_chans=input_channels(state_dict),
                        ls_init_value=1e-6 if options['layer_scale'] else None,
                        use_grn=options['grn'])


def build_torchvision_convnext(state_dict: Mapping[str, torch.Tensor]
                               ) -> torch.nn.Module:
    """torchvision's ``ConvNeXt`` of the architecture of canonical weights."""
    arch = convnext_arch(state_dict)
    channels = list(arch['channels']) + [None]
    model = TorchvisionConvNeXt([CNBlockConfig(channels[i], channels[i + 1],
                                               depth)
                                 for i, depth in enumerate(arch['depths'])])
    in_channels = input_channels(state_dict)
    if in_channels != 3:  # no torchvision argument for it: a new stem conv
        model.features[0][0] = torch.nn.Conv2d(in_channels, channels[0], 4, 4)
    return model


def build_torchvision_resnet(state_dict: Mapping[str, torch.Tensor]
                             ) -> torch.nn.Module:
    """``torchvision.models.resnetXX`` of the depth of canonical weights."""
    depth = resnet_depth(state_dict)
    model = getattr(torchvision.models, f'resnet{depth}')(weights=None)
    if input_channels(state_dict) != 3:  # no torchvision argument for it
        model.conv1 = torch.nn.Conv2d(input_channels(state_dict), 64, 7, 2, 3,
                                      bias=False)
    return model


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


# ------------------------------------------------------------------ checks
def require_resnet(state_dict: Mapping[str, torch.Tensor], target: str):
    """Refuse, in one line, weights that ``target``'s ResNet naming cannot hold."""
    if backbone_kind(state_dict) != 'resnet':
        raise CheckpointError(
            f'{target} format is for ResNet and this checkpoint holds a '
            'ConvNeXt; export a ConvNeXt with --formats mmdet torchvision '
            'timm')
    if is_deep_stem(state_dict):
        raise CheckpointError(
            f'{target} naming is defined for pytorch-style ResNet only (this '
            'is a deep-stem ResNet); export it with --formats mmdet')


def require_depth(depth: int, target: str, depths=STANDARD_DEPTHS):
    """Refuse, in one line, a ResNet depth that ``target`` cannot build."""
    if depth not in depths:
        raise CheckpointError(
            f'{target} has no ResNet-{depth} (only '
            f'{", ".join(map(str, depths))}); export ResNet-{depth} with '
            '--formats timm')


def check_loads(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor],
                what: str, fresh: re.Pattern = NOTHING) -> Dict[str, list]:
    """Load into ``model``; raise a one-line error unless everything fits.

    Only missing keys matching ``fresh`` (what the target initialises itself)
    are accepted. Returns the missing and unexpected keys reported by the
    real ``load_state_dict`` (shapes are checked first: torch refuses them
    even when not strict).
    """
    report = compare_keys(model.state_dict(), state_dict, fresh=fresh)
    loaded = None
    if report.fits:  # what the real load reports is what counts
        loaded = model.load_state_dict(state_dict, strict=False)
        report.missing = [key for key in loaded.missing_keys
                          if not fresh.match(key)]
        report.unexpected = list(loaded.unexpected_keys)
    if not report.fits:
        raise CheckpointError(
            f'weights do not match {what}: ' + report.problems() +
            '. Export from a complete SparK checkpoint of this backbone '
            '(tools/export_backbone.py CKPT), or pass --prefix if its keys '
            'are not under "backbone."')
    return dict(missing=list(loaded.missing_keys),
                unexpected=list(loaded.unexpected_keys))


def load_summary(counts: Dict[str, list]) -> str:
    """'2 missing (a, b), 0 unexpected keys' of :func:`check_loads`' result."""
    missing = counts['missing']
    names = f' ({listed(missing)})' if missing else ''
    return (f'{len(missing)} missing{names}, {len(counts["unexpected"])} '
            'unexpected keys')


def stage_norm_note(missing: List[str]) -> List[str]:
    """The note on ConvNeXt's per-stage output norms among ``missing``."""
    stages = sorted({int(CONVNEXT_STAGE_NORM.match(key).group(1))
                     for key in missing if CONVNEXT_STAGE_NORM.match(key)})
    if not stages:
        return []
    if stages == list(range(stages[0], stages[-1] + 1)) and len(stages) > 1:
        names = f'norm{stages[0]}..norm{stages[-1]}'
    else:
        names = ', '.join(f'norm{stage}' for stage in stages)
    return [f'{names} {STAGE_NORM_NOTE}']
