"""Fast path: visible positions of channels_last maps as (n, C) rows.

A channels_last (B, C, H, W) map is a (B * H * W, C) matrix; its visible
positions are a subset of the rows. Gathering them once lets layers that act
per position (batch norm here, ConvNeXt's pointwise MLP in
:mod:`.pointwise_block`) compute and keep 40% of the map at the default mask
ratio. Results equal the plain definitions in :mod:`spark_mm.models.sparse`.
"""
import torch
import torch.nn.functional as F

from ..sparse.bn_statistics import (batch_norm_backward, combine_moments,
                                    row_moments, update_running_stats)


def rows_layout(x) -> bool:
    """True when ``x`` (B, C, H, W) is laid out as (B * H * W, C) rows."""
    return x.is_contiguous(memory_format=torch.channels_last)


def rows_view(x):
    """The (B * H * W, C) view of a channels_last ``x`` (no copy)."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def scatter_rows(rows, index, shape):
    """A channels_last (B, C, H, W) ``shape`` map: ``rows`` at ``index``, zero elsewhere."""
    out = torch.empty(shape, dtype=rows.dtype, device=rows.device,
                      memory_format=torch.channels_last).zero_()  # not a view
    rows_view(out).index_copy_(0, index, rows)
    return out


def visible_rows_batch_norm(bn, x, index, group=None):
    """Training-mode batch norm of channels_last ``x`` over the rows ``index``.

    The fast path of sparse BN: the visible positions are gathered once as
    (n, C) rows; statistics, normalization and the backward run on those rows,
    and only they are kept for the backward (40% of the map at the default
    mask ratio). The output is zero at the other positions.
    """
    out, mean, var, total = _VisibleRowsBatchNorm.apply(
        x, index, bn.weight, bn.bias, bn.eps, group)
    if bn.training and bn.track_running_stats:
        update_running_stats(bn, mean, var, total)
    return out


class _VisibleRowsBatchNorm(torch.autograd.Function):
    """Batch norm over gathered visible rows; see :func:`visible_rows_batch_norm`."""

    @staticmethod
    def forward(ctx, x, index, weight, bias, eps, group):
        with torch.autocast(x.device.type, enabled=False):
            rows = rows_view(x).index_select(0, index)
            mean, var, total = combine_moments(*row_moments(rows), group)
            out_rows = F.batch_norm(rows, mean, var, weight, bias, False, 0.0, eps)
            out = scatter_rows(out_rows, index, x.shape)
        ctx.save_for_backward(rows, index, weight, mean, var, total)
        ctx.eps, ctx.group = eps, group
        ctx.mark_non_differentiable(mean, var, total)
        return out, mean, var, total

    @staticmethod
    def backward(ctx, grad_out, *_):
        rows, index, weight, mean, var, total = ctx.saved_tensors
        with torch.autocast(grad_out.device.type, enabled=False):
            grad_out = grad_out.contiguous(memory_format=torch.channels_last)
            grad_rows = rows_view(grad_out).index_select(0, index)
            grad_x_rows, grad_weight, grad_bias = batch_norm_backward(
                grad_rows, rows, None, weight, mean, var, total, ctx.eps, ctx.group)
            grad_x = scatter_rows(grad_x_rows, index, grad_out.shape)
        needs = ctx.needs_input_grad
        return (grad_x, None, grad_weight if needs[2] else None,
                grad_bias if needs[3] else None, None, None)
