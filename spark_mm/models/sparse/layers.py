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
- ConvNeXt blocks (mmpretrain's): the same results, but the norm and the
  pointwise MLP run on the visible positions only (gathered once per block).
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
        mask = self.sparse_context.mask_like(out, self._output_is_channels_last(args, kwargs))
        if out is x:
            return out * mask
        # In place: none of these layers keeps its output for the backward,
        # and a fresh full-size map per layer costs allocation and page faults.
        return out.mul_(mask)

    def _output_is_channels_last(self, args, kwargs) -> bool:
        data_format = kwargs.get('data_format', args[0] if args else None)
        if data_format is None:
            return self.sparse_channels_last
        return data_format in ('channel_last', 'channels_last')


class SparsePointwiseBlockMixin(SparseMixin):
    """mmpretrain's ``ConvNeXtBlock`` with its pointwise part on visible rows.

    Depthwise conv (sparse, re-masked), then the visible positions are
    gathered into (n, C) rows once; layer norm, both pointwise ``Linear``
    layers, the activation and layer scale run on those rows only (60% less
    work at the default mask ratio) and are scattered back into zeros. This
    is what the dense block does at visible positions, and its masked
    positions are zero either way. Blocks this does not cover (1x1 conv
    pointwise layers, GRN) use the dense block with its re-masked layers.
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
        rows = self.act(F.linear(rows, fc1.weight, fc1.bias))
        rows = F.linear(rows, fc2.weight, fc2.bias)
        if self.gamma is not None:
            rows = rows * self.gamma
        out = torch.zeros_like(shortcut, dtype=rows.dtype)
        out.permute(0, 2, 3, 1).index_put_(index, rows)
        return shortcut + self.drop_path(out)


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
        if self.sparse_active and _rows_layout(x) and _uses_batch_stats(self):
            out = visible_rows_batch_norm(
                self, x, self.sparse_context.visible_rows(*x.shape[-2:]), group)
            if not self._has_post_norm():
                return out  # zero at masked positions
            return self._post_norm(out) * self.sparse_context.mask_like(out)
        if self.sparse_active:
            mask = self.sparse_context.mask_like(x)
            index = self.sparse_context.visible_index(*x.shape[-2:])
        elif group is not None:
            mask = index = None
        else:
            return self._dense_forward(x)
        out = masked_batch_norm(self, x, mask, index, group)
        if not self._has_post_norm():
            return out  # masked already
        out = self._post_norm(out)
        return out * mask if mask is not None else out

    def _dense_forward(self, x):
        if isinstance(self, torch.nn.SyncBatchNorm):
            # Plain batch norm: what SyncBN computes in a single process, but
            # without SyncBN's refusal to run on CPU.
            out = torch.nn.BatchNorm2d.forward(self, x)
            return self._post_norm(out)
        return super().forward(x)

    def _has_post_norm(self) -> bool:
        return hasattr(self, 'act') and hasattr(self, 'drop')  # timm BatchNormAct2d

    def _post_norm(self, out):
        if self._has_post_norm():
            out = self.act(self.drop(out))
        return out

    def _sync_group(self):
        if not isinstance(self, torch.nn.SyncBatchNorm) or not self.training:
            return None
        if not (dist.is_available() and dist.is_initialized()):
            return None
        group = self.process_group or dist.group.WORLD
        return group if dist.get_world_size(group) > 1 else None


def _uses_batch_stats(bn) -> bool:
    return bn.training or not bn.track_running_stats


def masked_batch_norm(bn, x, mask, index, group=None):
    """Batch norm of NCHW ``x`` with statistics over its visible positions.

    ``mask`` (B, 1, H, W) 0/1 and ``index`` its (batch, row, column) visible
    positions, or both None (all positions); ``group`` a process group to
    combine the statistics over. The output is zero where ``mask`` is 0.
    """
    if not _uses_batch_stats(bn):
        out = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight,
                           bn.bias, False, 0.0, bn.eps)
        return out * mask if mask is not None else out
    out, mean, var, total = _MaskedBatchNorm.apply(
        x, mask, index, bn.weight, bn.bias, bn.eps, group)
    if bn.training and bn.track_running_stats:
        _update_running_stats(bn, mean, var, total)
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
                mean, var, count = _row_moments(x.permute(0, 2, 3, 1)[index])
            else:
                mean, var, count = _map_moments(x)
            mean, var, total = _combine_moments(mean, var, count, group)
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
            grad_out = grad_out.contiguous(memory_format=_memory_format(x_visible))
            grad_x, grad_weight, grad_bias = _batch_norm_backward(
                grad_out, x_visible, mask, weight, mean, var, total, ctx.eps, ctx.group)
        needs = ctx.needs_input_grad
        return (grad_x, None, None, grad_weight if needs[3] else None,
                grad_bias if needs[4] else None, None, None)


def _rows_layout(x) -> bool:
    """True when ``x`` (B, C, H, W) is laid out as (B * H * W, C) rows."""
    return x.is_contiguous(memory_format=torch.channels_last)


def _rows_view(x):
    """The (B * H * W, C) view of a channels_last ``x`` (no copy)."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def _scatter_rows(rows, index, shape):
    """A channels_last (B, C, H, W) ``shape`` map: ``rows`` at ``index``, zero elsewhere."""
    out = torch.empty(shape, dtype=rows.dtype, device=rows.device,
                      memory_format=torch.channels_last).zero_()  # not a view
    _rows_view(out).index_copy_(0, index, rows)
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
        _update_running_stats(bn, mean, var, total)
    return out


class _VisibleRowsBatchNorm(torch.autograd.Function):
    """Batch norm over gathered visible rows; see :func:`visible_rows_batch_norm`."""

    @staticmethod
    def forward(ctx, x, index, weight, bias, eps, group):
        with torch.autocast(x.device.type, enabled=False):
            rows = _rows_view(x).index_select(0, index)
            mean, var, total = _combine_moments(*_row_moments(rows), group)
            out_rows = F.batch_norm(rows, mean, var, weight, bias, False, 0.0, eps)
            out = _scatter_rows(out_rows, index, x.shape)
        ctx.save_for_backward(rows, index, weight, mean, var, total)
        ctx.eps, ctx.group = eps, group
        ctx.mark_non_differentiable(mean, var, total)
        return out, mean, var, total

    @staticmethod
    def backward(ctx, grad_out, *_):
        rows, index, weight, mean, var, total = ctx.saved_tensors
        with torch.autocast(grad_out.device.type, enabled=False):
            grad_out = grad_out.contiguous(memory_format=torch.channels_last)
            grad_rows = _rows_view(grad_out).index_select(0, index)
            grad_x_rows, grad_weight, grad_bias = _batch_norm_backward(
                grad_rows, rows, None, weight, mean, var, total, ctx.eps, ctx.group)
            grad_x = _scatter_rows(grad_x_rows, index, grad_out.shape)
        needs = ctx.needs_input_grad
        return (grad_x, None, grad_weight if needs[2] else None,
                grad_bias if needs[3] else None, None, None)


# ---- statistics --------------------------------------------------------------
# Statistics are kept in promote_types(dtype, float32): float32 for fp32, bf16
# and fp16 maps, float64 for float64 ones (so a float64 model is float64
# throughout and can be checked against a reference at 1e-12).
def _stat_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def _row_moments(rows):
    """Per-channel mean, biased variance and count of (n, C) ``rows``."""
    count = torch.tensor(rows.shape[0], dtype=_stat_dtype(rows.dtype),
                         device=rows.device)
    if rows.shape[0] == 0:  # a rank may hold no visible position of a map
        zeros = rows.new_zeros(rows.shape[1], dtype=count.dtype)
        return zeros, zeros.clone(), count
    var, mean = torch.var_mean(rows.to(count.dtype), dim=0, correction=0)
    return mean, var, count


def _map_moments(x):
    """Per-channel mean, biased variance and count over all positions of ``x``."""
    count = torch.tensor(x.numel() // x.shape[1], dtype=_stat_dtype(x.dtype),
                         device=x.device)
    var, mean = torch.var_mean(x.to(count.dtype), dim=(0, 2, 3), correction=0)
    return mean, var, count


def _combine_moments(mean, var, count, group=None):
    """Mean, biased variance and count over the positions of all ranks.

    Each rank contributes (count, mean, variance) of its own positions; they
    are gathered and combined by the pairwise formula (Chan et al.):
    ``var = sum_r n_r (var_r + (mean_r - mean)^2) / n``, a sum of non-negative
    terms, instead of ``E[x^2] - mean^2``, which cancels catastrophically in
    float32 when the mean is large against the spread.
    """
    if group is None:
        return mean, var, count
    channels = mean.shape[0]
    local = torch.cat([count.reshape(1), mean, var])
    gathered = [torch.empty_like(local) for _ in range(dist.get_world_size(group))]
    dist.all_gather(gathered, local, group=group)
    stacked = torch.stack(gathered)
    counts, means, variances = stacked[:, :1], stacked[:, 1:1 + channels], stacked[:, 1 + channels:]
    total = counts.sum()
    mean = (counts * means).sum(0) / total
    var = (counts * (variances + (means - mean).square())).sum(0) / total
    return mean, var, total


def _batch_norm_backward(grad_out, x, mask, weight, mean, var, total, eps, group):
    """Training-mode batch-norm backward with statistics over ``total`` positions.

    Eval-mode native backward (dx = w * invstd * dy and the channel sums
    sum(dy), sum(dy * x_hat) in one kernel), the sums all-reduced over
    ``group``, then the terms through the mean and variance:
    -w * invstd / n * (sum(dy) + x_hat * sum(dy * x_hat)), where ``mask`` is 1
    (everywhere when None). ``grad_out`` must be zero where ``mask`` is 0.
    """
    grad_x, grad_weight, grad_bias = torch.ops.aten.native_batch_norm_backward(
        grad_out, x, weight, mean, var, None, None, False, eps, [True, True, True])
    sums = torch.cat([grad_bias, grad_weight]).to(var.dtype)
    if group is not None:
        dist.all_reduce(sums, group=group)
    channels = x.shape[1]
    sum_dy, sum_dy_xhat = sums[:channels], sums[channels:]
    invstd = torch.rsqrt(var + eps)
    scale = invstd / total if weight is None else weight * invstd / total
    shape = (1, -1) + (1,) * (x.dim() - 2)
    coef_x = (scale * invstd * sum_dy_xhat).to(grad_x.dtype).view(shape)
    coef_1 = (scale * (sum_dy - invstd * mean * sum_dy_xhat)).to(grad_x.dtype).view(shape)
    grad_x.addcmul_(x, coef_x, value=-1)
    if mask is not None:
        grad_x.addcmul_(mask, coef_1, value=-1)
    else:
        grad_x.sub_(coef_1)
    return grad_x, grad_weight, grad_bias


def _memory_format(x):
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


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
