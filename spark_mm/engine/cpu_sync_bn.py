"""SyncBN for dense models on CPU (gloo): torch's ``nn.SyncBatchNorm`` runs
only on accelerators.

:func:`convert_sync_batchnorm_for_cpu` swaps the class of each
``nn.SyncBatchNorm`` (and subclasses such as timm's ``SyncBatchNormAct``) for
``CPU<Name>``, e.g. ``CPUSyncBatchNorm``. Parameter and buffer names are
unchanged. In training, with a process group of several ranks, each rank's
(count, mean, variance) are gathered and combined exactly, as SyncBN does;
otherwise it is plain batch norm. The SparK encoder's own sparse BN syncs by
itself and is left alone.
"""
from typing import Dict

import torch.nn as nn

from ..models.sparse import SparseMixin
from ..models.sparse.batch_norm import map_batch_norm
from ..models.sparse.bn_statistics import post_norm, sync_group

_cpu_classes: Dict[type, type] = {}


class CPUSyncBatchNormMixin:
    """``forward`` of a SyncBatchNorm that synchronises over any backend."""

    def forward(self, x):
        if x.dim() != 4:
            raise RuntimeError(f'{type(self).__name__} expects (B, C, H, W) '
                               f'input, got {tuple(x.shape)}')
        group = sync_group(self)
        if group is None:  # what SyncBN computes in a single process
            out = nn.BatchNorm2d.forward(self, x)
        else:
            out = map_batch_norm(self, x)
        return post_norm(self, out)


def cpu_sync_class_of(sync_bn_class: type) -> type:
    """The (cached) class ``CPU<Name>`` of a SyncBatchNorm class."""
    if sync_bn_class not in _cpu_classes:
        _cpu_classes[sync_bn_class] = type(
            f'CPU{sync_bn_class.__name__}', (CPUSyncBatchNormMixin, sync_bn_class),
            {'__module__': __name__})
    return _cpu_classes[sync_bn_class]


CPUSyncBatchNorm = cpu_sync_class_of(nn.SyncBatchNorm)


def convert_sync_batchnorm_for_cpu(model: nn.Module) -> int:
    """Make the ``nn.SyncBatchNorm`` layers of ``model`` run on CPU/gloo, in place.

    Returns the number of layers converted (sparse and converted layers are
    left alone).
    """
    converted = 0
    for module in model.modules():
        if isinstance(module, nn.SyncBatchNorm) and not isinstance(
                module, (SparseMixin, CPUSyncBatchNormMixin)):
            module.__class__ = cpu_sync_class_of(type(module))
            converted += 1
    return converted


def runs_on_cpu(layer: nn.Module) -> bool:
    """False for a SyncBatchNorm that torch would refuse to run on CPU."""
    return not isinstance(layer, nn.SyncBatchNorm) or isinstance(
        layer, (SparseMixin, CPUSyncBatchNormMixin))


__all__ = ['CPUSyncBatchNorm', 'CPUSyncBatchNormMixin', 'cpu_sync_class_of',
           'convert_sync_batchnorm_for_cpu', 'runs_on_cpu']
