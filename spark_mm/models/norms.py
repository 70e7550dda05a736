"""Norm layers for the parts SparK adds (densify step and decoder)."""
import torch.nn as nn

from ..registry import MODELS
from .sparse import SparseContext, sparsify


def build_norm(norm_cfg: dict, channels: int,
               context: SparseContext = None) -> nn.Module:
    """A norm from ``norm_cfg`` (``BN``, ``SyncBN``, ``LN2d``, ...) that works anywhere.

    It is made sparse and bound to ``context``: while a mask is active it
    normalizes over visible positions, otherwise it is the dense norm. SyncBN
    also runs on CPU/gloo, and in a single process as plain BN.
    """
    kwargs = dict(norm_cfg)
    norm_type = kwargs.pop('type')
    norm_class = MODELS.get(norm_type)
    if norm_class is None:
        raise KeyError(f'norm type {norm_type!r} is not registered; use BN, '
                       'SyncBN or LN2d')
    norm = norm_class(channels, **kwargs)
    sparsify(norm, context or SparseContext(), name=norm_type)
    return norm
