"""Read the backbone out of any SparK checkpoint a user may hold.

What is recognised (autodetected, or named with ``source``):

* ``official-resnet``: the official SparK ResNet releases
  (``res50_1kpretrained_timm_style.pth`` ..., a bare timm ``ResNet`` state
  dict), also wrapped in ``module`` / ``state_dict`` / ``model``, with
  ``module.`` prefixes, with extra entries (``arch``, ``is_pretrain``, ...), or
  the official ``*_withdecoder_1kpretrained_spark_style.pth`` (the encoder
  under ``sparse_encoder.sp_cnn.``, next to the decoder);
* ``official-convnext``: the official ConvNeXt releases
  (``convnextS_1kpretrained_official_style.pth`` ...) in the ConvNeXt authors'
  naming (``downsample_layers.i.j``, ``stages.i.j.{dwconv,norm,pwconv1,
  pwconv2,gamma}``), wrapped or not, with or without a classifier head;
* ``mmpretrain-spark``: mmpretrain 1.2.0's SparK (``SparseResNet`` /
  ``SparseConvNeXt`` under ``backbone.``, next to ``neck.``, ``mask_tokens``,
  ``enc_dec_norms`` and ``enc_dec_projectors``);
* ``spark_mm``: this project's pretraining checkpoints (``backbone.``, also
  ``backbone.timm_model.`` for ``TIMMBackbone``) and the backbone-only
  ``backbone.pth`` files it writes.

Whatever the source, the result is the backbone in one canonical naming:
torchvision's for ResNet (the same in timm, mmdet and mmpretrain), mmpretrain's
for ConvNeXt. :mod:`spark_mm.checkpoint.writers` goes on from there.
"""
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch

from ..errors import CheckpointError
from .architecture import RESNET_BLOCK
from .finite import require_finite
from .loading import load_checkpoint_safely
from .names import CONVNEXT_OFFICIAL, CONVNEXT_TIMM
from .prefixes import (BACKBONE_PREFIX, DATA_PARALLEL_PREFIX,
                       OFFICIAL_ENCODER_PREFIX, find_backbone_prefix,
                       strip_prefix)

SOURCES = ('official-resnet', 'official-convnext', 'mmpretrain-spark',
           'spark_mm')
DESCRIPTIONS = {
    'official-resnet': 'official SparK ResNet release (timm ResNet names)',
    'official-convnext': "official SparK ConvNeXt release (the ConvNeXt "
                         "authors' names)",
    'mmpretrain-spark': "mmpretrain 1.2.0 SparK checkpoint (backbone.*)",
    'spark_mm': 'spark_mm checkpoint',
    'timm-convnext': 'timm ConvNeXt state dict',
    'resnet-classifier': 'ResNet state dict with a classifier head '
                         '(torchvision/timm names): not an official SparK '
                         'release, which has no fc',
}
# keys under which checkpoints nest their weights, outermost first
_WRAPPERS = ('state_dict', 'model', 'module', 'state')
# top-level entries that only mmpretrain's SparK has (ours: densify.*)
_MMPRETRAIN_SPARK = ('enc_dec_norms.', 'enc_dec_projectors.', 'mask_tokens.')
# classifier entries: not part of a backbone, dropped (and reported)
_CLASSIFIER = {
    'resnet': re.compile(r'^fc\.(weight|bias)$'),
    'convnext-official': re.compile(r'^(norm|head|fc)\.(weight|bias)$'),
    'convnext-timm': re.compile(r'^(head|norm_pre)\.'),
    'convnext-mmpretrain': re.compile(r'(?!)'),
}


@dataclass
class SourceBackbone:
    """A backbone read from a checkpoint, in canonical naming."""
    kind: str                      # 'resnet' | 'convnext'
    weights: 'OrderedDict[str, torch.Tensor]'
    source: str                    # SOURCES, or 'timm-convnext'
    naming: str                    # how the file named the backbone
    prefix: str                    # where the backbone was in the file
    dropped: Dict[str, List[str]] = field(default_factory=dict)

    @property
    def description(self) -> str:
        where = f' under {self.prefix!r}' if self.prefix else ''
        return f'{DESCRIPTIONS[self.source]}{where}'


def _first_keys(mapping: Mapping, limit: int = 5) -> List[str]:
    return [str(key) for key in list(mapping)[:limit]]


def unwrap(checkpoint: Mapping) -> Tuple['OrderedDict[str, torch.Tensor]',
                                         List[str]]:
    """The tensors of a (possibly nested) checkpoint; the names left aside.

    Descends through ``state_dict`` / ``model`` / ``module`` / ``state``
    while the current level holds no tensor (an mmengine checkpoint, the
    official ``{'module': ..., 'arch': ..., 'is_pretrain': ...}``), drops
    non-tensor entries (``config``, ``arch``, ...) and a DataParallel
    ``module.`` prefix carried by every key.
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(
            f'the checkpoint is a {type(checkpoint).__name__}, not a mapping '
            'of weights')
    aside = []
    level = checkpoint
    while not any(isinstance(value, torch.Tensor) for value in level.values()):
        inner = next((key for key in _WRAPPERS
                      if isinstance(level.get(key), Mapping)), None)
        if inner is None:
            break
        aside += [str(key) for key in level if key != inner]
        level = level[inner]
    weights = OrderedDict((key, value) for key, value in level.items()
                          if isinstance(value, torch.Tensor))
    aside += [str(key) for key, value in level.items()
              if not isinstance(value, torch.Tensor)]
    if weights and all(key.startswith(DATA_PARALLEL_PREFIX) for key in weights):
        weights = strip_prefix(weights, DATA_PARALLEL_PREFIX)
    return weights, aside


def _naming(backbone: Mapping[str, torch.Tensor]) -> Optional[str]:
    keys = list(backbone)
    if any('.dwconv.' in key for key in keys):
        return 'convnext-official'
    if any('.depthwise_conv.' in key for key in keys):
        return 'convnext-mmpretrain'
    if any('.conv_dw.' in key for key in keys):
        return 'convnext-timm'
    if any(RESNET_BLOCK.match(key) for key in keys):
        return 'resnet'
    return None


def _guess_source(naming: str, prefix: str, others: List[str],
                  aside: List[str], backbone_keys) -> str:
    if prefix.startswith(BACKBONE_PREFIX):
        if any(key.startswith(_MMPRETRAIN_SPARK) for key in others):
            return 'mmpretrain-spark'
        return 'spark_mm'
    if naming == 'convnext-official':
        return 'official-convnext'
    if naming == 'convnext-timm':
        return 'timm-convnext'
    if naming == 'convnext-mmpretrain' or 'meta' in aside:
        return 'spark_mm'  # a backbone.pth written by ExportBackboneHook
    # the official encoder is built without a classifier; a bare state dict
    # with one (torchvision's, timm's) is some other, supervised, ResNet
    if not prefix and 'fc.weight' in backbone_keys:
        return 'resnet-classifier'
    return 'official-resnet'


def _check_declared(source: str, naming: str, prefix: str, path: str):
    """Refuse, in one line, a ``--source`` that the file contradicts."""
    found = {'resnet': 'a ResNet (timm/torchvision names)',
             'convnext-official': "a ConvNeXt in the ConvNeXt authors' names",
             'convnext-mmpretrain': 'a ConvNeXt in mmpretrain names',
             'convnext-timm': 'a ConvNeXt in timm names'}[naming]
    where = f'{found} under {prefix!r}' if prefix else f'{found}'
    fits = {
        'official-resnet': naming == 'resnet'
        and not prefix.startswith(BACKBONE_PREFIX),
        'official-convnext': naming == 'convnext-official',
        'mmpretrain-spark': prefix == BACKBONE_PREFIX
        and naming in ('resnet', 'convnext-mmpretrain'),
        'spark_mm': naming in ('resnet', 'convnext-mmpretrain')
        and prefix != OFFICIAL_ENCODER_PREFIX,
    }[source]
    if not fits:
        raise CheckpointError(
            f'--source {source}: {path} holds {where}, which is not '
            f'{DESCRIPTIONS[source]}; leave --source out to autodetect')


def _summarise(keys: List[str]) -> List[str]:
    """'neck.* (12)'-style groups of dropped names, by their first part."""
    groups: Dict[str, List[str]] = OrderedDict()
    for key in keys:
        groups.setdefault(key.split('.')[0], []).append(key)
    return [members[0] if members == [head] else f'{head}.* ({len(members)})'
            for head, members in groups.items()]


def canonical_weights(backbone: Mapping[str, torch.Tensor], naming: str
                      ) -> Tuple['OrderedDict[str, torch.Tensor]', List[str]]:
    """Backbone weights renamed to the canonical naming; classifier keys dropped.

    Keys that belong to neither the naming nor its classifier are kept as
    they are, so that the strict check of every target reports them.
    """
    table = {'convnext-official': CONVNEXT_OFFICIAL,
             'convnext-timm': CONVNEXT_TIMM}.get(naming)
    classifier = _CLASSIFIER[naming]
    renamed, dropped = OrderedDict(), []
    for key, value in backbone.items():
        if classifier.match(key):
            dropped.append(key)
            continue
        new_key = table.to_canonical(key) if table is not None else None
        # plain layout: channels_last runs store NHWC-strided weights
        renamed[new_key or key] = value.contiguous()
    return renamed, dropped


def read_backbone(checkpoint: Union[str, Mapping], source: str = 'auto',
                  prefix: Optional[str] = None) -> SourceBackbone:
    """The backbone of a checkpoint (path or loaded dict), in canonical naming.

    ``source``: 'auto' or one of :data:`SOURCES` (checked against the file);
    ``prefix``: where the backbone is in the file (default: found).
    """
    path = checkpoint if isinstance(checkpoint, str) else 'the checkpoint'
    if isinstance(checkpoint, str):
        checkpoint = load_checkpoint_safely(checkpoint)
    weights, aside = unwrap(checkpoint)
    if prefix is None:
        prefix = find_backbone_prefix(weights)
    backbone = strip_prefix(weights, prefix)
    others = [key for key in weights if not key.startswith(prefix)]
    if not backbone:
        raise CheckpointError(
            f'{path} holds no {prefix!r} weights (first keys: '
            f'{_first_keys(weights) or _first_keys(checkpoint)}); pass a SparK '
            'pretraining checkpoint')
    naming = _naming(backbone)
    if naming is None:
        raise CheckpointError(
            f'cannot tell which backbone {path} holds (first keys: '
            f'{_first_keys(backbone)}); expected an official SparK release '
            '(*_1kpretrained_timm_style.pth, *_1kpretrained_official_style'
            '.pth), an mmpretrain SparK checkpoint or a spark_mm checkpoint '
            'of a ResNet or ConvNeXt; pass --prefix if the backbone is under '
            'another key')
    if source == 'auto':
        source = _guess_source(naming, prefix, others, aside, backbone)
    elif source not in SOURCES:
        raise CheckpointError(
            f'unknown --source {source!r}; choose from {", ".join(SOURCES)}')
    else:
        _check_declared(source, naming, prefix, path)
    canonical, classifier = canonical_weights(backbone, naming)
    require_finite(canonical, path)
    dropped = OrderedDict()
    if aside:
        dropped['not weights'] = aside
    if others:
        dropped['not the backbone'] = _summarise(others)
    if classifier:
        dropped['classifier head'] = classifier
    kind = 'resnet' if naming == 'resnet' else 'convnext'
    return SourceBackbone(kind=kind, weights=canonical, source=source,
                          naming=naming, prefix=prefix, dropped=dropped)
