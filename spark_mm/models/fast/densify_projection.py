"""Fast path: the densify step's projection, ``conv(where(active, x, token))``,
with a backward that works on the visible rows only.

The projection's input is the encoder feature at visible positions and one
learned vector, the ``[mask]`` token, everywhere else. Its forward is an
ordinary convolution of that map. Its backward has two costly parts, the
input gradient and the weight gradient, and both split along that structure:

- the gradient of the feature is needed at the visible positions only (the
  token stands at the others): for a visible position ``q`` it sums, over the
  taps ``t``, ``W_t^T grad_out[q - t]``. Gathering the ``k*k`` output rows
  each visible row touches gives an (n, k*k*C_out) matrix ``G``, and the
  gradient is one product ``G @ W`` with ``W`` as (k*k*C_out, C_in): 40% of
  the dense multiply-adds at the default mask ratio;
- the weight gradient ``sum_p grad_out[p] (x) input[p + t]`` is ``G^T @ rows``
  over the visible positions plus ``token (x) K`` over the masked ones, where
  ``K[o, t] = sum_p grad_out[o, p] * masked[p + t]`` is the weight gradient of
  a one-channel convolution of the masked-position map (cheap);
- the token's gradient is ``sum_{o, t} W[o, :, t] K[o, t]``, the bias's the
  sum of ``grad_out``.

Only the visible rows of the feature are kept for the backward, not the
whole map the convolution read. The results equal autograd's through
``torch.where`` and the convolution (float64: to rounding).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .conv_dtype import cast_optional, conv_compute_dtype
from .row_products import MATMUL, linear_by, transposed_product_by
from .visible_rows import rows_layout, rows_view, scatter_rows_into_zeros


def projects_visible_rows(conv: nn.Module, feature: torch.Tensor) -> bool:
    """Whether :func:`densify_projection` applies (otherwise run the modules):
    a stride-1 ``k x k`` conv (k odd, 'same' zero padding) on a channels_last
    feature, when a gradient is wanted."""
    if not (torch.is_grad_enabled() and type(conv) is nn.Conv2d):
        return False
    k = conv.kernel_size[0]
    return (conv.kernel_size == (k, k) and k % 2 == 1
            and conv.stride == (1, 1) and conv.dilation == (1, 1)
            and conv.padding == (k // 2, k // 2) and conv.groups == 1
            and conv.padding_mode == 'zeros' and feature.dim() == 4
            and rows_layout(feature))


def tap_targets(index: torch.Tensor, batch: int, height: int, width: int,
                kernel: int) -> torch.Tensor:
    """(n, kernel * kernel) flat output rows that visible input row ``index[i]``
    reaches through tap ``(ky, kx)`` (row-major taps): position ``(y - ky +
    pad, x - kx + pad)``, or the extra row ``batch * height * width`` (a zero
    row) where that falls outside the map."""
    pad = kernel // 2
    plane = height * width
    b, y, x = index // plane, (index // width) % height, index % width
    offsets = torch.arange(kernel, device=index.device)
    py = y[:, None, None] - offsets[None, :, None] + pad
    px = x[:, None, None] - offsets[None, None, :] + pad
    inside = (py >= 0) & (py < height) & (px >= 0) & (px < width)
    flat = b[:, None, None] * plane + py * width + px
    return torch.where(inside, flat, batch * plane).reshape(len(index), -1)


class _DensifyProjection(torch.autograd.Function):

    @staticmethod
    def forward(ctx, feature, token, weight, bias, active, index, dtype, engine):
        kernel = weight.shape[-1]
        with torch.autocast(feature.device.type, enabled=False):
            dense = torch.where(active, feature, token.to(feature.dtype))
            out = F.conv2d(dense.to(dtype), weight.to(dtype), cast_optional(bias, dtype),
                           padding=kernel // 2)
        rows = rows_view(feature).index_select(0, index)
        ctx.save_for_backward(rows, token, weight, active, index)
        ctx.feature_shape, ctx.feature_dtype = feature.shape, feature.dtype
        ctx.dtype, ctx.has_bias, ctx.engine = dtype, bias is not None, engine
        return out

    @staticmethod
    def backward(ctx, grad_out):
        rows, token, weight, active, index = ctx.saved_tensors
        dtype = ctx.dtype
        cout, cin, kernel, _ = weight.shape
        batch, _, height, width = ctx.feature_shape
        with torch.autocast(grad_out.device.type, enabled=False):
            grad = grad_out.to(dtype).contiguous(memory_format=torch.channels_last)
            grad_rows = rows_view(grad)
            w = weight.to(dtype)
            # G[i, (t, o)] = grad_out[o] at the output row visible row i reaches by tap t
            padded = torch.cat([grad_rows, grad_rows.new_zeros(1, cout)])
            targets = tap_targets(index, batch, height, width, kernel)
            gathered = padded.index_select(0, targets.flatten()).view(len(index), -1)
            # the weight as (C_in, (tap, C_out)), the columns of ``gathered``
            w_taps = w.permute(1, 2, 3, 0).reshape(cin, kernel * kernel * cout)
            grad_visible = linear_by(ctx.engine, gathered, w_taps)
            tap_grads = transposed_product_by(ctx.engine, gathered, rows.to(dtype))
            grad_feature = scatter_rows_into_zeros(
                grad_visible.to(ctx.feature_dtype), index, ctx.feature_shape)
            # K[o, t]: grad_out summed over the outputs that masked positions reach by t
            masked = (~active).to(dtype)
            masked_taps = torch.ops.aten.convolution_backward(
                grad, masked, w.new_zeros(cout, 1, kernel, kernel), None, [1, 1],
                [kernel // 2] * 2, [1, 1], False, [0, 0], 1, [False, True, False])[1]
            token_c = token.to(dtype).view(1, cin, 1, 1)
            grad_weight = tap_grads.view(
                kernel, kernel, cout, cin).permute(2, 3, 0, 1) + masked_taps * token_c
            grad_token = (w * masked_taps).sum((0, 2, 3)).view_as(token)
            grad_bias = grad_rows.sum(0) if ctx.has_bias else None
        return (grad_feature, grad_token.to(token.dtype),
                grad_weight.to(weight.dtype),
                None if grad_bias is None else grad_bias.to(weight.dtype),
                None, None, None, None)


def densify_projection(feature: torch.Tensor, active: torch.Tensor,
                       token: torch.Tensor, conv: nn.Conv2d,
                       index: torch.Tensor, engine: str = MATMUL) -> torch.Tensor:
    """``conv(torch.where(active, feature, token))`` for a channels_last
    ``feature`` (see :func:`projects_visible_rows`); ``index``: the flat
    visible rows of ``active`` (B, 1, H, W) in (B * H * W) order.

    Under autocast the conv runs in the autocast dtype, as ``conv`` would.
    ``engine``: how the backward's two matrix products run
    (:mod:`.row_products`).
    """
    return _DensifyProjection.apply(feature, token, conv.weight, conv.bias,
                                    active, index,
                                    conv_compute_dtype(feature, conv.weight), engine)
