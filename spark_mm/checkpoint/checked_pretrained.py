"""Backbone weights that must fit: ``init_cfg=dict(type='spark_mm.CheckedPretrained', ...)``.

mmengine's ``Pretrained`` init loads with ``strict=False`` and only logs what
did not fit, so a backbone built with the wrong variant (mmseg's default
``ResNetV1c`` has a deep stem; SparK's ResNet has not) trains from a half
random init without anyone noticing. This initializer loads the same way but
refuses, in one line, any backbone key the checkpoint lacks or holds with
another shape. Keys the checkpoint has and the backbone has not (e.g.
torchvision's ``fc.*``) are ignored and logged.

One exception, by design: mmpretrain ``ConvNeXt`` with ``out_indices`` adds a
LayerNorm per output stage (``norm0`` .. ``norm3``). SparK pretraining, like
the official code, feeds the raw stage outputs to its densify/decoder and does
not train them, so SparK ConvNeXt weights lack them (mmpretrain's ImageNet
classifiers hold only ``norm3``). They are initialised fresh (weight 1, bias
0), which the log says; any other missing key is still an error.
"""
import os.path as osp
import re
from collections import OrderedDict
from typing import Mapping, Optional

import torch
import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.runner.checkpoint import CheckpointLoader
from mmpretrain.models import ConvNeXt

from ..errors import CheckpointError
from ..registry import WEIGHT_INITIALIZERS
from .key_report import NOTHING, compare_keys, listed
from .loading import load_checkpoint_safely, state_dict_of
from .names import CONVNEXT_STAGE_NORM
from .prefixes import DATA_PARALLEL_PREFIX, strip_prefix


def fresh_keys_allowed(module: nn.Module) -> re.Pattern:
    """Which missing keys ``module`` may initialise itself (never matches
    anything for backbones other than mmpretrain's ConvNeXt)."""
    if isinstance(module, ConvNeXt):
        return CONVNEXT_STAGE_NORM
    return NOTHING


def _read(checkpoint: str) -> Mapping:
    if osp.isfile(checkpoint) or '://' not in checkpoint:
        return load_checkpoint_safely(checkpoint)  # CheckpointError if absent
    return CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')


def backbone_weights(checkpoint: str, prefix: Optional[str]) -> 'OrderedDict':
    """The weights under ``prefix`` (removed), DataParallel's ``module.`` dropped."""
    weights = state_dict_of(_read(checkpoint))
    if not isinstance(weights, Mapping):
        raise CheckpointError(f'checkpoint {checkpoint!r} holds no state dict')
    weights = strip_prefix(weights, DATA_PARALLEL_PREFIX, keep_others=True)
    if prefix:
        weights = strip_prefix(weights, prefix)
        if not weights:
            raise CheckpointError(
                f'checkpoint {checkpoint!r} holds no {prefix!r} weights; for a '
                'backbone-only file (backbone.pth, tools/export_backbone.py) '
                'set init_cfg.prefix=None')
    return weights


@WEIGHT_INITIALIZERS.register_module()
class CheckedPretrained:
    """Load ``checkpoint`` (under ``prefix``) into the module; no key may be missing.

    Args:
        checkpoint: local path or URL of the weights.
        prefix: key prefix of the module's weights in the checkpoint, removed
            on loading (``'backbone.'`` for a SparK pretraining checkpoint or
            an mmpretrain classifier); None for a backbone-only file.
    """

    def __init__(self, checkpoint: str, prefix: Optional[str] = None,
                 map_location: str = 'cpu'):
        self.checkpoint = checkpoint
        self.prefix = prefix
        self.map_location = map_location  # accepted as in Pretrained; CPU load

    def __call__(self, module: nn.Module) -> None:
        weights = backbone_weights(self.checkpoint, self.prefix)
        expected = module.state_dict()
        # BN fills num_batches_tracked itself for checkpoints without it
        # (torchvision's ImageNet weights): not a weight that can be missing.
        report = compare_keys(expected, weights, fresh=fresh_keys_allowed(module),
                              optional=re.compile(r'num_batches_tracked$'))
        name = type(module).__name__
        if report.missing or report.reshaped:
            raise CheckpointError(
                f'backbone weights {self.checkpoint!r} (prefix '
                f'{self.prefix!r}) do not fit {name}: '
                + report.problems(unexpected=False, limit=6) +
                '; use the backbone the weights were trained with (SparK '
                'ResNet is a plain ResNet: type=ResNet, not ResNetV1c) and '
                "prefix='backbone.' for a full pretraining checkpoint")
        fresh, unexpected = report.fresh, report.unexpected
        module.load_state_dict(
            {key: value for key, value in weights.items() if key in expected},
            strict=False)
        for key in fresh:
            with torch.no_grad():
                parameter = module.get_parameter(key)
                parameter.fill_(1.0 if key.endswith('weight') else 0.0)
        # The loaded weights are final: submodules' own init_weights, which
        # mmengine runs after a non-'Pretrained' init_cfg unless their
        # ``is_init`` is set, must not redo them. That includes modules of
        # other libraries (timm's models have an init_weights of their own).
        for sub in module.modules():
            if sub is not module:
                sub.is_init = True

        loaded = len(set(weights) & set(expected))
        logger = MMLogger.get_current_instance()
        logger.info(
            f'CheckedPretrained: {name} loaded from {self.checkpoint} (prefix '
            f'{self.prefix!r}): {loaded} of {len(expected)} tensors, 0 missing'
            + (f', {len(unexpected)} unused: {listed(unexpected, 6)}'
               if unexpected else ', 0 unused'))
        if fresh:
            logger.info(
                f'CheckedPretrained: {listed(fresh, limit=8)} not in the '
                'checkpoint, initialised fresh (weight 1, bias 0): the '
                'per-stage output LayerNorms of ConvNeXt, which SparK '
                'pretraining does not train (its encoder feeds raw stage '
                'outputs to the decoder)')
