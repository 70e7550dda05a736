"""Batch norm with statistics over the visible positions only.

Sparse BN as SparK defines it: gather the visible positions of a (B, C, H, W)
map as (n, C) rows, batch-normalize the rows (torch's native training-mode
batch norm), scatter them back into zeros. For SyncBN the statistics are those
of the visible rows of every rank, combined exactly
(:func:`~.bn_statistics.combine_moments`), so it runs on any backend (gloo
included) and falls back to local statistics in a single process.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .bn_statistics import (batch_norm_backward, combine_moments, post_norm,
                            row_moments, sync_group, update_running_stats,
                            uses_batch_stats)
from .remask import SparseMixin


class SparseBatchNormMixin(SparseMixin):
    """What ``BatchNorm2d`` / ``SyncBatchNorm`` become in a sparse encoder.

    timm's ``BatchNormAct2d`` family keeps its dropout and activation, applied
    to the normalized rows (they act on each position alone).
    """

    def forward(self, x):
        if x.dim() != 4:
            raise RuntimeError(f'{type(self).__name__} expects (B, C, H, W) '
                               f'input, got {tuple(x.shape)}')
        if not self.sparse_active:
            return self._dense_forward(x)
        index = self.sparse_context.visible_index(*x.shape[-2:])
        rows = x.permute(0, 2, 3, 1)[index]
        rows = post_norm(self, rows_batch_norm(self, rows))
        return scatter_into_zeros(rows, index, x)

    def _dense_forward(self, x):
        if sync_group(self) is not None:
            return post_norm(self, map_batch_norm(self, x))
        if isinstance(self, nn.SyncBatchNorm):
            # What SyncBN computes in a single process, without its refusal
            # to run on CPU.
            return post_norm(self, nn.BatchNorm2d.forward(self, x))
        return super().forward(x)


def scatter_into_zeros(rows, index, like):
    """A map shaped and laid out as ``like``: ``rows`` (n, C) at the
    (batch, row, column) positions ``index``, zero elsewhere."""
    zeros = torch.zeros_like(like, dtype=rows.dtype)
    return zeros.permute(0, 2, 3, 1).index_put(index, rows).permute(0, 3, 1, 2)


def map_batch_norm(bn, x):
    """``bn`` over every position of ``x`` (SyncBN: of every rank's ``x``)."""
    batch, channels, height, width = x.shape
    rows = x.permute(0, 2, 3, 1).reshape(-1, channels)
    out = rows_batch_norm(bn, rows)
    return out.view(batch, height, width, channels).permute(0, 3, 1, 2)


def rows_batch_norm(bn, rows):
    """Batch norm ``bn`` of (n, C) ``rows``: the positions are the rows.

    Training: statistics of the rows (SyncBN: of all ranks' rows) normalize
    them, and update the running statistics as torch does; eval: the running
    statistics.
    """
    if not uses_batch_stats(bn):
        return F.batch_norm(rows, bn.running_mean, bn.running_var, bn.weight,
                            bn.bias, False, 0.0, bn.eps)
    group = sync_group(bn)
    if group is None and rows.shape[0] > 1:
        # One process: torch's own training-mode batch norm of the rows
        # (biased variance to normalize, unbiased into the running variance).
        running_mean = running_var = None
        factor = 0.0
        if bn.training and bn.track_running_stats:
            bn.num_batches_tracked.add_(1)
            factor = (1.0 / float(bn.num_batches_tracked) if bn.momentum is None
                      else bn.momentum)
            running_mean, running_var = bn.running_mean, bn.running_var
        return F.batch_norm(rows, running_mean, running_var, bn.weight, bn.bias,
                            True, factor, bn.eps)
    # Statistics over several ranks (or of at most one row, which torch's
    # kernel refuses): combined moments, with the matching backward.
    out, mean, var, total = _SyncedRowsBatchNorm.apply(
        rows, bn.weight, bn.bias, bn.eps, group)
    if bn.training and bn.track_running_stats:
        update_running_stats(bn, mean, var, total)
    return out


class _SyncedRowsBatchNorm(torch.autograd.Function):
    """Training-mode batch norm of (n, C) ``rows`` with the statistics of all
    ranks of ``group`` (None: this process); the backward all-reduces the
    gradient sums the statistics need."""

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
                grad_out.contiguous(), rows, weight, mean, var, total,
                ctx.eps, ctx.group)
        needs = ctx.needs_input_grad
        return (grad_x, grad_weight if needs[1] else None,
                grad_bias if needs[2] else None, None, None)
