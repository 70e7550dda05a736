"""Batch-norm statistics over a subset of positions, exact across ranks.

Used by the sparse BN (:mod:`.batch_norm`) and, through it, the CPU SyncBN
of dense models (:mod:`spark_mm.engine.cpu_sync_bn`).
"""
import torch
import torch.distributed as dist


def sync_group(bn):
    """The process group a training ``SyncBatchNorm`` combines statistics
    over, or None (plain BN, eval mode, a single process)."""
    if not isinstance(bn, torch.nn.SyncBatchNorm) or not bn.training:
        return None
    if not (dist.is_available() and dist.is_initialized()):
        return None
    group = bn.process_group or dist.group.WORLD
    return group if dist.get_world_size(group) > 1 else None


def has_post_norm(bn) -> bool:
    """timm's ``BatchNormAct2d`` family: dropout and activation after the norm."""
    return hasattr(bn, 'act') and hasattr(bn, 'drop')


def post_norm(bn, out):
    """``bn``'s dropout and activation (timm), else ``out`` unchanged."""
    return bn.act(bn.drop(out)) if has_post_norm(bn) else out


def uses_batch_stats(bn) -> bool:
    return bn.training or not bn.track_running_stats


# Statistics are kept in promote_types(dtype, float32): float32 for fp32, bf16
# and fp16 maps, float64 for float64 ones (so a float64 model is float64
# throughout and can be checked against a reference at 1e-12).
def stat_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def row_moments(rows):
    """Per-channel mean, biased variance and count of (n, C) ``rows``."""
    count = torch.tensor(rows.shape[0], dtype=stat_dtype(rows.dtype),
                         device=rows.device)
    if rows.shape[0] == 0:  # a rank may hold no visible position of a map
        zeros = rows.new_zeros(rows.shape[1], dtype=count.dtype)
        return zeros, zeros.clone(), count
    var, mean = torch.var_mean(rows.to(count.dtype), dim=0, correction=0)
    return mean, var, count


def combine_moments(mean, var, count, group=None):
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


def batch_norm_backward(grad_out, x, weight, mean, var, total, eps, group):
    """Training-mode batch-norm backward with statistics over ``total`` positions.

    Eval-mode native backward (dx = w * invstd * dy and the channel sums
    sum(dy), sum(dy * x_hat) in one kernel), the sums all-reduced over
    ``group``, then the terms through the mean and variance:
    -w * invstd / n * (sum(dy) + x_hat * sum(dy * x_hat)).
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
    grad_x.sub_(coef_1)
    return grad_x, grad_weight, grad_bias


@torch.no_grad()
def update_running_stats(bn, mean, var, total):
    bn.num_batches_tracked.add_(1)
    if bn.momentum is None:  # cumulative moving average, as in torch
        factor = 1.0 / float(bn.num_batches_tracked)
    else:
        factor = bn.momentum
    unbiased_var = var * (total / (total - 1).clamp_min(1))
    bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), factor)
    bn.running_var.lerp_(unbiased_var.to(bn.running_var.dtype), factor)
