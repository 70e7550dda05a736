"""Backbone-only weights from a SparK checkpoint, in the dense backbone's naming.

A SparK model keeps its (converted) backbone as ``model.backbone`` with the
dense backbone's own parameter names, so the backbone weights are exactly the
``backbone.`` entries of the model's state dict with that prefix removed.
"""
import os
from collections import OrderedDict
from typing import Mapping, Union

import torch

BACKBONE_PREFIX = 'backbone.'


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable or holds the wrong keys."""


def load_checkpoint_file(path: str) -> dict:
    """Read a checkpoint written by mmengine or by :func:`save_backbone`.

    With ``torch.load(weights_only=True)`` and the allow-list of mmengine's few
    non-tensor objects; a missing or unreadable file is a one-line
    :class:`CheckpointError`.
    """
    from .engine.checkpoint_safety import load_checkpoint_safely  # imports us
    return load_checkpoint_safely(path)


def state_dict_of(checkpoint: Mapping) -> Mapping[str, torch.Tensor]:
    """The weights of an mmengine checkpoint, or the mapping itself."""
    if 'state_dict' in checkpoint:
        return checkpoint['state_dict']
    if 'model' in checkpoint and isinstance(checkpoint['model'], Mapping):
        return checkpoint['model']
    return checkpoint


def backbone_state_dict(
        checkpoint: Union[str, Mapping],
        prefix: str = BACKBONE_PREFIX) -> 'OrderedDict[str, torch.Tensor]':
    """Backbone weights of a SparK checkpoint (path or loaded dict), prefix removed."""
    if isinstance(checkpoint, str):
        source = checkpoint
        checkpoint = load_checkpoint_file(checkpoint)
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
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp_path = f'{path}.tmp.{os.getpid()}'
    torch.save({'state_dict': OrderedDict(state_dict), 'meta': meta or {}},
               tmp_path)
    os.replace(tmp_path, path)
    return path
