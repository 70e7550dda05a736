"""Squeeze-excitation, ECA and split attention over visible positions.

These modules squeeze a map to a per-sample vector with a spatial mean
(functional ``x.mean((2, 3))`` or an ``AdaptiveAvgPool2d(1)``), turn it into
a per-channel gate with small layers, and multiply the map by it. Sparse:
the mean is over the visible positions of each sample
(:func:`~.global_pool.visible_mean`), the layers that act on the vector stay
dense (they are not maps; ``per_sample_children`` names them, and
:func:`~.convert.sparsify` leaves them as they are), and the gated map is
set to exactly zero at masked positions (:func:`gate_visible`).

Each mixin restates its dense module's forward with the visible mean, for the
module types listed in :data:`SQUEEZE_EXCITE_CONVERSIONS`.
"""
import torch.nn.functional as F
from mmpretrain.models.utils.se_layer import SELayer as MMPretrainSELayer
from timm.layers.eca import CecaModule, EcaModule
from timm.layers.split_attn import SplitAttn
from timm.layers.squeeze_excite import EffectiveSEModule, SEModule
from timm.models._efficientnet_blocks import \
    SqueezeExcite as EfficientNetSqueezeExcite

from .global_pool import visible_max, visible_mean
from .remask import SparseMixin

try:  # mmdet is optional: spark_mm imports without it
    from mmdet.models.layers.se_layer import SELayer as MMDetSELayer
    SE_LAYER_TYPES = (MMPretrainSELayer, MMDetSELayer)
except ImportError:
    SE_LAYER_TYPES = (MMPretrainSELayer, )


def gate_visible(x, gate, mask):
    """``x * gate`` at visible positions, exactly 0 at masked ones (whatever
    ``x`` holds there)."""
    return (x * gate).mul_(mask)


class SparseSqueezeMixin(SparseMixin):
    """Common part: dense forward without a mask, else :meth:`sparse_forward`
    with the 0/1 mask of the input's scale."""

    per_sample_children = ()

    def forward(self, x):
        if not self.sparse_active:
            return super().forward(x)
        return self.sparse_forward(x, self.sparse_context.mask_like(x))


class SparseTimmSEModuleMixin(SparseSqueezeMixin):
    """timm ``SEModule`` (SE-ResNet(X), RegNetY, ReXNet)."""

    per_sample_children = ('fc1', 'bn', 'act', 'fc2', 'gate')

    def sparse_forward(self, x, mask):
        x_se = visible_mean(x, mask)
        if self.add_maxpool:
            x_se = 0.5 * x_se + 0.5 * visible_max(x, mask)
        x_se = self.fc2(self.act(self.bn(self.fc1(x_se))))
        return gate_visible(x, self.gate(x_se), mask)


class SparseTimmEffectiveSEMixin(SparseSqueezeMixin):
    """timm ``EffectiveSEModule`` (VoVNet's eSE)."""

    per_sample_children = ('fc', 'gate')

    def sparse_forward(self, x, mask):
        x_se = visible_mean(x, mask)
        if self.add_maxpool:
            x_se = 0.5 * x_se + 0.5 * visible_max(x, mask)
        return gate_visible(x, self.gate(self.fc(x_se)), mask)


class SparseEfficientNetSEMixin(SparseSqueezeMixin):
    """timm's EfficientNet-family ``SqueezeExcite`` (EfficientNet, MobileNetV3,
    GhostNet, MixNet, FBNet)."""

    per_sample_children = ('conv_reduce', 'act1', 'conv_expand', 'gate')

    def sparse_forward(self, x, mask):
        x_se = self.conv_expand(self.act1(self.conv_reduce(visible_mean(x, mask))))
        return gate_visible(x, self.gate(x_se), mask)


class SparseTimmEcaMixin(SparseSqueezeMixin):
    """timm ``EcaModule``: a 1-d conv across the channels of the mean."""

    per_sample_children = ('conv', 'act', 'conv2', 'gate')

    def sparse_forward(self, x, mask):
        y = visible_mean(x, mask).view(x.shape[0], 1, -1)
        y = self.conv(y)
        if self.conv2 is not None:
            y = self.conv2(self.act(y))
        return gate_visible(x, self.gate(y).view(x.shape[0], -1, 1, 1), mask)


class SparseTimmCecaMixin(SparseSqueezeMixin):
    """timm ``CecaModule``: ECA with circular padding across channels."""

    per_sample_children = ('conv', 'gate')

    def sparse_forward(self, x, mask):
        y = visible_mean(x, mask).view(x.shape[0], 1, -1)
        y = self.conv(F.pad(y, (self.padding, self.padding), mode='circular'))
        return gate_visible(x, self.gate(y).view(x.shape[0], -1, 1, 1), mask)


class SparseSplitAttnMixin(SparseSqueezeMixin):
    """timm ``SplitAttn`` (ResNeSt): its grouped conv and norm are spatial
    (converted like any conv and norm), its attention acts on the visible
    mean of the radix-summed map."""

    per_sample_children = ('fc1', 'bn1', 'act1', 'fc2', 'rsoftmax')

    def forward(self, x):
        if not self.sparse_active:
            return super().forward(x)
        x = self.act0(self.drop(self.bn0(self.conv(x))))
        batch, radix_channels, height, width = x.shape
        if self.radix > 1:
            x = x.reshape(batch, self.radix, radix_channels // self.radix, height, width)
            x_gap = x.sum(dim=1)
        else:
            x_gap = x
        mask = self.sparse_context.mask_like(x_gap)
        x_gap = visible_mean(x_gap, mask)
        x_attn = self.fc2(self.act1(self.bn1(self.fc1(x_gap))))
        x_attn = self.rsoftmax(x_attn).view(batch, -1, 1, 1)
        if self.radix > 1:
            shape = (batch, self.radix, radix_channels // self.radix, 1, 1)
            out = (x * x_attn.reshape(shape)).sum(dim=1)
        else:
            out = x * x_attn
        return out.mul_(mask).contiguous()


class SparseSELayerMixin(SparseSqueezeMixin):
    """mmpretrain's and mmdet's ``SELayer`` (SE-ResNet, MobileNetV3,
    EfficientNet): ``global_avgpool`` is replaced by the visible mean."""

    per_sample_children = ('global_avgpool', 'conv1', 'conv2')

    def sparse_forward(self, x, mask):
        gate = self.conv2(self.conv1(visible_mean(x, mask)))
        if getattr(self, 'return_weight', False):
            return gate
        return gate_visible(x, gate, mask)


# (dense module types, mixin): the squeeze-excitation modules found by type.
SQUEEZE_EXCITE_CONVERSIONS = (
    ((SEModule, ), SparseTimmSEModuleMixin),
    ((EffectiveSEModule, ), SparseTimmEffectiveSEMixin),
    ((EfficientNetSqueezeExcite, ), SparseEfficientNetSEMixin),
    ((EcaModule, ), SparseTimmEcaMixin),
    ((CecaModule, ), SparseTimmCecaMixin),
    ((SplitAttn, ), SparseSplitAttnMixin),
    (SE_LAYER_TYPES, SparseSELayerMixin),
)
