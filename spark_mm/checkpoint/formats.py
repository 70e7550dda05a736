"""Backbone weights in the naming of other toolboxes, checked against the real models.

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
* torchvision ConvNeXt: ``features.{0,2,4,6}`` (stem, downsamples),
  ``features.{2i+1}.j.block.{0,2,3,5}`` and ``layer_scale`` (C, 1, 1); only
  the classifier (``classifier.*``) is absent.
* timm ConvNeXt: ``stem.0/1``, ``stages.i.downsample.0/1``,
  ``stages.i.blocks.j.{conv_dw,norm,mlp.fc1,mlp.fc2,gamma}``; only the
  classifier head's ``head.norm`` is absent.
* Detectron2: ``stem.conv1`` / ``stem.conv1.norm``, ``res2..res5`` for
  ``layer1..layer4``, ``convK.norm`` for ``bnK``, ``shortcut`` /
  ``shortcut.norm`` for ``downsample.0/1``, values as numpy arrays in a pickle
  ``{'model': ..., '__author__': ..., 'matching_heuristics': True}`` (the
  format the official SparK Detectron2 route reads; ResNet only).

Every ``prepare_*`` builds the real target model, loads the weights into it
and reports the missing/unexpected keys of that load, before anything is
written.
"""
import os
import pickle
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import torch

from ..errors import CheckpointError
from .key_report import NOTHING, compare_keys, listed
from .saving import save_pickle_atomically, write_atomically

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
_BLOCK = re.compile(r'^layer(\d)\.(\d+)\.')
_CONVNEXT_BLOCK = re.compile(r'^stages\.(\d)\.(\d+)\.')
CONVNEXT_STAGE_NORM = re.compile(r'^norm([0-3])\.(weight|bias)$')
STAGE_NORM_NOTE = ('absent: initialised fresh by the downstream model '
                   '(weight 1, bias 0), as in the official SparK/ConvNeXt '
                   'detection code')


def backbone_kind(state_dict: Mapping[str, torch.Tensor]) -> str:
    """'resnet' or 'convnext', from canonical parameter names."""
    if any(key.startswith('downsample_layers.') for key in state_dict):
        return 'convnext'
    if any(_BLOCK.match(key) for key in state_dict):
        return 'resnet'
    raise CheckpointError(
        f'unrecognised backbone (first keys: {list(state_dict)[:5]}); '
        'export supports ResNet and ConvNeXt, pass a SparK checkpoint of one '
        'of those')


def resnet_depth(state_dict: Mapping[str, torch.Tensor]) -> int:
    """Depth (18 .. 200) of a ResNet state dict, from its block counts."""
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


def _convnext_options(state_dict: Mapping[str, torch.Tensor]) -> dict:
    return dict(layer_scale=any(key.endswith('.gamma') and '.grn.' not in key
                                for key in state_dict),
                grn=any('.grn.' in key for key in state_dict))


def _is_deep_stem(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return any(key.startswith('stem.') for key in state_dict)


def input_channels(state_dict: Mapping[str, torch.Tensor]) -> int:
    """Image channels the weights take (the first convolution's input width)."""
    for key in ('conv1.weight', 'stem.0.weight', 'stem.0.conv.weight',
                'downsample_layers.0.0.weight'):
        if key in state_dict and state_dict[key].dim() == 4:
            return int(state_dict[key].shape[1])
    return 3


def build_reference(state_dict: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """The dense mmdet/mmpretrain backbone these (canonical) weights are for."""
    if backbone_kind(state_dict) == 'resnet':
        depth = resnet_depth(state_dict)
        if depth not in STANDARD_DEPTHS:
            raise CheckpointError(
                f'mmdet/mmpretrain ResNet has no depth {depth} (only '
                f'{", ".join(map(str, STANDARD_DEPTHS))}); export ResNet-'
                f'{depth} with --formats timm')
        from mmdet.models.backbones import ResNet
        return ResNet(depth=depth, deep_stem=_is_deep_stem(state_dict),
                      in_channels=input_channels(state_dict),
                      out_indices=(0, 1, 2, 3))
    from mmpretrain.models.backbones import ConvNeXt
    options = _convnext_options(state_dict)
    return ConvNeXt(arch=convnext_arch(state_dict), out_indices=(0, 1, 2, 3),
                    in_channels=input_channels(state_dict),
                    gap_before_final_norm=False,
                    layer_scale_init_value=1e-6 if options['layer_scale']
                    else 0.0, use_grn=options['grn'])


def build_timm_convnext(state_dict: Mapping[str, torch.Tensor]
                        ) -> torch.nn.Module:
    """timm's ``ConvNeXt`` of the architecture of canonical ConvNeXt weights."""
    from timm.models.convnext import ConvNeXt
    arch, options = convnext_arch(state_dict), _convnext_options(state_dict)
    return ConvNeXt(depths=tuple(arch['depths']), dims=tuple(arch['channels']),
                    num_classes=0, in_chans=input_channels(state_dict),
                    ls_init_value=1e-6 if options['layer_scale'] else None,
                    use_grn=options['grn'])


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


def _load_summary(counts: Dict[str, list]) -> str:
    missing = counts['missing']
    names = f' ({listed(missing)})' if missing else ''
    return (f'{len(missing)} missing{names}, {len(counts["unexpected"])} '
            'unexpected keys')


def _stage_norm_note(missing: List[str]) -> List[str]:
    stages = sorted({int(CONVNEXT_STAGE_NORM.match(key).group(1))
                     for key in missing if CONVNEXT_STAGE_NORM.match(key)})
    if not stages:
        return []
    if stages == list(range(stages[0], stages[-1] + 1)) and len(stages) > 1:
        names = f'norm{stages[0]}..norm{stages[-1]}'
    else:
        names = ', '.join(f'norm{stage}' for stage in stages)
    return [f'{names} {STAGE_NORM_NOTE}']


def _require_resnet(state_dict: Mapping[str, torch.Tensor], target: str):
    if backbone_kind(state_dict) != 'resnet':
        raise CheckpointError(
            f'{target} format is for ResNet and this checkpoint holds a '
            'ConvNeXt; export a ConvNeXt with --formats mmdet torchvision '
            'timm')
    if _is_deep_stem(state_dict):
        raise CheckpointError(
            f'{target} naming is defined for pytorch-style ResNet only (this '
            'is a deep-stem ResNet); export it with --formats mmdet')


def _require_depth(depth: int, target: str, depths=STANDARD_DEPTHS):
    if depth not in depths:
        raise CheckpointError(
            f'{target} has no ResNet-{depth} (only '
            f'{", ".join(map(str, depths))}); export ResNet-{depth} with '
            '--formats timm')


def to_torchvision(state_dict: Mapping[str, torch.Tensor]
                   ) -> 'OrderedDict[str, torch.Tensor]':
    """torchvision/timm ResNet naming: identical for pytorch-style ResNet."""
    _require_resnet(state_dict, 'torchvision')
    return OrderedDict((key, value) for key, value in state_dict.items())


def to_timm_convnext(state_dict: Mapping[str, torch.Tensor]
                     ) -> Tuple['OrderedDict[str, torch.Tensor]', List[str]]:
    """timm ConvNeXt naming of canonical (mmpretrain) ConvNeXt weights.

    Returns the renamed weights and the canonical keys timm has no place for
    (mmpretrain's per-stage output norms); unknown keys keep their name, so
    that the load check reports them.
    """
    from .sources import CONVNEXT_TIMM
    renamed, left_out = OrderedDict(), []
    for key, value in state_dict.items():
        if CONVNEXT_STAGE_NORM.match(key):
            left_out.append(key)
            continue
        renamed[CONVNEXT_TIMM.from_canonical(key) or key] = value
    return renamed, left_out


_TV_DOWNSAMPLE = re.compile(r'^downsample_layers\.(\d)\.(\d)\.(weight|bias)$')
_TV_BLOCK = re.compile(r'^stages\.(\d)\.(\d+)\.(depthwise_conv|norm|'
                       r'pointwise_conv1|pointwise_conv2)\.(weight|bias)$')
_TV_BLOCK_PARTS = {'depthwise_conv': 0, 'norm': 2, 'pointwise_conv1': 3,
                   'pointwise_conv2': 5}  # index in CNBlock.block
_TV_LAYER_SCALE = re.compile(r'^stages\.(\d)\.(\d+)\.gamma$')


def to_torchvision_convnext(state_dict: Mapping[str, torch.Tensor]
                            ) -> Tuple['OrderedDict[str, torch.Tensor]',
                                       List[str]]:
    """torchvision ConvNeXt naming of canonical (mmpretrain) ConvNeXt weights.

    ``features`` alternates stages and downsamples: the stem is
    ``features.0``, stage i is ``features.{2i+1}`` (``CNBlock.block`` indices
    0 dwconv, 2 norm, 3/5 the pointwise Linear layers, ``layer_scale`` of
    shape (C, 1, 1)), the downsample before stage i is ``features.{2i}``.
    Returns the renamed weights and the keys left out (the output norms).
    """
    options = _convnext_options(state_dict)
    if options['grn'] or not options['layer_scale']:
        raise CheckpointError(
            'torchvision\'s ConvNeXt has layer scale and no GRN; this is a '
            'ConvNeXt V2 (GRN) or has no layer scale: export it with '
            '--formats mmdet timm')
    renamed, left_out = OrderedDict(), []
    for key, value in state_dict.items():
        down, block = _TV_DOWNSAMPLE.match(key), _TV_BLOCK.match(key)
        scale = _TV_LAYER_SCALE.match(key)
        if CONVNEXT_STAGE_NORM.match(key):
            left_out.append(key)
            continue
        if down:
            stage, index, param = down.groups()
            key = f'features.{2 * int(stage)}.{index}.{param}'
        elif block:
            stage, index, part, param = block.groups()
            key = (f'features.{2 * int(stage) + 1}.{index}.block.'
                   f'{_TV_BLOCK_PARTS[part]}.{param}')
        elif scale:
            stage, index = scale.groups()
            key = f'features.{2 * int(stage) + 1}.{index}.layer_scale'
            value = value.reshape(-1, 1, 1)
        renamed[key] = value
    return renamed, left_out


def build_torchvision_convnext(state_dict: Mapping[str, torch.Tensor]
                               ) -> torch.nn.Module:
    """torchvision's ``ConvNeXt`` of the architecture of canonical weights."""
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt
    arch = convnext_arch(state_dict)
    channels = list(arch['channels']) + [None]
    model = ConvNeXt([CNBlockConfig(channels[i], channels[i + 1], depth)
                      for i, depth in enumerate(arch['depths'])])
    in_channels = input_channels(state_dict)
    if in_channels != 3:  # no torchvision argument for it: a new stem conv
        model.features[0][0] = torch.nn.Conv2d(in_channels, channels[0], 4, 4)
    return model


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


def _pickle_to(payload) -> Callable[[str], None]:
    def write(path: str):
        with open(path, 'wb') as f:
            pickle.dump(payload, f)
    return write


def _torch_save_to(payload) -> Callable[[str], None]:
    return lambda path: torch.save(payload, path)


def save_detectron2(state_dict: Mapping[str, torch.Tensor], path: str) -> str:
    """Write :func:`to_detectron2`'s dict as a pickle, atomically."""
    return save_pickle_atomically(to_detectron2(state_dict), path)


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
        f'[mmdet] {name}: {_load_summary(counts)} ({len(weights)} tensors)',
        _torch_save_to(payload), _stage_norm_note(counts['missing']))


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
        f'dims={tuple(arch["channels"])}): {_load_summary(counts)}',
        _torch_save_to(renamed), notes)


def prepare_torchvision(weights: Mapping[str, torch.Tensor]) -> Prepared:
    """A plain state dict for ``torchvision.models.resnetXX()`` or
    ``convnext_*()``."""
    import torchvision
    if backbone_kind(weights) == 'convnext':
        return _prepare_convnext(
            'torchvision', weights, to_torchvision_convnext,
            build_torchvision_convnext, fresh=re.compile(r'^classifier\.'),
            fresh_note="classifier.* absent: torchvision's classifier head "
            '(norm + linear), not used by model.features; initialised fresh')
    renamed = to_torchvision(weights)
    depth = resnet_depth(renamed)
    _require_depth(depth, 'torchvision')
    model = getattr(torchvision.models, f'resnet{depth}')(weights=None)
    if input_channels(renamed) != 3:  # no torchvision argument for it: new stem
        model.conv1 = torch.nn.Conv2d(input_channels(renamed), 64, 7, 2, 3,
                                      bias=False)
    counts = check_loads(model, renamed, f'torchvision resnet{depth}',
                         fresh=re.compile(r'^fc\.'))
    return Prepared(
        'torchvision', 'backbone_torchvision.pth',
        f'[torchvision] resnet{depth}: {_load_summary(counts)}',
        _torch_save_to(renamed))


def prepare_timm(weights: Mapping[str, torch.Tensor]) -> Prepared:
    """A plain state dict for timm's ``resnetXX`` or ``ConvNeXt``."""
    import timm
    if backbone_kind(weights) == 'resnet':
        renamed = to_torchvision(weights)
        depth = resnet_depth(renamed)
        model = timm.create_model(f'resnet{depth}', pretrained=False,
                                  in_chans=input_channels(renamed))
        counts = check_loads(model, renamed, f'timm resnet{depth}',
                             fresh=re.compile(r'^fc\.'))
        return Prepared('timm', 'backbone_timm.pth',
                        f'[timm] resnet{depth}: {_load_summary(counts)}',
                        _torch_save_to(renamed))
    return _prepare_convnext(
        'timm', weights, to_timm_convnext, build_timm_convnext,
        fresh=re.compile(r'^head\.norm\.'),
        fresh_note="head.norm absent: the norm of timm's classifier head, not "
        'used by the stage features (forward_features, features_only); '
        'initialised fresh (weight 1, bias 0)')


def prepare_detectron2(weights: Mapping[str, torch.Tensor]) -> Prepared:
    """Detectron2 ``MODEL.WEIGHTS`` pickle (ResNet)."""
    _require_resnet(weights, 'Detectron2')
    depth = resnet_depth(weights)
    _require_depth(depth, 'Detectron2')
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
        options = _convnext_options(weights)
        if options['layer_scale'] and not options['grn']:
            return ('mmdet', 'torchvision', 'timm')
        return ('mmdet', 'timm')
    if _is_deep_stem(weights):
        return ('mmdet', )
    if resnet_depth(weights) not in STANDARD_DEPTHS:
        return ('timm', )
    return ('mmdet', 'torchvision', 'timm', 'detectron2')
