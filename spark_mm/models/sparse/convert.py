"""Convert a dense backbone's layers to sparse behaviour, in place.

``sparsify(backbone, context)`` swaps the class of every supported layer for a
sparse subclass (:mod:`.remask`, :mod:`.batch_norm`) bound to ``context``. Names, parameters and
buffers are untouched, so the weights load straight into the dense backbone.
Layers that mix spatial positions in ways a mask cannot follow (attention,
global context blocks that are not a mean) are refused with an error naming
them; norms and pooling over space use the visible positions only
(:data:`SPATIAL_CONVERSIONS`).
"""
from typing import Dict, List, Optional, Tuple

import torch.nn as nn
from mmcv.cnn.bricks.transformer import MultiheadAttention as MMCVAttention
from mmengine.logging import print_log
from mmpretrain.models.utils import attention as mmpretrain_attention
from timm.layers import (BatNonLocalAttn, GatherExcite, GlobalContext,
                         NonLocalAttn, SelectiveKernel)
from timm.layers.attention import Attention as TimmAttention
from timm.layers.bottleneck_attn import BottleneckAttn
from timm.layers.cbam import CbamModule, LightCbamModule
from timm.layers.halo_attn import HaloAttn
from timm.layers.lambda_layer import LambdaLayer
from timm.models.maxxvit import Attention2d, AttentionCl

from ...errors import SparKInputError, UnsupportedLayerError
from ..fast.pointwise_block import SparsePointwiseBlockMixin
from ..fast.resnet_rows import (SparseBottleneckRowsMixin,
                                SparseResLayerRowsMixin)
from ..fast.resnet_stem_rows import SparseResNetRowsMixin
from .batch_norm import SparseBatchNormMixin
from .context import SparseContext
from .global_pool import SparseAdaptivePoolMixin
from .group_norm import SparseGroupNormMixin, SparseInstanceNormMixin
from .remask import SparseMixin, SparseRemaskMixin
from .squeeze_excite import SQUEEZE_EXCITE_CONVERSIONS

# Layers that compute across spatial positions in a way masking cannot fix
# (attention and attention-like global context), or that are not 2-d.
UNSUPPORTED_TYPES = (
    nn.LocalResponseNorm, nn.MultiheadAttention, nn.InstanceNorm1d,
    nn.InstanceNorm3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool3d, nn.Conv1d, nn.Conv3d,
    nn.modules.conv._ConvTransposeNd, nn.BatchNorm1d, nn.BatchNorm3d,
    TimmAttention, Attention2d, AttentionCl, BottleneckAttn, HaloAttn,
    LambdaLayer, NonLocalAttn, BatNonLocalAttn, GlobalContext, GatherExcite, CbamModule,
    LightCbamModule, SelectiveKernel, MMCVAttention,
    mmpretrain_attention.MultiheadAttention, mmpretrain_attention.WindowMSA,
    mmpretrain_attention.WindowMSAV2, mmpretrain_attention.ShiftWindowMSA,
    mmpretrain_attention.BEiTAttention, mmpretrain_attention.LeAttention)

# (dense module types, mixin) for layers that aggregate over space: their
# sparse versions use visible positions only (:mod:`.group_norm`,
# :mod:`.global_pool`, :mod:`.squeeze_excite`); upsampling is re-masked at
# its output scale.
SPATIAL_CONVERSIONS = (
    ((nn.GroupNorm, ), SparseGroupNormMixin),
    ((nn.InstanceNorm2d, ), SparseInstanceNormMixin),
    ((nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d), SparseAdaptivePoolMixin),
    ((nn.Upsample, ), SparseRemaskMixin),
) + SQUEEZE_EXCITE_CONVERSIONS

# Leaf layers that act on each position alone and map zero to zero.
POSITIONWISE_TYPES = (nn.Identity, nn.modules.dropout._DropoutNd, nn.Flatten)
POSITIONWISE_NAMES = ('DropPath', 'LayerScale', 'Scale')

_sparse_classes: Dict[Tuple[type, type], type] = {}


def sparse_class_of(dense_class: type, mixin: type) -> type:
    """The (cached) class ``Sparse<Name>`` deriving from ``mixin`` and ``dense_class``."""
    key = (dense_class, mixin)
    if key not in _sparse_classes:
        _sparse_classes[key] = type(f'Sparse{dense_class.__name__}',
                                    (mixin, dense_class),
                                    {'__module__': __name__})
    return _sparse_classes[key]


def dense_class_of(module_class: type) -> type:
    """The original class of a class made by :func:`sparse_class_of` (any
    other class: itself), e.g. for metadata that names the architecture."""
    for (dense_class, _), sparse_class in _sparse_classes.items():
        if sparse_class is module_class:
            return dense_class
    return module_class


def _is_channels_first_norm(module: nn.LayerNorm) -> bool:
    data_format = getattr(module, 'data_format', None)
    if data_format is not None:
        return data_format in ('channels_first', 'channel_first')
    return type(module).__name__.endswith('2d')


def _conversion_for(module: nn.Module) -> Optional[Tuple[type, bool]]:
    """(mixin, channels_last) for a layer we convert, or None."""
    for dense_types, mixin in SPATIAL_CONVERSIONS:
        if isinstance(module, dense_types):
            return mixin, False
    if isinstance(module, (nn.BatchNorm2d, nn.SyncBatchNorm)):
        return SparseBatchNormMixin, False
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        return SparseRemaskMixin, False
    if isinstance(module, nn.LayerNorm):
        return SparseRemaskMixin, not _is_channels_first_norm(module)
    if isinstance(module, nn.Linear):
        return SparseRemaskMixin, True
    if type(module).__name__ == 'GRN':
        return SparseRemaskMixin, False
    if _is_mmpretrain_convnext_block(module):
        return SparsePointwiseBlockMixin, False
    if _is_resnet_part(module, 'Bottleneck'):
        return SparseBottleneckRowsMixin, False
    if _is_resnet_part(module, 'ResLayer'):
        return SparseResLayerRowsMixin, False
    if _is_resnet_part(module, 'ResNet'):
        return SparseResNetRowsMixin, False
    return None


_RESNET_MODULES = ('mmpretrain.models.backbones.resnet',
                   'mmdet.models.backbones.resnet', 'mmdet.models.layers.res_layer')


def _is_resnet_part(module: nn.Module, name: str) -> bool:
    """mmpretrain's / mmdet's ResNet ``Bottleneck``, ``ResLayer`` or ``ResNet``
    (not subclasses)."""
    return (type(module).__name__ == name
            and type(module).__module__ in _RESNET_MODULES)


def _is_mmpretrain_convnext_block(module: nn.Module) -> bool:
    """mmpretrain's ConvNeXtBlock: its pointwise part can run on visible rows."""
    return (type(module).__name__ == 'ConvNeXtBlock'
            and type(module).__module__.startswith('mmpretrain.')
            and all(hasattr(module, name) for name in (
                'depthwise_conv', 'norm', 'pointwise_conv1', 'act',
                'pointwise_conv2', 'gamma', 'grn', 'linear_pw_conv', 'with_cp')))


def _is_unsupported(module: nn.Module) -> bool:
    return (isinstance(module, UNSUPPORTED_TYPES)
            or 'Attention' in type(module).__name__)


def _is_positionwise(module: nn.Module) -> bool:
    return (isinstance(module, POSITIONWISE_TYPES)
            or type(module).__module__ == 'torch.nn.modules.activation'
            or type(module).__name__ in POSITIONWISE_NAMES)


def _layers_to_convert(module: nn.Module):
    """``module.named_modules()`` without the layers inside squeeze-excitation
    modules that act on per-sample vectors (they stay dense, see
    :mod:`.squeeze_excite`)."""
    per_sample: List[str] = []
    for child_name, child in module.named_modules():
        if any(child_name == part or child_name.startswith(part + '.')
               for part in per_sample):
            continue
        conversion = _conversion_for(child)
        owner = conversion[0] if conversion is not None else child
        prefix = f'{child_name}.' if child_name else ''
        per_sample += [prefix + part
                       for part in getattr(owner, 'per_sample_children', ())]
        yield child_name, child


def refuse_unsupported(module: nn.Module, name: str = 'backbone') -> None:
    """Raise :class:`UnsupportedLayerError` naming every layer of ``module``
    that cannot be made sparse; nothing is changed. Run before anything else
    touches a backbone, so a ViT or a hybrid is refused in one line."""
    unsupported = [f'{name}.{child_name} ({type(child).__name__})'
                   for child_name, child in _layers_to_convert(module)
                   if not isinstance(child, SparseMixin) and _is_unsupported(child)]
    if unsupported:
        shown = unsupported[:6] + ([f'and {len(unsupported) - 6} more']
                                   if len(unsupported) > 6 else [])
        raise UnsupportedLayerError(
            'SparK cannot make these layers sparse (they mix spatial positions '
            'in a way a mask cannot follow): ' + ', '.join(shown) +
            '; use a CNN backbone without them, or sparse=False for the '
            'zero-outing ablation')


def sparsify(module: nn.Module, context: SparseContext,
             name: str = 'backbone', sync_bn: bool = False,
             rows_blocks: bool = True) -> List[str]:
    """Make ``module``'s layers sparse, bound to ``context``; returns their names.

    ``sync_bn`` turns every BatchNorm2d into a (sparse) SyncBN, for backbones
    that cannot be configured with one (e.g. timm's). Its state is unchanged.
    ``rows_blocks`` computes mmpretrain's / mmdet's ResNet bottlenecks and
    stem on the visible rows (:mod:`spark_mm.models.fast.resnet_rows`,
    :mod:`spark_mm.models.fast.resnet_stem_rows`); False keeps them dense
    with sparse layers. The results are the same.

    Raises :class:`UnsupportedLayerError` listing every layer that cannot be
    made sparse. Leaf layers of unknown type are kept dense with a warning
    naming them (they are correct only if they act on each position alone).
    """
    refuse_unsupported(module, name)
    unknown, converted = [], []
    for child_name, child in _layers_to_convert(module):
        full_name = f'{name}.{child_name}' if child_name else name
        if isinstance(child, SparseMixin):
            if child.sparse_context is not context:
                raise SparKInputError(f'{full_name} is already sparse and bound to '
                                      'another model; build a new backbone instead')
            continue
        conversion = _conversion_for(child)
        if conversion is not None:
            mixin, channels_last = conversion
            dense_class = type(child)
            if sync_bn and dense_class is nn.BatchNorm2d:
                dense_class, child.process_group = nn.SyncBatchNorm, None
            child.__class__ = sparse_class_of(dense_class, mixin)
            child.sparse_context = context
            if mixin is SparseRemaskMixin:
                child.sparse_channels_last = channels_last
            if mixin in (SparseBottleneckRowsMixin, SparseResNetRowsMixin):
                child.rows_path = rows_blocks
            converted.append(full_name)
        elif not list(child.children()) and not _is_positionwise(child):
            unknown.append(f'{full_name} ({type(child).__name__})')
    if unknown:
        print_log(
            'SparK left these layers dense because their type is unknown: ' +
            ', '.join(unknown) + '; this is only correct if they act on each '
            'position separately and map zero to zero', logger='current',
            level=30)
    return converted
