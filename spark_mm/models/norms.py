"""Norm layers for the parts SparK adds (densify step and decoder)."""
import torch.nn as nn

from ..registry import MODELS
from .sparse import SparseContext, sparsify


def build_norm(norm_cfg: dict, channels: int,
               context: SparseContext = None) -> nn.Module:
    """A norm from ``norm_cfg`` (``BN``, ``SyncBN``, ``LN2d``, ...).

    With a ``context`` (the densify step's norms) it is made sparse and bound
    to it: while a mask is active it normalizes over visible positions,
    otherwise it is the dense norm. Without one (the decoder's norms, which
    see dense maps) it is the registered norm itself.
    """
    kwargs = dict(norm_cfg)
    norm_type = kwargs.pop('type')
    norm_class = MODELS.get(norm_type)
    if norm_class is None:
        raise KeyError(f'norm type {norm_type!r} is not registered; use BN, '
                       'SyncBN or LN2d')
    norm = norm_class(channels, **kwargs)
    if context is not None:
        sparsify(norm, context, name=norm_type)
    return norm
