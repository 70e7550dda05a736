"""Convert a dense backbone's layers to sparse behaviour, in place.

``sparsify(backbone, context)`` swaps the class of every supported layer for a
sparse subclass (:mod:`.remask`, :mod:`.batch_norm`, and for layers that
aggregate over space :mod:`.group_norm`, :mod:`.global_pool`,
:mod:`.squeeze_excite`) bound to ``context``. Names, parameters and buffers
are untouched, so the weights load straight into the dense backbone. Layers
are recognised by type (:data:`SPARSE_MIXINS`). Layers that mix spatial
positions in ways a mask cannot follow (attention, global context blocks that
are not a mean) are refused with an error naming them.
"""
from typing import Dict, List, Tuple

import torch.nn as nn
from mmcv.cnn import ContextBlock, GeneralizedAttention, NonLocal2d, Scale
from mmcv.cnn.bricks.drop import DropPath as MMCVDropPath
from mmcv.cnn.bricks.transformer import MultiheadAttention as MMCVAttention
from mmengine.logging import print_log
from mmpretrain.models.utils import GRN, LayerScale
from mmpretrain.models.utils import attention as mmpretrain_attention
from timm.layers import (BatNonLocalAttn, GatherExcite, GlobalContext,
                         NonLocalAttn, SelectiveKernel)
from timm.layers import DropPath as TimmDropPath
from timm.layers import LayerScale as TimmLayerScale
from timm.layers import LayerScale2d as TimmLayerScale2d
from timm.layers.attention import Attention as TimmAttention
from timm.layers.bottleneck_attn import BottleneckAttn
from timm.layers.cbam import CbamModule, LightCbamModule
from timm.layers.halo_attn import HaloAttn
from timm.layers.lambda_layer import LambdaLayer
from timm.models.maxxvit import Attention2d, AttentionCl

from ...errors import SparKInputError, UnsupportedLayerError
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
    LightCbamModule, SelectiveKernel, MMCVAttention, ContextBlock,
    GeneralizedAttention, NonLocal2d,
    mmpretrain_attention.MultiheadAttention, mmpretrain_attention.WindowMSA,
    mmpretrain_attention.WindowMSAV2, mmpretrain_attention.ShiftWindowMSA,
    mmpretrain_attention.BEiTAttention, mmpretrain_attention.LeAttention)

# (dense module types, mixin) for layers that aggregate over space: their
# sparse versions use visible positions only (:mod:`.group_norm`,
# :mod:`.global_pool`, :mod:`.squeeze_excite`); upsampling is re-masked at
# its output scale. Checked before the rest (an SE module is no conv).
SPATIAL_CONVERSIONS = (
    ((nn.GroupNorm, ), SparseGroupNormMixin),
    ((nn.InstanceNorm2d, ), SparseInstanceNormMixin),
    ((nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d), SparseAdaptivePoolMixin),
    ((nn.Upsample, ), SparseRemaskMixin),
) + SQUEEZE_EXCITE_CONVERSIONS

# Leaf layers that act on each position alone and map zero to zero.
POSITIONWISE_TYPES = (nn.Identity, nn.modules.dropout._DropoutNd, nn.Flatten,
                      MMCVDropPath, TimmDropPath, LayerScale, TimmLayerScale,
                      TimmLayerScale2d, Scale)

# (dense types, sparse mixin), first match wins. A conv / pooling / linear /
# layer norm / GRN output is re-masked; batch norm normalizes visible rows.
SPARSE_MIXINS = SPATIAL_CONVERSIONS + (
    ((nn.BatchNorm2d, nn.SyncBatchNorm), SparseBatchNormMixin),
    ((nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.LayerNorm, nn.Linear, GRN),
     SparseRemaskMixin),
)

_sparse_classes: Dict[Tuple[type, type], type] = {}


def sparse_class_of(dense_class: type, mixin: type) -> type:
    """The (cached) class ``Sparse<Name>`` deriving from ``mixin`` and
    ``dense_class`` (``<prefix><Name>`` for a mixin with a ``class_prefix``)."""
    key = (dense_class, mixin)
    if key not in _sparse_classes:
        prefix = getattr(mixin, 'class_prefix', 'Sparse')
        _sparse_classes[key] = type(f'{prefix}{dense_class.__name__}',
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


def mixin_for(module: nn.Module):
    """The sparse mixin for ``module``'s type, or None."""
    for types, mixin in SPARSE_MIXINS:
        if isinstance(module, types):
            return mixin
    return None


def _output_is_channels_last(module: nn.Module) -> bool:
    """Layout of a re-masked layer's output: (B, H, W, C) for ``Linear`` and
    channels-last layer norms (ConvNeXt-style blocks), (B, C, H, W) else."""
    if isinstance(module, nn.Linear):
        return True
    if isinstance(module, nn.LayerNorm):
        data_format = getattr(module, 'data_format', None)
        if data_format is not None:
            return data_format not in ('channels_first', 'channel_first')
        return not type(module).__name__.endswith('2d')  # timm's LayerNorm2d
    return False


def _is_unsupported(module: nn.Module) -> bool:
    return (isinstance(module, UNSUPPORTED_TYPES)
            or 'Attention' in type(module).__name__)


def _is_positionwise(module: nn.Module) -> bool:
    return (isinstance(module, POSITIONWISE_TYPES)
            or type(module).__module__ == 'torch.nn.modules.activation')


def _layers_to_convert(module: nn.Module):
    """``module.named_modules()`` without the layers inside squeeze-excitation
    modules that act on per-sample vectors (they stay dense, see
    :mod:`.squeeze_excite`)."""
    per_sample: List[str] = []
    for child_name, child in module.named_modules():
        if any(child_name == part or child_name.startswith(part + '.')
               for part in per_sample):
            continue
        mixin = mixin_for(child)
        owner = mixin if mixin is not None else child
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
             name: str = 'backbone', sync_bn: bool = False) -> List[str]:
    """Make ``module``'s layers sparse, bound to ``context``; returns their names.

    ``sync_bn`` turns every BatchNorm2d into a (sparse) SyncBN, for backbones
    that cannot be configured with one (e.g. timm's). Its state is unchanged.

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
        mixin = mixin_for(child)
        if mixin is not None:
            dense_class = type(child)
            if sync_bn and dense_class is nn.BatchNorm2d:
                dense_class, child.process_group = nn.SyncBatchNorm, None
            child.__class__ = sparse_class_of(dense_class, mixin)
            child.sparse_context = context
            if mixin is SparseRemaskMixin:
                child.sparse_channels_last = _output_is_channels_last(child)
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


def replace_class(module: nn.Module, mixin: type) -> None:
    """Give a module (sparse or not) the class ``Sparse<Name>`` of its dense
    class and ``mixin``: how a plug-in (the fast path) swaps in another
    implementation of the same layer. State and names are unchanged."""
    module.__class__ = sparse_class_of(dense_class_of(type(module)), mixin)
