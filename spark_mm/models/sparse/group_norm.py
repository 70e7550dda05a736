"""GroupNorm and InstanceNorm with statistics over visible positions only.

Each sample (and group of channels) is normalized with the mean and biased
variance of its visible positions; masked positions stay exactly zero. This
is what the dense norm computes when every position is visible. GroupNorm
with one group is LayerNorm over channels and space (timm's ``GroupNorm1``).
"""
import torch
import torch.nn as nn

from .bn_statistics import has_post_norm, post_norm
from .remask import SparseMixin


def masked_group_norm(x, mask, num_groups, weight=None, bias=None, eps=1e-5):
    """Group norm of ``x`` (B, C, H, W) over the positions where ``mask``
    (B, 1, H, W, 0/1) is 1; zero elsewhere.

    Returns the output, and the per-(sample, group) mean and biased variance
    as (B, num_groups).
    """
    batch, channels, height, width = x.shape
    grouped = x.reshape(batch, num_groups, channels // num_groups, height, width)
    mask_5d = mask.reshape(batch, 1, 1, height, width)
    count = mask_5d.sum((2, 3, 4), keepdim=True).clamp_min(1) * (channels // num_groups)
    mean = (grouped * mask_5d).sum((2, 3, 4), keepdim=True) / count
    centered = (grouped - mean) * mask_5d
    var = centered.square().sum((2, 3, 4), keepdim=True) / count
    out = (centered * torch.rsqrt(var + eps)).reshape(batch, channels, height, width)
    if weight is not None:
        out = out * weight.view(1, -1, 1, 1)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    out = (out * mask).contiguous(memory_format=memory_format(x))
    return out, mean.reshape(batch, num_groups), var.reshape(batch, num_groups)


def memory_format(x):
    """The layout of a 4-d ``x``: channels_last or contiguous (NCHW)."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _check_4d(module, x):
    if x.dim() != 4:
        raise RuntimeError(f'{type(module).__name__} expects (B, C, H, W) '
                           f'input, got {tuple(x.shape)}')


class SparseGroupNormMixin(SparseMixin):
    """``nn.GroupNorm`` (timm's ``GroupNorm``, ``GroupNorm1``, ``GroupNormAct``
    included: their activation follows the norm) over visible positions."""

    def forward(self, x):
        if not self.sparse_active:
            return super().forward(x)
        _check_4d(self, x)
        mask = self.sparse_context.mask_like(x)
        out, _, _ = masked_group_norm(x, mask, self.num_groups, self.weight,
                                      self.bias, self.eps)
        if not has_post_norm(self):
            return out
        return post_norm(self, out) * mask


class SparseInstanceNormMixin(SparseMixin):
    """``nn.InstanceNorm2d`` over visible positions; running statistics (when
    tracked) are updated from the visible ones, as torch does from all."""

    def forward(self, x):
        if not self.sparse_active:
            return super().forward(x)
        _check_4d(self, x)
        mask = self.sparse_context.mask_like(x)
        if not (self.training or not self.track_running_stats):
            out = nn.functional.instance_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias,
                False, 0.0, self.eps)
            return out * mask
        out, mean, var = masked_group_norm(x, mask, x.shape[1], self.weight,
                                           self.bias, self.eps)
        if self.training and self.track_running_stats:
            self._update_running_stats(mean, var, mask)
        return out

    @torch.no_grad()
    def _update_running_stats(self, mean_bc, var_bc, mask):
        count = mask.sum((1, 2, 3)).view(-1, 1)
        unbiased_var = var_bc * count / (count - 1).clamp_min(1)
        self.num_batches_tracked.add_(1)
        momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                    else self.momentum)
        self.running_mean.lerp_(mean_bc.mean(0).to(self.running_mean.dtype), momentum)
        self.running_var.lerp_(unbiased_var.mean(0).to(self.running_var.dtype), momentum)
