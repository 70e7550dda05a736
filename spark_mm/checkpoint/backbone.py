"""Backbone-only weights from a SparK checkpoint, in the dense backbone's naming.

A SparK model keeps its (converted) backbone as ``model.backbone`` with the
dense backbone's own parameter names, so the backbone weights are exactly the
``backbone.`` entries of the model's state dict with that prefix removed.
"""
from collections import OrderedDict
from typing import Mapping, Union

import torch

from ..errors import CheckpointError
from .loading import load_checkpoint_safely, state_dict_of
from .saving import save_torch_atomically

BACKBONE_PREFIX = 'backbone.'


def backbone_state_dict(
        checkpoint: Union[str, Mapping],
        prefix: str = BACKBONE_PREFIX) -> 'OrderedDict[str, torch.Tensor]':
    """Backbone weights of a SparK checkpoint (path or loaded dict), prefix removed."""
    if isinstance(checkpoint, str):
        source = checkpoint
        checkpoint = load_checkpoint_safely(checkpoint)
    else:
        source = 'the given checkpoint'
    weights = state_dict_of(checkpoint)
    # Contiguous: a channels_last run stores NHWC-strided weights, which every
    # consumer loads, but plain layouts are what other tools expect to read.
    backbone = OrderedDict((key[len(prefix):], value.contiguous())
                           for key, value in weights.items()
                           if key.startswith(prefix))
    if not backbone:
        raise CheckpointError(
            f'{source} holds no {prefix!r} weights (first keys: '
            f'{list(weights)[:5]}); pass a SparK pretraining checkpoint')
    return backbone


def save_backbone(state_dict: Mapping[str, torch.Tensor], path: str,
                  meta: dict = None) -> str:
    """Write backbone weights as an mmengine-style checkpoint, atomically."""
    return save_torch_atomically(
        {'state_dict': OrderedDict(state_dict), 'meta': meta or {}}, path)
