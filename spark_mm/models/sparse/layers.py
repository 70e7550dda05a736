"""Sparse behaviour for dense layers, added by subclassing them in place.

A dense module becomes sparse by swapping its class for a subclass that mixes
in one of the classes below (see :mod:`.convert`). Parameters, buffers and
their names stay those of the dense module. Every mixin reads the mask from
``self.sparse_context``; with no mask active it calls the dense forward.

Semantics (submanifold sparse operators, simulated on dense tensors):
- conv / pooling / linear / layer norm / GRN: the dense result, re-masked, so
  masked positions stay exactly zero. Their inputs are zero at masked
  positions already, so visible outputs never see masked pixels.
- batch norm (and SyncBN): statistics over visible positions only.
"""
import torch
import torch.distributed as dist
import torch.nn.functional as F

from .context import SparseContext


class SparseMixin:
    """Marks a converted module; ``sparse_context`` is set by the conversion."""

    sparse_context: SparseContext = None

    @property
    def sparse_active(self) -> bool:
        return self.sparse_context is not None and self.sparse_context.is_active


class SparseRemaskMixin(SparseMixin):
    """Dense computation, then masked positions set back to zero.

    ``sparse_channels_last`` tells the layout of the output: (B, H, W, C) for
    the pointwise ``Linear`` layers and channels-last norms of ConvNeXt-style
    blocks, (B, C, H, W) otherwise. Modules that take a ``data_format``
    argument (mmpretrain's LayerNorm2d and GRN) override it per call.
    """

    sparse_channels_last: bool = False

    def forward(self, x, *args, **kwargs):
        out = super().forward(x, *args, **kwargs)
        if not self.sparse_active:
            return out
        if out.dim() != 4:
            raise RuntimeError(
                f'sparse layer {type(self).__name__} got a {out.dim()}-d '
                'output; only 4-d feature maps can be masked')
        channels_last = self._output_is_channels_last(args, kwargs)
        return out * self.sparse_context.mask_like(out, channels_last)

    def _output_is_channels_last(self, args, kwargs) -> bool:
        data_format = kwargs.get('data_format', args[0] if args else None)
        if data_format is None:
            return self.sparse_channels_last
        return data_format in ('channel_last', 'channels_last')


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
        group = self._sync_group()
        if self.sparse_active:
            mask = self.sparse_context.mask_like(x)
            count = self.sparse_context.visible_count(*x.shape[-2:])
        elif group is not None:
            mask = None
            count = torch.tensor(x.shape[0] * x.shape[2] * x.shape[3],
                                 device=x.device)
        else:
            return self._dense_forward(x)
        out = masked_batch_norm(self, x, mask, count, group)
        out = self._post_norm(out)
        return out * mask if mask is not None else out

    def _dense_forward(self, x):
        if isinstance(self, torch.nn.SyncBatchNorm):
            # Plain batch norm: what SyncBN computes in a single process, but
            # without SyncBN's refusal to run on CPU.
            out = torch.nn.BatchNorm2d.forward(self, x)
            return self._post_norm(out)
        return super().forward(x)

    def _post_norm(self, out):
        if hasattr(self, 'act') and hasattr(self, 'drop'):  # timm BatchNormAct2d
            out = self.act(self.drop(out))
        return out

    def _sync_group(self):
        if not isinstance(self, torch.nn.SyncBatchNorm) or not self.training:
            return None
        if not (dist.is_available() and dist.is_initialized()):
            return None
        group = self.process_group or dist.group.WORLD
        return group if dist.get_world_size(group) > 1 else None


def masked_batch_norm(bn, x, mask, count, group=None):
    """Batch norm of ``x`` with statistics over positions where ``mask`` is 1.

    ``mask`` (B, 1, H, W) 0/1 or None (all positions); ``count`` the number of
    those positions on this rank; ``group`` a process group to all-reduce over.
    """
    use_batch_stats = bn.training or not bn.track_running_stats
    if not use_batch_stats:
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight,
                            bn.bias, False, 0.0, bn.eps)
    x_visible = x * mask if mask is not None else x
    sums = torch.cat([
        x_visible.sum(dim=(0, 2, 3), dtype=torch.float32),
        (x_visible * x_visible).sum(dim=(0, 2, 3), dtype=torch.float32),
        count.to(torch.float32).reshape(1),
    ])
    if group is not None:
        sums = torch.distributed.nn.functional.all_reduce(sums, group=group)
    channels = x.shape[1]
    total = sums[-1]
    mean = sums[:channels] / total
    var = (sums[channels:2 * channels] / total - mean * mean).clamp_min(0)
    if bn.training and bn.track_running_stats:
        _update_running_stats(bn, mean.detach(), var.detach(), total.detach())
    invstd = torch.rsqrt(var + bn.eps)
    scale = invstd if bn.weight is None else bn.weight * invstd
    shift = -mean * scale if bn.bias is None else bn.bias - mean * scale
    return (x * scale.to(x.dtype).view(1, -1, 1, 1)
            + shift.to(x.dtype).view(1, -1, 1, 1))


@torch.no_grad()
def _update_running_stats(bn, mean, var, total):
    bn.num_batches_tracked.add_(1)
    if bn.momentum is None:  # cumulative moving average, as in torch
        factor = 1.0 / float(bn.num_batches_tracked)
    else:
        factor = bn.momentum
    unbiased_var = var * (total / (total - 1).clamp_min(1))
    bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), factor)
    bn.running_var.lerp_(unbiased_var.to(bn.running_var.dtype), factor)
