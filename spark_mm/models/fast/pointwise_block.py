"""Fast path: mmpretrain's ConvNeXt block with its pointwise part on visible rows."""
import torch
import torch.nn.functional as F

from ..sparse.remask import SparseMixin
from .row_products import rows_linear
from .tuner import TunedMixin


class SparsePointwiseBlockMixin(TunedMixin, SparseMixin):
    """mmpretrain's ``ConvNeXtBlock`` with its pointwise part on visible rows.

    Depthwise conv (sparse, re-masked), then the visible positions are
    gathered into (n, C) rows once; layer norm, both pointwise ``Linear``
    layers, the activation and layer scale run on those rows only (60% less
    work at the default mask ratio) and are scattered back into zeros. This
    is what the dense block does at visible positions, and its masked
    positions are zero either way. Blocks this does not cover (1x1 conv
    pointwise layers, GRN) use the dense block with its re-masked layers.
    The pointwise products run in the library the tuner measured faster
    (:mod:`.row_products`).
    """

    def forward(self, x):
        if not (self.sparse_active and self.linear_pw_conv and self.grn is None):
            return super().forward(x)
        if self.with_cp and x.requires_grad:
            return torch.utils.checkpoint.checkpoint(
                self._sparse_forward, x, use_reentrant=False)
        return self._sparse_forward(x)

    def _sparse_forward(self, x):
        shortcut = x
        x = self.depthwise_conv(x)
        index = self.sparse_context.visible_index(*x.shape[-2:])
        rows = x.permute(0, 2, 3, 1)[index]  # (n, C)
        norm = self.norm
        rows = F.layer_norm(rows, norm.normalized_shape, norm.weight, norm.bias,
                            norm.eps)
        # The sparse Linear layers expect 4-d maps: call their dense maths.
        fc1, fc2 = self.pointwise_conv1, self.pointwise_conv2
        rows = self.act(rows_linear(self, 'pointwise_conv1', rows, fc1.weight, fc1.bias))
        rows = rows_linear(self, 'pointwise_conv2', rows, fc2.weight, fc2.bias)
        if self.gamma is not None:
            rows = rows * self.gamma
        out = torch.zeros_like(shortcut, dtype=rows.dtype)
        out.permute(0, 2, 3, 1).index_put_(index, rows)
        return shortcut + self.drop_path(out)
