"""The fast path as a plug-in: ``SparK(fast_path=dict(type='SparKFastPath'))``.

SparK itself (:mod:`spark_mm.models`) is the plain algorithm. This plug-in
swaps in, by type, layers that compute the same thing in less time or memory
(each equal to the plain one in float64, see the tests), keeps weights and
maps channels_last, and stores the encoder's saved maps as visible rows.
Where it has several implementations of one operation, the :class:`Tuner`
measures which is faster on the machine it runs on.

Replacements are registered by type (:func:`register_fast_layer`); a layer
whose exact type is not registered stays as the plain algorithm has it.
"""
from contextlib import nullcontext
from typing import Dict, Optional

import torch
import torch.nn as nn
from mmpretrain.models.backbones import convnext as mmpretrain_convnext
from mmpretrain.models.backbones import resnet as mmpretrain_resnet

from ...registry import MODELS
from ..decoder import LightUNetDecoder, UpsampleBlock
from ..densify import Densifier
from ..sparse.batch_norm import SparseBatchNormMixin
from ..sparse.convert import dense_class_of, replace_class
from ..sparse.remask import SparseMixin
from .compact_saved_maps import CompactSavedMaps
from .decoder_blocks import (FastDecoderMixin, FastDensifierMixin,
                             FastUpsampleBlockMixin)
from .pointwise_block import SparsePointwiseBlockMixin
from .resnet_rows import SparseBottleneckRowsMixin, SparseResLayerRowsMixin
from .resnet_stem_rows import SparseResNetRowsMixin
from .tuner import TunedMixin, Tuner
from .visible_rows import RowsBatchNormMixin

# exact dense type -> the mixin that replaces its forward
_ENCODER_LAYERS: Dict[type, type] = {}
_SPARK_PARTS: Dict[type, type] = {
    Densifier: FastDensifierMixin,
    UpsampleBlock: FastUpsampleBlockMixin,
    LightUNetDecoder: FastDecoderMixin,
}
# sparse layers of any dense type, by the plain mixin they have
_SPARSE_LAYERS: Dict[type, type] = {SparseBatchNormMixin: RowsBatchNormMixin}


def register_fast_layer(dense_class: type, mixin: type) -> None:
    """Run encoder layers of exactly ``dense_class`` with ``mixin``'s forward
    (a subclass of :class:`~spark_mm.models.sparse.remask.SparseMixin` that
    computes what the plain sparse layer computes)."""
    _ENCODER_LAYERS[dense_class] = mixin


register_fast_layer(mmpretrain_resnet.Bottleneck, SparseBottleneckRowsMixin)
register_fast_layer(mmpretrain_resnet.ResLayer, SparseResLayerRowsMixin)
register_fast_layer(mmpretrain_resnet.ResNet, SparseResNetRowsMixin)
register_fast_layer(mmpretrain_convnext.ConvNeXtBlock, SparsePointwiseBlockMixin)
try:  # mmdet is optional for pretraining
    from mmdet.models.backbones import resnet as mmdet_resnet
    from mmdet.models.layers import res_layer as mmdet_res_layer
except ImportError:
    pass
else:
    register_fast_layer(mmdet_resnet.Bottleneck, SparseBottleneckRowsMixin)
    register_fast_layer(mmdet_res_layer.ResLayer, SparseResLayerRowsMixin)
    register_fast_layer(mmdet_resnet.ResNet, SparseResNetRowsMixin)


@MODELS.register_module()
class SparKFastPath:
    """What a SparK model does to run faster, the same results.

    Args:
        channels_last: weights and maps in channels_last (NHWC) memory format:
            faster convolutions on CPUs and tensor cores, and the layout in
            which the visible positions of a map are rows of a matrix (the
            rows paths need it).
        compact_saved_maps: keep the encoder's maps that autograd saves as
            their visible rows (:mod:`.compact_saved_maps`); needs
            ``channels_last``.
        tuner: :class:`Tuner` arguments; ``mode='measure'`` (default) times
            the implementations of each operation on this machine,
            ``'plain'`` / ``'fast'`` always take the plain / the other one,
            ``fixed`` pins an operation, e.g. ``{'ResNet stage': 'rows'}``.
    """

    def __init__(self, channels_last: bool = True, compact_saved_maps: bool = True,
                 tuner: Optional[dict] = None):
        self.channels_last = channels_last
        self.compact_saved_maps = compact_saved_maps
        self.tuner = Tuner(**(tuner or {}))

    def apply(self, model: nn.Module) -> None:
        """Swap in the fast layers of ``model`` (a SparK, or a part of one
        such as its decoder), in place."""
        sparse = getattr(model, 'sparse', False)
        for name, module in model.named_modules():
            mixin = self._mixin_for(module, sparse)
            if mixin is None:
                continue
            replace_class(module, mixin)
            if isinstance(module, SparseMixin):
                module.sparse_context = model.sparse_context
            if isinstance(module, TunedMixin):
                module.fast_tuner, module.fast_name = self.tuner, name
        if self.channels_last:
            model.to(memory_format=torch.channels_last)

    @staticmethod
    def _mixin_for(module: nn.Module, sparse: bool) -> Optional[type]:
        dense_class = dense_class_of(type(module))
        if dense_class in _SPARK_PARTS:
            return _SPARK_PARTS[dense_class]
        if not sparse:
            return None
        for plain_mixin, mixin in _SPARSE_LAYERS.items():
            if isinstance(module, plain_mixin):
                return mixin
        return _ENCODER_LAYERS.get(dense_class) if dense_class is type(module) else None

    def prepare_images(self, images_bchw: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            return images_bchw.contiguous(memory_format=torch.channels_last)
        return images_bchw

    def encoder_scope(self, model: nn.Module):
        """Around the sparse encoder's forward."""
        if (self.channels_last and self.compact_saved_maps and model.sparse
                and torch.is_grad_enabled()):
            return CompactSavedMaps(model.sparse_context)
        return nullcontext()
