"""A sparse (re-masked) conv on visible rows as gather + matrix product.

:class:`.resnet_rows._SparseConvRows` scatters the rows into a zero map, runs
the dense conv and gathers the visible output rows: simple, and oneDNN's
dense conv is fast, but at small maps the dense conv computes every position
(60% of them masked at the default ratio) with a poorly filled kernel. Here
each visible output row reads its kernel window from the input rows
(:func:`.neighbour_rows.window_rows`, zero for masked or padded positions)
into a (n_out, kh * kw * C_in) matrix, multiplied by the weight: the same sum
of products, over the visible outputs only. The backward gathers the window
again (instead of keeping it) and sums the window gradients back into the
rows.

Which is faster depends on the map size and the machine, so the tuner
measures it where it runs (:func:`.resnet_rows._sparse_conv_rows`). For
scale, on a 2-core AVX-512 Xeon (ResNet-50's 3x3 bottleneck convs, fp32,
batch 16 at 224 px, 40% visible, forward + backward, 2 threads; gather /
dense time): 0.44 (7 px, 512 ch), 0.38 (14 -> 7 px, stride 2), 0.52 (14 px),
0.45 (28 -> 14 px), 0.65 (28 px), 0.48 (56 -> 28 px), but 1.2-1.4 at 56 px.
"""
import torch

from .neighbour_rows import with_zero_row
from .row_products import MATMUL, linear_by, transposed_product_by


def _window_matrix(rows, window):
    """(n_out, K * C): the rows each output reads, zero where it reads none."""
    n_out, taps = window.shape
    return with_zero_row(rows).index_select(0, window.flatten()).view(
        n_out, taps * rows.shape[1])


def _weight_matrix(weight):
    """(C_out, kh * kw * C_in): the weight in the window matrix's column order."""
    return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)


class SparseConvGather(torch.autograd.Function):
    """The conv (no bias, groups 1) of the map holding ``rows`` at the
    positions ``window`` refers to, read at the outputs of ``window``; the
    matrix products in torch's (MKL) or, for ``engine`` ONEDNN, as oneDNN
    1x1 convolutions (:mod:`.row_products`)."""

    @staticmethod
    def forward(ctx, rows, weight, window, engine=MATMUL):
        with torch.autocast(rows.device.type, enabled=False):
            out = linear_by(engine, _window_matrix(rows, window), _weight_matrix(weight))
        ctx.save_for_backward(rows, weight, window)
        ctx.engine = engine
        return out

    @staticmethod
    def backward(ctx, grad_out):
        rows, weight, window = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_rows = grad_weight = None
        with torch.autocast(grad_out.device.type, enabled=False):
            if ctx.needs_input_grad[1]:
                grad_w = transposed_product_by(ctx.engine, grad_out,
                                               _window_matrix(rows, window))
                c_out, c_in, k_h, k_w = weight.shape
                grad_weight = grad_w.view(c_out, k_h, k_w, c_in).permute(0, 3, 1, 2)
            if ctx.needs_input_grad[0]:
                # the weight as (kh * kw * C_in, C_out): the window's columns
                grad_window = linear_by(
                    ctx.engine, grad_out, weight.permute(2, 3, 1, 0).reshape(-1, weight.shape[0]))
                grad_rows = grad_out.new_zeros(rows.shape[0] + 1, rows.shape[1])
                grad_rows.index_add_(0, window.flatten(),
                                     grad_window.view(-1, rows.shape[1]))
                grad_rows = grad_rows[:rows.shape[0]]
        return grad_rows, grad_weight, None, None
