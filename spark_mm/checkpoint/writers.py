"""Backbone weight files for other toolboxes, each checked before it is written.

The weights arrive in canonical naming (:mod:`spark_mm.checkpoint.sources`):
torchvision's for ResNet, mmpretrain's for ConvNeXt. From there:

* mmdet / mmpretrain: the names as they are; checked by loading into mmdet's
  ``ResNet`` (or mmpretrain's ``ConvNeXt``, which mmdet uses as
  ``mmpretrain.ConvNeXt``). A ConvNeXt built with ``out_indices`` has one
  output LayerNorm per stage (``norm0..norm3``); SparK does not pretrain them
  (the official encoder feeds the raw stage outputs to its decoder), so they
  are absent and the downstream model initialises them (weight 1, bias 0),
  as the official SparK/ConvNeXt detection code does. Every other key must
  load.
* torchvision / timm ResNet: a pytorch-style ResNet already uses
  torchvision's names (``conv1``, ``bn1``, ``layer1.0.downsample.0``); timm's
  ``ResNet`` uses the same ones. Only ``fc.*`` is absent.
* torchvision ConvNeXt (:data:`~.names.CONVNEXT_TORCHVISION`): only the
  classifier (``classifier.*``) is absent.
* timm ConvNeXt (:data:`~.names.CONVNEXT_TIMM`): only the classifier head's
  ``head.norm`` is absent.
* Detectron2 (:data:`~.names.RESNET_DETECTRON2`): values as numpy arrays in a
  pickle ``{'model': ..., '__author__': ..., 'matching_heuristics': True}``
  (the format the official SparK Detectron2 route reads; ResNet only).

Every ``prepare_*`` builds the real target model, loads the weights into it
and reports the missing/unexpected keys of that load
(:mod:`spark_mm.checkpoint.load_checks`), before anything is written.
"""
import os
import pickle
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, List, Mapping, Optional, Tuple

import timm
import torch

from ..errors import CheckpointError
from .architecture import (RESNET_DEPTHS, STANDARD_DEPTHS, backbone_kind,
                           convnext_arch, convnext_options, input_channels,
                           is_deep_stem, resnet_depth)
from .key_report import NOTHING, listed
from .load_checks import (build_reference, build_timm_convnext,
                          build_torchvision_convnext, build_torchvision_resnet,
                          check_loads, expected_detectron2_names, load_summary,
                          require_depth, require_resnet, stage_norm_note)
from .names import (CONVNEXT_STAGE_NORM, CONVNEXT_TIMM, CONVNEXT_TORCHVISION,
                    detectron2_name)
from .saving import write_atomically


# ------------------------------------------------------------------ renaming
def to_torchvision(state_dict: Mapping[str, torch.Tensor]
                   ) -> 'OrderedDict[str, torch.Tensor]':
    """torchvision/timm ResNet naming: identical for pytorch-style ResNet."""
    require_resnet(state_dict, 'torchvision')
    return OrderedDict((key, value) for key, value in state_dict.items())


def _rename_convnext(state_dict: Mapping[str, torch.Tensor], table
                     ) -> Tuple['OrderedDict[str, torch.Tensor]', List[str]]:
    """Canonical ConvNeXt weights renamed by ``table``, and the canonical keys
    the other naming has no place for (mmpretrain's per-stage output norms);
    unknown keys keep their name, so that the load check reports them."""
    renamed, left_out = OrderedDict(), []
    for key, value in state_dict.items():
        if CONVNEXT_STAGE_NORM.match(key):
            left_out.append(key)
            continue
        renamed[table.from_canonical(key) or key] = value
    return renamed, left_out


def to_timm_convnext(state_dict: Mapping[str, torch.Tensor]
                     ) -> Tuple['OrderedDict[str, torch.Tensor]', List[str]]:
    """timm ConvNeXt naming of canonical (mmpretrain) ConvNeXt weights, and
    the keys left out (the output norms)."""
    return _rename_convnext(state_dict, CONVNEXT_TIMM)


def to_torchvision_convnext(state_dict: Mapping[str, torch.Tensor]
                            ) -> Tuple['OrderedDict[str, torch.Tensor]',
                                       List[str]]:
    """torchvision ConvNeXt naming of canonical (mmpretrain) ConvNeXt weights,
    and the keys left out (the output norms)."""
    options = convnext_options(state_dict)
    if options['grn'] or not options['layer_scale']:
        raise CheckpointError(
            'torchvision\'s ConvNeXt has layer scale and no GRN; this is a '
            'ConvNeXt V2 (GRN) or has no layer scale: export it with '
            '--formats mmdet timm')
    renamed, left_out = _rename_convnext(state_dict, CONVNEXT_TORCHVISION)
    for key, value in renamed.items():
        if key.endswith('.layer_scale'):  # (C,) -> torchvision's (C, 1, 1)
            renamed[key] = value.reshape(-1, 1, 1)
    return renamed, left_out


def to_detectron2(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Detectron2 checkpoint dict (numpy values) for ``MODEL.WEIGHTS``."""
    require_resnet(state_dict, 'Detectron2')
    model = OrderedDict((detectron2_name(key), value.detach().cpu().numpy())
                        for key, value in state_dict.items())
    return {'model': model, '__author__': 'spark_mm',
            'matching_heuristics': True}


def _pickle_to(payload) -> Callable[[str], None]:
    def write(path: str):
        with open(path, 'wb') as f:
            pickle.dump(payload, f)
    return write


def _torch_save_to(payload) -> Callable[[str], None]:
    return lambda path: torch.save(payload, path)


# ------------------------------------------------------------------ targets
@dataclass
class Prepared:
    """One target's file, checked, not yet written."""
    fmt: str
    filename: str
    report: str                       # '[fmt] what: counts' (path appended)
    write: Callable[[str], None]      # writes the file at a given path
    notes: List[str] = field(default_factory=list)

    def save(self, out_dir: str) -> str:
        return write_atomically(os.path.join(out_dir, self.filename), self.write)


def prepare_mmdet(weights: Mapping[str, torch.Tensor],
                  meta: Optional[dict] = None) -> Prepared:
    """mmdet/mmpretrain naming (``init_cfg=dict(type='Pretrained', ...)``)."""
    model = build_reference(weights)
    name = f'{type(model).__module__}.{type(model).__name__}'
    is_convnext = backbone_kind(weights) == 'convnext'
    counts = check_loads(model, weights, f'mmdet/mmpretrain '
                         f'{type(model).__name__}',
                         fresh=CONVNEXT_STAGE_NORM if is_convnext
                         else NOTHING)
    payload = {'state_dict': OrderedDict(weights),
               'meta': dict(meta or {}, backbone=type(model).__name__)}
    return Prepared(
        'mmdet', 'backbone_mmdet.pth',
        f'[mmdet] {name}: {load_summary(counts)} ({len(weights)} tensors)',
        _torch_save_to(payload), stage_norm_note(counts['missing']))


def _prepare_convnext(fmt: str, weights: Mapping[str, torch.Tensor],
                      rename: Callable, build: Callable, fresh: re.Pattern,
                      fresh_note: str) -> Prepared:
    """A ConvNeXt in ``fmt``'s naming (torchvision, timm), load-checked:
    only the keys matching ``fresh`` may be missing; the per-stage output
    norms, which these ConvNeXts lack, are left out and listed."""
    renamed, left_out = rename(weights)
    arch = convnext_arch(weights)
    counts = check_loads(build(weights), renamed, f'{fmt} ConvNeXt', fresh=fresh)
    notes = [fresh_note] if counts['missing'] else []
    if left_out:
        notes.append(f"{listed(left_out)} not written: {fmt}'s ConvNeXt has "
                     'no per-stage output norms')
    return Prepared(
        fmt, f'backbone_{fmt}.pth',
        f'[{fmt}] ConvNeXt(depths={tuple(arch["depths"])}, '
        f'dims={tuple(arch["channels"])}): {load_summary(counts)}',
        _torch_save_to(renamed), notes)


def prepare_torchvision(weights: Mapping[str, torch.Tensor]) -> Prepared:
    """A plain state dict for ``torchvision.models.resnetXX()`` or
    ``convnext_*()``."""
    if backbone_kind(weights) == 'convnext':
        return _prepare_convnext(
            'torchvision', weights, to_torchvision_convnext,
            build_torchvision_convnext, fresh=re.compile(r'^classifier\.'),
            fresh_note="classifier.* absent: torchvision's classifier head "
            '(norm + linear), not used by model.features; initialised fresh')
    renamed = to_torchvision(weights)
    depth = resnet_depth(renamed)
    require_depth(depth, 'torchvision')
    model = build_torchvision_resnet(renamed)
    counts = check_loads(model, renamed, f'torchvision resnet{depth}',
                         fresh=re.compile(r'^fc\.'))
    return Prepared(
        'torchvision', 'backbone_torchvision.pth',
        f'[torchvision] resnet{depth}: {load_summary(counts)}',
        _torch_save_to(renamed))


def prepare_timm(weights: Mapping[str, torch.Tensor]) -> Prepared:
    """A plain state dict for timm's ``resnetXX`` or ``ConvNeXt``."""
    if backbone_kind(weights) == 'resnet':
        renamed = to_torchvision(weights)
        depth = resnet_depth(renamed)
        model = timm.create_model(f'resnet{depth}', pretrained=False,
                                  in_chans=input_channels(renamed))
        counts = check_loads(model, renamed, f'timm resnet{depth}',
                             fresh=re.compile(r'^fc\.'))
        return Prepared('timm', 'backbone_timm.pth',
                        f'[timm] resnet{depth}: {load_summary(counts)}',
                        _torch_save_to(renamed))
    return _prepare_convnext(
        'timm', weights, to_timm_convnext, build_timm_convnext,
        fresh=re.compile(r'^head\.norm\.'),
        fresh_note="head.norm absent: the norm of timm's classifier head, not "
        'used by the stage features (forward_features, features_only); '
        'initialised fresh (weight 1, bias 0)')


def prepare_detectron2(weights: Mapping[str, torch.Tensor]) -> Prepared:
    """Detectron2 ``MODEL.WEIGHTS`` pickle (ResNet)."""
    require_resnet(weights, 'Detectron2')
    depth = resnet_depth(weights)
    require_depth(depth, 'Detectron2')
    payload = to_detectron2(weights)
    names, expected = set(payload['model']), set(
        expected_detectron2_names(depth))
    if names != expected:
        raise CheckpointError(
            f'Detectron2 names differ from ResNet-{depth}: missing '
            f'{sorted(expected - names)[:8]}, unexpected '
            f'{sorted(names - expected)[:8]}; the checkpoint is truncated or '
            'holds other keys')
    settings = f'MODEL.RESNETS.DEPTH {depth}, STRIDE_IN_1X1 False'
    if not RESNET_DEPTHS[depth][0]:
        settings += ', RES2_OUT_CHANNELS 64'
    return Prepared(
        'detectron2', 'backbone_detectron2.pkl',
        f'[detectron2] ResNet-{depth}: {len(names)} tensors with Detectron2 '
        f'names (stem.*, res2..res5.*; {settings})',
        _pickle_to(payload))


PREPARE = {'mmdet': prepare_mmdet, 'torchvision': prepare_torchvision,
           'timm': prepare_timm, 'detectron2': prepare_detectron2}


def default_formats(weights: Mapping[str, torch.Tensor]) -> Tuple[str, ...]:
    """Every format the backbone fits."""
    if backbone_kind(weights) == 'convnext':
        options = convnext_options(weights)
        if options['layer_scale'] and not options['grn']:
            return ('mmdet', 'torchvision', 'timm')
        return ('mmdet', 'timm')
    if is_deep_stem(weights):
        return ('mmdet', )
    if resnet_depth(weights) not in STANDARD_DEPTHS:
        return ('timm', )
    return ('mmdet', 'torchvision', 'timm', 'detectron2')
