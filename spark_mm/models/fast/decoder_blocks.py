"""The densify step and the decoder with the fast path's implementations.

Each mixin replaces one class of :mod:`spark_mm.models` (the plug-in swaps it
in by type, :mod:`.plugin`) and computes what it computes:

- :class:`FastDensifierMixin`: the projection's backward on visible rows
  (:mod:`.densify_projection`);
- :class:`FastUpsampleBlockMixin`: the transposed conv and the first 3x3 conv
  as one map (:mod:`.fused_upsample`) where the tuner measured that faster,
  and BN -> ReLU6 -> conv keeping only the BN input (:mod:`.norm_act_conv`);
- :class:`FastDecoderMixin`: the last block's BN -> prediction conv the same
  way.
"""
import torch

from ..sparse.context import expand_mask
from .densify_projection import densify_projection, projects_visible_rows
from .fused_upsample import composed_upsample_conv
from .norm_act_conv import (batch_norm_conv, batch_norm_relu6_conv,
                            keeps_only_norm_input)
from .relu6_inplace import ReLU6InPlace
from .row_products import MATMUL, ONEDNN
from .tuner import TunedMixin

_relu6 = ReLU6InPlace()  # stateless; keeps only its output for the backward


class FastDensifierMixin(TunedMixin):
    """:class:`~spark_mm.models.densify.Densifier` whose projections'
    backward runs on the visible rows (channels_last features), its matrix
    products by the library the tuner measured faster."""

    class_prefix = 'Fast'

    def forward(self, features, active_b1hw):
        dense = []
        for scale, feature in enumerate(features):
            feature = self.norms[scale](feature)
            height, width = feature.shape[-2:]
            active = expand_mask(active_b1hw, height, width)
            token, projection = self.mask_tokens[scale], self.projections[scale]
            if projects_visible_rows(projection, feature):
                visible = active.flatten().nonzero().squeeze(1)
                feature = self._project_rows(scale, feature, active, token, visible)
            else:
                feature = projection(torch.where(active, feature, token.to(feature.dtype)))
            if self.pos_embeds is not None:
                feature = feature + self._pos_embed(scale, height, width)
            dense.append(feature)
        return dense

    def _project_rows(self, scale, feature, active, token, visible):
        projection = self.projections[scale]

        def timed(engine):
            def run():
                copies = [feature.detach().requires_grad_(), token.detach().requires_grad_(),
                          projection.weight]
                return densify_projection(copies[0], active, copies[1], projection,
                                          visible, engine), copies
            return run

        engine = self.fast_tuner.choose(
            f'{self.fast_name}.projections.{scale}', 'matrix product on rows',
            ('densify backward', tuple(feature.shape), tuple(projection.weight.shape),
             len(visible), str(feature.dtype)),
            {MATMUL: timed(MATMUL), ONEDNN: timed(ONEDNN)}, feature.device)
        return densify_projection(feature, active, token, projection, visible, engine)


class FastUpsampleBlockMixin(TunedMixin):
    """:class:`~spark_mm.models.decoder.UpsampleBlock`, the same maths in
    less time and memory."""

    class_prefix = 'Fast'

    def forward(self, x):
        return self.norm2(self.convs(x))

    def convs(self, x):
        """The block up to ``norm2``: upsample, conv1, norm1, act, conv2."""
        x = self.upsample_conv1(x)
        if keeps_only_norm_input(self.norm1, self.conv2, x):
            return batch_norm_relu6_conv(x, self.norm1, self.conv2)
        return self.conv2(_relu6(self.norm1(x)))

    def upsample_conv1(self, x):
        """``conv1(upsample(x))``, composed or sequential as the tuner chose."""
        def sequential(x=x):
            return self.conv1(self.upsample(x))

        def composed(x=x):
            return composed_upsample_conv(x, self.upsample, self.conv1)

        def timed(implementation):
            def run():
                copy = x.detach().requires_grad_(x.requires_grad)
                wrt = [copy, self.upsample.weight, self.conv1.weight]
                return implementation(copy), wrt
            return run

        choice = self.fast_tuner.choose(
            f'{self.fast_name}.upsample+conv1', 'decoder upsample',
            (tuple(x.shape), self.conv1.out_channels, str(x.dtype)),
            {'sequential': timed(sequential), 'composed': timed(composed)},
            x.device)
        return composed() if choice == 'composed' else sequential()


class FastDecoderMixin:
    """:class:`~spark_mm.models.decoder.LightUNetDecoder` keeping no copy of
    the last block's output (the input of its ``norm2`` is kept anyway)."""

    class_prefix = 'Fast'

    def forward(self, dense):
        x = dense[0]
        last = len(self.blocks) - 1
        for index, block in enumerate(self.blocks):
            skip = dense[index + 1] if index + 1 < len(dense) else None
            if index == last and skip is None:
                return self._predict_after(block, x)
            x = block(x)
            if skip is not None:
                x = x + skip
        return self.predict(x)

    def _predict_after(self, block, x):
        x = block.convs(x)
        if keeps_only_norm_input(block.norm2, self.predict, x):
            return batch_norm_conv(x, block.norm2, self.predict)
        return self.predict(block.norm2(x))
