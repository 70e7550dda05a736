"""Fast path: the decoder's x2 transposed conv and the 3x3 conv after it,
computed as one linear map with fewer multiply-adds (same parameters)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .conv_dtype import cast_optional, conv_compute_dtype


def _virtual_border(edges, up_w, up_b, conv_w):
    """What the composed map counts in excess at the outermost output rows and
    columns, from the input's edge rows and columns ``(top, bottom, left,
    right)``: the rows over the full width including the virtual columns, the
    columns over the real rows only (so the four corners count once)."""
    top, bottom, left, right = edges
    # Virtual upsampled rows -1 and 2H at columns -1 ... 2W (no padding),
    # then conv taps u = 0 and 2 along them.
    rows = torch.cat([
        F.conv2d(F.conv_transpose2d(top, up_w[:, :, :1], up_b, stride=(1, 2)),
                 conv_w[:, :, :1]),
        F.conv2d(F.conv_transpose2d(bottom, up_w[:, :, 3:], up_b, stride=(1, 2)),
                 conv_w[:, :, 2:])], 2)
    # Virtual upsampled columns -1 and 2W at the real rows only (padding).
    cols = torch.cat([
        F.conv2d(F.conv_transpose2d(left, up_w[..., :1], up_b, stride=(2, 1),
                                    padding=(1, 0)),
                 conv_w[..., :1], padding=(1, 0)),
        F.conv2d(F.conv_transpose2d(right, up_w[..., 3:], up_b, stride=(2, 1),
                                    padding=(1, 0)),
                 conv_w[..., 2:], padding=(1, 0))], 3)
    return rows, cols


def _edges(x):
    return x[:, :, :1], x[:, :, -1:], x[..., :1], x[..., -1:]


class _ComposedMinusBorder(torch.autograd.Function):
    """``conv_transpose2d(x, weight, bias, stride 2, padding 2)`` minus the
    virtual border (:func:`_virtual_border`), in ``dtype``.

    One op for autograd: the input gradient is the transposed conv's, with
    the border's (thin slabs, through autograd) added into its edge rows and
    columns in place; autograd's own slicing would build a zero map per edge
    and add the four up.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, up_w, up_b, conv_w, dtype):
        with torch.autocast(x.device.type, enabled=False):
            xc, wc = x.to(dtype), weight.to(dtype)
            y = F.conv_transpose2d(xc, wc, cast_optional(bias, dtype), stride=2, padding=2)
            rows, cols = _virtual_border(_edges(xc), up_w.to(dtype),
                                         cast_optional(up_b, dtype), conv_w.to(dtype))
            steps = (y.shape[2] - 1, y.shape[3] - 1)
            y[:, :, ::steps[0], :] -= rows
            y[:, :, :, ::steps[1]] -= cols
        ctx.save_for_backward(x, weight, up_w, up_b, conv_w)
        ctx.steps, ctx.dtype, ctx.has_bias = steps, dtype, bias is not None
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight, up_w, up_b, conv_w = ctx.saved_tensors
        dtype, steps = ctx.dtype, ctx.steps
        needs = ctx.needs_input_grad
        with torch.autocast(x.device.type, enabled=False):
            grad = grad.to(dtype)
            grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad, x.to(dtype), weight.to(dtype),
                [weight.shape[1]] if ctx.has_bias else None, [2, 2], [2, 2],
                [1, 1], True, [0, 0], 1, [True, needs[1], needs[2] and ctx.has_bias])
            with torch.enable_grad():
                edges = [e.detach().to(dtype).requires_grad_() for e in _edges(x)]
                params = [p.detach().to(dtype).requires_grad_() for p in (up_w, conv_w)]
                bias = None if up_b is None else up_b.detach().to(dtype).requires_grad_()
                rows, cols = _virtual_border(edges, params[0], bias, params[1])
                inputs = edges + params + ([] if bias is None else [bias])
                border_grads = torch.autograd.grad(
                    (rows, cols), inputs,
                    (-grad[:, :, ::steps[0], :], -grad[:, :, :, ::steps[1]]))
        top, bottom, left, right = border_grads[:4]
        grad_x[:, :, :1] += top
        grad_x[:, :, -1:] += bottom
        grad_x[..., :1] += left
        grad_x[..., -1:] += right
        grad_up_w, grad_conv_w = border_grads[4:6]
        grad_up_b = None if up_b is None else border_grads[6].to(up_b.dtype)
        return (grad_x.to(x.dtype), cast_optional(grad_w, weight.dtype),
                grad_b if ctx.has_bias else None, grad_up_w.to(up_w.dtype),
                grad_up_b, grad_conv_w.to(conv_w.dtype), None)


def composed_upsample_conv(x: torch.Tensor, up: nn.ConvTranspose2d,
                           conv: nn.Conv2d) -> torch.Tensor:
    """``conv(up(x))`` for ``up`` = ConvTranspose2d(k4, s2, p1) and ``conv`` =
    Conv2d(k3, p1, no bias), computed as one linear map with fewer MACs.

    Per dimension, transposed tap ``k`` writes input row ``i`` to upsampled
    row ``2i - 1 + k`` and conv tap ``u`` reads upsampled row ``Z + u - 1``
    into output row ``Z``, so the pair sends ``i`` to ``Z = 2i + k - u``: one
    ConvTranspose2d(k6, s2, p2) whose tap ``g = k + (2 - u)`` sums the channel
    products ``conv_w[:, :, u, v] @ up_w[:, :, k, l]`` over the taps, i.e. the
    4x4 tap blocks of the products placed at offsets ``(2 - u, 2 - v)`` of a
    6x6 grid and summed (``F.fold``); the bias becomes ``sum_uv conv_w @ b``.
    Per output pixel that is 9 instead of 4 + 9 MACs per pair of channels,
    plus ``144 * cin * cmid * cout`` MACs for the kernel (a single matmul).

    That map also counts the upsampled rows -1 and 2H (columns -1 and 2W),
    which the transposed conv would fill from input row 0 with tap ``k = 0``
    (row H-1 with ``k = 3``) plus the bias, where ``conv`` reads its zero
    padding: the outermost output rows (columns) get, through conv tap
    ``u = 0`` (``u = 2``), those virtual rows in excess. They are recomputed
    with the sequential maths on thin slabs and subtracted: the rows over the
    full width including the virtual columns, the columns over the real rows
    only, so that the four virtual corners are removed once.
    """
    up_w, up_b, conv_w = up.weight, up.bias, conv.weight
    cin, cmid = up_w.shape[:2]
    cout = conv_w.shape[0]
    with torch.autocast(x.device.type, enabled=False):
        # prod[o, (c, k, l), (2 - u, 2 - v)] = sum_m conv_w[o, m, u, v] up_w[c, m, k, l]
        prod = torch.mm(
            conv_w.flip((2, 3)).permute(0, 2, 3, 1).reshape(cout * 9, cmid),
            up_w.transpose(0, 1).reshape(cmid, cin * 16))
        prod = prod.view(cout, 9, cin * 16).transpose(1, 2)
        weight = F.fold(prod, (6, 6), kernel_size=4).transpose(0, 1)
        bias = None if up_b is None else conv_w.sum((2, 3)) @ up_b
    if up_w.is_contiguous(memory_format=torch.channels_last) \
            and not up_w.is_contiguous():
        # Output layout as the modules' convolutions pick it: channels_last
        # where the input or the weight is.
        weight = weight.contiguous(memory_format=torch.channels_last)
    return _ComposedMinusBorder.apply(x, weight, bias, up_w, up_b, conv_w,
                                      conv_compute_dtype(x, weight))

