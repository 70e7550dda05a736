"""Pooling over space that leaves masked positions out.

A sparse map's masked positions do not exist, so a mean over space divides
by the number of *visible* positions of each sample, a max ignores masked
positions, and adaptive pooling to k x k averages the visible positions of
each bin (0 for a bin with none). With every position visible these are the
dense operations. ``mask`` below is (B, 1, H, W), 1 at visible positions, in
``x``'s dtype (:meth:`~.context.SparseContext.mask_like`).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .remask import SparseMixin


def visible_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample, per-channel mean of ``x`` (B, C, H, W) over its visible
    positions, as (B, C, 1, 1)."""
    count = mask.sum((2, 3), keepdim=True).clamp_min(1)
    return (x * mask).sum((2, 3), keepdim=True) / count


def visible_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample, per-channel max of ``x`` over its visible positions, (B, C, 1, 1)."""
    return x.masked_fill(mask == 0, float('-inf')).amax((2, 3), keepdim=True)


def adaptive_visible_avg_pool(x: torch.Tensor, mask: torch.Tensor,
                              output_size) -> torch.Tensor:
    """``adaptive_avg_pool2d`` with each bin's mean over its visible positions.

    Both poolings divide by the same bin area, so their ratio is the sum over
    the visible positions divided by their number.
    """
    sums = F.adaptive_avg_pool2d(x * mask, output_size)
    visible_fraction = F.adaptive_avg_pool2d(mask, output_size)
    safe = visible_fraction.clamp_min(torch.finfo(x.dtype).tiny)
    return torch.where(visible_fraction > 0, sums / safe, torch.zeros_like(sums))


def adaptive_visible_max_pool(x: torch.Tensor, mask: torch.Tensor,
                              output_size) -> torch.Tensor:
    """``adaptive_max_pool2d`` over each bin's visible positions, 0 for empty bins."""
    hidden = x.masked_fill(mask == 0, float('-inf'))
    out = F.adaptive_max_pool2d(hidden, output_size)
    has_visible = F.adaptive_max_pool2d(mask, output_size) > 0
    return torch.where(has_visible, out, torch.zeros_like(out))


class SparseAdaptivePoolMixin(SparseMixin):
    """``nn.AdaptiveAvgPool2d`` / ``nn.AdaptiveMaxPool2d`` over visible positions."""

    def forward(self, x):
        if not self.sparse_active:
            return super().forward(x)
        if x.dim() != 4:
            raise RuntimeError(f'{type(self).__name__} expects (B, C, H, W) '
                               f'input, got {tuple(x.shape)}')
        mask = self.sparse_context.mask_like(x)
        if isinstance(self, nn.AdaptiveMaxPool2d):
            return adaptive_visible_max_pool(x, mask, self.output_size)
        return adaptive_visible_avg_pool(x, mask, self.output_size)
