"""Fast path: visible positions of channels_last maps as (n, C) rows.

A channels_last (B, C, H, W) map is a (B * H * W, C) matrix; its visible
positions are a subset of the rows. Gathering them once lets layers that act
per position (batch norm here, ResNet blocks in :mod:`.resnet_rows`) compute
and keep 40% of the map at the default mask ratio, and hand rows from layer to
layer. Results equal the plain definitions in :mod:`spark_mm.models.sparse`.
"""
import torch
from torch.utils.weak import WeakTensorKeyDictionary

from ..sparse.batch_norm import SparseBatchNormMixin, rows_batch_norm
from ..sparse.bn_statistics import post_norm, uses_batch_stats


def rows_layout(x) -> bool:
    """True when ``x`` (B, C, H, W) is laid out as (B * H * W, C) rows."""
    return x.is_contiguous(memory_format=torch.channels_last)


def rows_view(x):
    """The (B * H * W, C) view of a channels_last ``x`` (no copy)."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def scatter_rows_into_zeros(rows, index, shape):
    """A channels_last (B, C, H, W) ``shape`` map: ``rows`` at ``index``, zero
    elsewhere (no autograd; :func:`scatter_rows` is the differentiable one)."""
    out = torch.empty(shape, dtype=rows.dtype, device=rows.device,
                      memory_format=torch.channels_last).zero_()  # not a view
    rows_view(out).index_copy_(0, index, rows)
    return out


# ---- rows <-> maps -------------------------------------------------------------
class _GatherRows(torch.autograd.Function):
    """``x`` (B, C, H, W) -> its rows ``index`` of the (B * H * W, C) view."""

    @staticmethod
    def forward(ctx, x, index):
        ctx.save_for_backward(index)
        ctx.shape = tuple(x.shape)
        return rows_view(x).index_select(0, index)

    @staticmethod
    def backward(ctx, grad_rows):
        index, = ctx.saved_tensors
        return scatter_rows_into_zeros(grad_rows.contiguous(), index, ctx.shape), None


class _ScatterRows(torch.autograd.Function):
    """(n, C) ``rows`` -> a channels_last ``shape`` map, zero off ``index``."""

    @staticmethod
    def forward(ctx, rows, index, shape):
        ctx.save_for_backward(index)
        return scatter_rows_into_zeros(rows, index, shape)

    @staticmethod
    def backward(ctx, grad_map):
        index, = ctx.saved_tensors
        grad_map = grad_map.contiguous(memory_format=torch.channels_last)
        return rows_view(grad_map).index_select(0, index), None, None


def gather_rows(x, index):
    return _GatherRows.apply(x, index)


def scatter_rows(rows, index, shape, remember=False):
    """``rows`` scattered into a zero map; ``remember``: later :func:`rows_of`
    calls on that map take ``rows`` instead of gathering them again."""
    out = _ScatterRows.apply(rows, index, tuple(shape))
    if remember:
        _ROWS_OF_MAP[out] = (out._version, rows, index)
    return out


# Maps scattered from rows -> (version, rows, index). Taking the rows instead
# of gathering them from the map gives the same values, and the gradient flows
# into the rows directly: no map-sized zero fill, scatter and sum of map
# gradients in the backward, and one tensor kept instead of two.
_ROWS_OF_MAP = WeakTensorKeyDictionary()


def rows_of(x, index):
    """The rows ``index`` of the channels_last map ``x``: the rows it was
    scattered from (``scatter_rows(..., remember=True)``, not modified
    since), else gathered."""
    version, rows, rows_index = _ROWS_OF_MAP.get(x, (None, None, None))
    if version == x._version and rows_index is index:
        return rows
    return gather_rows(x, index)


# ---- batch norm on rows ---------------------------------------------------------
class RowsBatchNormMixin(SparseBatchNormMixin):
    """Sparse BN of channels_last maps in training, on the visible rows.

    The same computation as :class:`SparseBatchNormMixin` (gather, batch
    norm of the rows, scatter), with a gather and scatter that keep only the
    rows for the backward, and a map scattered from known rows (a ResNet
    stage's output on the rows path) handing over those rows instead of being
    gathered again.
    """

    def forward(self, x):
        if not (self.sparse_active and x.dim() == 4 and rows_layout(x)
                and uses_batch_stats(self)):
            return super().forward(x)
        index = self.sparse_context.visible_rows(*x.shape[-2:])
        rows = post_norm(self, rows_batch_norm(self, rows_of(x, index)))
        return scatter_rows(rows, index, x.shape)
