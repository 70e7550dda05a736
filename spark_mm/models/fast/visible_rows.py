"""Fast path: visible positions of channels_last maps as (n, C) rows.

A channels_last (B, C, H, W) map is a (B * H * W, C) matrix; its visible
positions are a subset of the rows. Gathering them once lets layers that act
per position (batch norm here, ConvNeXt's pointwise MLP in
:mod:`.pointwise_block`) compute and keep 40% of the map at the default mask
ratio. Results equal the plain definitions in :mod:`spark_mm.models.sparse`.
"""
import torch
import torch.nn.functional as F
from torch.utils.weak import WeakTensorKeyDictionary

from ..sparse.bn_statistics import (batch_norm_backward, combine_moments,
                                    row_moments, sync_group,
                                    update_running_stats, uses_batch_stats)


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
class _RowsBatchNorm(torch.autograd.Function):
    """Training-mode batch norm of (n, C) ``rows``; statistics over ``group``."""

    @staticmethod
    def forward(ctx, rows, weight, bias, eps, group):
        with torch.autocast(rows.device.type, enabled=False):
            mean, var, total = combine_moments(*row_moments(rows), group)
            out = F.batch_norm(rows, mean, var, weight, bias, False, 0.0, eps)
        ctx.save_for_backward(rows, weight, mean, var, total)
        ctx.eps, ctx.group = eps, group
        ctx.mark_non_differentiable(mean, var, total)
        return out, mean, var, total

    @staticmethod
    def backward(ctx, grad_out, *_):
        rows, weight, mean, var, total = ctx.saved_tensors
        with torch.autocast(grad_out.device.type, enabled=False):
            grad_x, grad_weight, grad_bias = batch_norm_backward(
                grad_out.contiguous(), rows, None, weight, mean, var, total,
                ctx.eps, ctx.group)
        needs = ctx.needs_input_grad
        return (grad_x, grad_weight if needs[1] else None,
                grad_bias if needs[2] else None, None, None)


def rows_batch_norm(bn, rows):
    """Sparse ``bn`` (a :class:`SparseBatchNormMixin`) applied to visible rows."""
    if not uses_batch_stats(bn):
        return F.batch_norm(rows, bn.running_mean, bn.running_var, bn.weight,
                            bn.bias, False, 0.0, bn.eps)
    group = sync_group(bn)
    if group is None and rows.shape[0] > 1:
        # One process: torch's own training-mode batch norm of the rows is
        # the same computation (biased variance to normalize, unbiased into
        # the running variance), in fused kernels.
        running_mean = running_var = None
        factor = 0.0
        if bn.training and bn.track_running_stats:
            bn.num_batches_tracked.add_(1)
            factor = (1.0 / float(bn.num_batches_tracked) if bn.momentum is None
                      else bn.momentum)
            running_mean, running_var = bn.running_mean, bn.running_var
        return F.batch_norm(rows, running_mean, running_var, bn.weight, bn.bias,
                            True, factor, bn.eps)
    out, mean, var, total = _RowsBatchNorm.apply(
        rows, bn.weight, bn.bias, bn.eps, group)
    if bn.training and bn.track_running_stats:
        update_running_stats(bn, mean, var, total)
    return out


def visible_rows_batch_norm(bn, x, index):
    """Training-mode sparse ``bn`` of channels_last ``x`` over the rows ``index``.

    The fast path of sparse BN: the visible positions are gathered once as
    (n, C) rows, normalized as rows (:func:`rows_batch_norm`; only the rows are
    kept for the backward, 40% of the map at the default mask ratio) and
    scattered back into zeros. A map scattered from known rows (a ResNet
    stage's output) hands over those rows.
    """
    return scatter_rows(rows_batch_norm(bn, rows_of(x, index)), index,
                        x.shape)
