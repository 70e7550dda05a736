"""Refuse to evaluate a checkpoint that does not fit the config's model.

mmengine loads what fits, logs the rest in a warning holding every key, and
goes on: a detector whose neck and heads stayed random scores mAP 0 and the
run exits 0. :func:`require_checkpoint_fits` loads the weights the way the
model itself does (its load hooks, e.g. the kNN classifier's, rename keys
first) and raises one line with a short summary instead.
"""
from collections import OrderedDict
from typing import List

import torch.nn as nn

from ..errors import CheckpointError
from .loading import load_checkpoint_safely, state_dict_of


def _grouped(keys: List[str], limit: int = 4) -> str:
    """'neck.* (12), roi_head.* (40)': keys counted by their first part."""
    groups = OrderedDict()
    for key in keys:
        groups.setdefault(key.split('.')[0], []).append(key)
    shown = [members[0] if len(members) == 1 else f'{head}.* ({len(members)})'
             for head, members in list(groups.items())[:limit]]
    more = len(groups) - limit
    return ', '.join(shown) + (f' (+{more} more groups)' if more > 0 else '')


def require_checkpoint_fits(model: nn.Module, path: str, fix: str) -> None:
    """Load ``path`` into ``model``; CheckpointError (one line, ending in
    ``fix``) if a weight of the model is missing or has another shape."""
    weights = state_dict_of(load_checkpoint_safely(path))
    weights = OrderedDict((key[len('module.'):] if key.startswith('module.')
                           else key, value) for key, value in weights.items())
    try:
        result = model.load_state_dict(weights, strict=False)
    except RuntimeError as error:  # torch raises on shapes even when not strict
        shapes = [line.strip() for line in str(error).splitlines()
                  if 'size mismatch' in line]
        raise CheckpointError(
            f'checkpoint {path!r} does not fit the model of this config: '
            f'{len(shapes)} weights of another shape (e.g. '
            f'{shapes[0] if shapes else str(error).splitlines()[0]}); {fix}'
        ) from None
    missing = [key for key in result.missing_keys
               if not key.endswith('num_batches_tracked')]
    if missing:
        expected = len(model.state_dict())
        unexpected = (f'; {len(result.unexpected_keys)} of its weights unused: '
                      f'{_grouped(result.unexpected_keys)}'
                      if result.unexpected_keys else '')
        raise CheckpointError(
            f'checkpoint {path!r} does not fit the model of this config: '
            f'{len(missing)} of {expected} weights missing: '
            f'{_grouped(missing)}{unexpected}; {fix}')
