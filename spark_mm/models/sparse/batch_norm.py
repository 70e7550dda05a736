"""Batch norm with statistics over the visible positions only.

:class:`SparseBatchNormMixin` is what ``BatchNorm2d`` / ``SyncBatchNorm``
become in a sparse encoder; :func:`masked_batch_norm` is the plain definition
on full NCHW maps (masked positions ignored, output zero there). The fast
path for channels_last maps, which keeps only the visible rows, lives in
:mod:`spark_mm.models.fast.visible_rows`. Statistics of several ranks are
combined exactly (:func:`~.bn_statistics.combine_moments`), so SyncBN runs on any backend.
"""
import torch
import torch.nn.functional as F

from ..fast.visible_rows import rows_layout, visible_rows_batch_norm
from .bn_statistics import (batch_norm_backward, combine_moments,
                            has_post_norm, map_moments, memory_format,
                            post_norm, row_moments, sync_group,
                            update_running_stats, uses_batch_stats)
from .remask import SparseMixin


class SparseBatchNormMixin(SparseMixin):
    """Batch norm whose batch statistics cover the visible positions only.

    For ``SyncBatchNorm`` the sums are all-reduced over the process group
    before dividing, so every rank uses the statistics of the visible positions
    of the whole global batch (ranks hold different numbers of them). It works
    with any backend (gloo included) and falls back to local statistics in a
    single process. timm's ``BatchNormAct2d`` keeps its dropout and activation.
    """

    def forward(self, x):
        if x.dim() != 4:
            raise RuntimeError(f'{type(self).__name__} expects (B, C, H, W) '
                               f'input, got {tuple(x.shape)}')
        group = sync_group(self)
        if self.sparse_active and rows_layout(x) and uses_batch_stats(self):
            out = visible_rows_batch_norm(  # SyncBN: over ``group`` too
                self, x, self.sparse_context.visible_rows(*x.shape[-2:]))
            if not has_post_norm(self):
                return out  # zero at masked positions
            return post_norm(self, out) * self.sparse_context.mask_like(out)
        if self.sparse_active:
            mask = self.sparse_context.mask_like(x)
            index = self.sparse_context.visible_index(*x.shape[-2:])
        elif group is not None:
            mask = index = None
        else:
            return self._dense_forward(x)
        out = masked_batch_norm(self, x, mask, index, group)
        if not has_post_norm(self):
            return out  # masked already
        out = post_norm(self, out)
        return out * mask if mask is not None else out

    def _dense_forward(self, x):
        if isinstance(self, torch.nn.SyncBatchNorm):
            # Plain batch norm: what SyncBN computes in a single process, but
            # without SyncBN's refusal to run on CPU.
            out = torch.nn.BatchNorm2d.forward(self, x)
            return post_norm(self, out)
        return super().forward(x)


def masked_batch_norm(bn, x, mask, index, group=None):
    """Batch norm of NCHW ``x`` with statistics over its visible positions.

    ``mask`` (B, 1, H, W) 0/1 and ``index`` its (batch, row, column) visible
    positions, or both None (all positions); ``group`` a process group to
    combine the statistics over. The output is zero where ``mask`` is 0.
    """
    if not uses_batch_stats(bn):
        out = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight,
                           bn.bias, False, 0.0, bn.eps)
        return out * mask if mask is not None else out
    out, mean, var, total = _MaskedBatchNorm.apply(
        x, mask, index, bn.weight, bn.bias, bn.eps, group)
    if bn.training and bn.track_running_stats:
        update_running_stats(bn, mean, var, total)
    return out


class _MaskedBatchNorm(torch.autograd.Function):
    """Batch norm over visible positions of a full NCHW map, fused backward.

    Used for NCHW maps (channels_last ones take the gathered-rows path).
    Autograd through masked reductions would keep about ten full-size tensors
    per layer; this keeps one (the masked input) and calls torch's native
    kernels. The statistics are those of the visible positions gathered as
    rows (the masked positions of ``x`` are ignored; their gradient is zero).
    """

    @staticmethod
    def forward(ctx, x, mask, index, weight, bias, eps, group):
        with torch.autocast(x.device.type, enabled=False):
            x_visible = x * mask if mask is not None else x
            if index is not None:
                mean, var, count = row_moments(x.permute(0, 2, 3, 1)[index])
            else:
                mean, var, count = map_moments(x)
            mean, var, total = combine_moments(mean, var, count, group)
            out = F.batch_norm(x_visible, mean, var, weight, bias, False, 0.0, eps)
            if mask is not None:
                out.mul_(mask)
        ctx.save_for_backward(x_visible, mask, weight, mean, var, total)
        ctx.eps, ctx.group = eps, group
        ctx.mark_non_differentiable(mean, var, total)
        return out, mean, var, total

    @staticmethod
    def backward(ctx, grad_out, *_):
        x_visible, mask, weight, mean, var, total = ctx.saved_tensors
        with torch.autocast(grad_out.device.type, enabled=False):
            if mask is not None:
                grad_out = grad_out * mask
            grad_out = grad_out.contiguous(memory_format=memory_format(x_visible))
            grad_x, grad_weight, grad_bias = batch_norm_backward(
                grad_out, x_visible, mask, weight, mean, var, total, ctx.eps, ctx.group)
        needs = ctx.needs_input_grad
        return (grad_x, None, None, grad_weight if needs[3] else None,
                grad_bias if needs[4] else None, None, None)


