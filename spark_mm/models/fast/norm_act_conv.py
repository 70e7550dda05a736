"""Fast path: the decoder's ``conv(relu6(batch_norm(x)))`` (and
``conv(batch_norm(x))`` before its last 1x1 conv) keeping only ``x``.

In the plain modules autograd keeps three maps of a block for this part: the
norm's input ``x``, and the activation ``a = relu6(bn(x))`` (kept by the
ReLU6 and by the conv for its weight gradient). ``a`` is a cheap
elementwise function of ``x`` and the batch statistics, so this function keeps
``x`` only and recomputes ``a`` in the backward, bit for bit (the same native
batch-norm kernel on the same input, the statistics computed again). In
SparK's decoder that is one full-size map per block less, plus the last
block's output before the prediction conv: the largest maps of the step (the
224 px block alone holds 98 MiB of ``a`` at batch 16 and width 512).

The backward also takes the activation's gradient in one kernel
(``hardtanh_backward`` on the output: the gradient passes where
``0 < a < 6``, i.e. where ``0 < bn(x) < 6``).

Covers a training-mode ``BatchNorm2d`` / single-process ``SyncBatchNorm``
(the statistics of this process's batch); anything else (eval mode, SyncBN
across ranks, other norms, timm's norm-act layers) takes the plain modules.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..sparse.bn_statistics import has_post_norm, sync_group
from .conv_dtype import cast_optional, conv_compute_dtype


def keeps_only_norm_input(norm: nn.Module, conv: nn.Module,
                          x: torch.Tensor) -> bool:
    """Whether :func:`batch_norm_relu6_conv` (and :func:`batch_norm_conv`)
    applies to ``norm`` and ``conv`` on ``x`` (otherwise run the modules)."""
    return (torch.is_grad_enabled() and x.requires_grad
            and type(norm) in (nn.BatchNorm2d, nn.SyncBatchNorm)
            and norm.training and not has_post_norm(norm)
            and sync_group(norm) is None
            and type(conv) is nn.Conv2d and conv.padding_mode == 'zeros'
            and x.dim() == 4)


def _momentum_factor(norm) -> float:
    """``norm``'s running-average factor for this step, counting the batch
    as ``_BatchNorm.forward`` does (momentum None: cumulative average)."""
    if not norm.track_running_stats:
        return 0.0
    norm.num_batches_tracked.add_(1)
    if norm.momentum is None:
        return 1.0 / float(norm.num_batches_tracked)
    return norm.momentum


def _activation(x, weight, bias, running_mean, running_var, momentum, eps,
                relu6):
    """``relu6(batch_norm(x))`` (``batch_norm(x)``) with the batch
    statistics; also returns the saved mean and inverse std of torch's kernel."""
    out, mean, invstd = torch.native_batch_norm(
        x, weight, bias, running_mean, running_var, True, momentum, eps)
    return (out.clamp_(0.0, 6.0) if relu6 else out), mean, invstd


class _BatchNormActConv(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, norm_weight, norm_bias, conv_weight, conv_bias, norm,
                conv, conv_dtype, relu6):
        momentum = _momentum_factor(norm)
        running = ((norm.running_mean, norm.running_var)
                   if norm.track_running_stats else (None, None))
        with torch.autocast(x.device.type, enabled=False):
            a, _, _ = _activation(x, norm_weight, norm_bias, *running,
                                  momentum, norm.eps, relu6)
            out = F.conv2d(a.to(conv_dtype), conv_weight.to(conv_dtype),
                           cast_optional(conv_bias, conv_dtype), conv.stride,
                           conv.padding, conv.dilation, conv.groups)
        ctx.save_for_backward(x, norm_weight, norm_bias, conv_weight)
        ctx.settings = (conv.stride, conv.padding, conv.dilation, conv.groups)
        ctx.eps = norm.eps
        ctx.conv_dtype = conv_dtype
        ctx.has_conv_bias = conv_bias is not None
        ctx.relu6 = relu6
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, norm_weight, norm_bias, conv_weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.settings
        needs = ctx.needs_input_grad
        with torch.autocast(x.device.type, enabled=False):
            a, mean, invstd = _activation(x, norm_weight, norm_bias, None, None,
                                          0.0, ctx.eps, ctx.relu6)
            grad_a, grad_conv_w, grad_conv_b = torch.ops.aten.convolution_backward(
                grad_out.to(ctx.conv_dtype), a.to(ctx.conv_dtype),
                conv_weight.to(ctx.conv_dtype),
                [conv_weight.shape[0]] if ctx.has_conv_bias else None,
                stride, padding, dilation, False, [0, 0], groups,
                [True, needs[3], needs[4] and ctx.has_conv_bias])
            grad_pre = grad_a.to(a.dtype)
            if ctx.relu6:  # in place: one map less at the decoder's peak
                torch.ops.aten.hardtanh_backward.grad_input(
                    grad_pre, a, 0.0, 6.0, grad_input=grad_pre)
            del a, grad_a
            grad_x, grad_norm_w, grad_norm_b = torch.ops.aten.native_batch_norm_backward(
                grad_pre, x, norm_weight, None, None, mean, invstd, True, ctx.eps,
                [needs[0], needs[1] and norm_weight is not None,
                 needs[2] and norm_bias is not None])
        return (grad_x, grad_norm_w, grad_norm_b,
                cast_optional(grad_conv_w, conv_weight.dtype),
                grad_conv_b if ctx.has_conv_bias else None,
                None, None, None, None)


def batch_norm_relu6_conv(x: torch.Tensor, norm: nn.Module,
                          conv: nn.Conv2d) -> torch.Tensor:
    """``conv(relu6(norm(x)))`` for a training-mode batch norm (see
    :func:`keeps_only_norm_input`): the same values, gradients and running
    statistics as the modules, keeping only ``x`` for the backward."""
    return _BatchNormActConv.apply(x, norm.weight, norm.bias, conv.weight,
                                   conv.bias, norm, conv, conv_compute_dtype(x, conv.weight),
                                   True)


def batch_norm_conv(x: torch.Tensor, norm: nn.Module,
                    conv: nn.Conv2d) -> torch.Tensor:
    """``conv(norm(x))``, the same way (no activation between)."""
    return _BatchNormActConv.apply(x, norm.weight, norm.bias, conv.weight,
                                   conv.bias, norm, conv, conv_compute_dtype(x, conv.weight),
                                   False)
