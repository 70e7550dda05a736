"""Windows read from visible rows equal the dense maps' computations (float64).

spark_mm/models/fast/gather_conv.py (a sparse conv as gather + matrix product)
and the stem's max pool on rows (spark_mm/models/fast/resnet_stem_rows.py)
read each visible output's kernel window from the rows
(spark_mm/models/fast/neighbour_rows.py). Each must give what the dense op
gives on the zero-filled map, read at the visible outputs: values and every
gradient, to rounding.
"""
import pytest
import torch
import torch.nn.functional as F

from spark_mm.models.fast.gather_conv import SparseConvGather
from spark_mm.models.fast.row_products import MATMUL, ONEDNN
from spark_mm.models.fast.neighbour_rows import window_rows
from spark_mm.models.fast.resnet_stem_rows import _MaxPoolRows

RTOL = 1e-12


def mask_rows(batch, height, width, patch, seed=0):
    """Flat visible positions of a random patch mask (one sample all masked)."""
    gen = torch.Generator().manual_seed(seed)
    active = torch.rand(batch, 1, height // patch, width // patch, generator=gen) < 0.5
    active[0] = False
    active[1, 0, 0, 0] = True
    full = active.repeat_interleave(patch, 2).repeat_interleave(patch, 3)
    return full.flatten().nonzero().squeeze(1)


def scatter(rows, index, shape):
    batch, channels, height, width = shape
    flat = rows.new_zeros(batch * height * width, channels).index_copy(0, index, rows)
    return flat.view(batch, height, width, channels).permute(0, 3, 1, 2)


def gather(x, index):
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])[index]


def relative_error(value, reference):
    return ((value - reference).abs().max() / reference.abs().max()).item()


@pytest.mark.parametrize('engine', [MATMUL, ONEDNN])
@pytest.mark.parametrize('stride,dilation,kernel', [
    (1, 1, 3), (2, 1, 3), (1, 2, 3), (2, 1, 1), (1, 1, (3, 1))])
def test_gather_conv_equals_dense_conv_on_the_zero_filled_map(stride, dilation, kernel,
                                                             engine):
    batch, c_in, c_out, size, patch = 3, 5, 4, 8, 4
    kernel = kernel if isinstance(kernel, tuple) else (kernel, kernel)
    padding = (kernel[0] // 2 * dilation, kernel[1] // 2 * dilation)
    index_in = mask_rows(batch, size, size, patch)
    out_size = (size + 2 * padding[0] - dilation * (kernel[0] - 1) - 1) // stride + 1
    out_w = (size + 2 * padding[1] - dilation * (kernel[1] - 1) - 1) // stride + 1
    assert out_size == out_w
    index_out = mask_rows(batch, out_size, out_size, patch // stride)
    gen = torch.Generator().manual_seed(1)
    rows = torch.randn(index_in.numel(), c_in, generator=gen, dtype=torch.float64,
                       requires_grad=True)
    weight = torch.randn(c_out, c_in, *kernel, generator=gen, dtype=torch.float64,
                         requires_grad=True)
    grad = torch.randn(index_out.numel(), c_out, generator=gen, dtype=torch.float64)

    window = window_rows(index_in, index_out, (batch, size, size), (out_size, out_size),
                         kernel, (stride, stride), padding, (dilation, dilation))
    out = SparseConvGather.apply(rows, weight, window, engine)
    grad_rows, grad_weight = torch.autograd.grad(out, (rows, weight), grad)

    dense = F.conv2d(scatter(rows, index_in, (batch, c_in, size, size)), weight,
                     None, stride, padding, dilation)
    ref = gather(dense, index_out)
    ref_rows, ref_weight = torch.autograd.grad(ref, (rows, weight), grad)
    assert relative_error(out, ref) <= RTOL
    assert relative_error(grad_rows, ref_rows) <= RTOL
    assert relative_error(grad_weight, ref_weight) <= RTOL


def test_window_rows_marks_masked_and_padded_positions():
    # One sample, 4x4 map, visible: the top-left 2x2 patch only.
    index = torch.tensor([0, 1, 4, 5])
    window = window_rows(index, index, (1, 4, 4), (4, 4), (3, 3), (1, 1), (1, 1))
    none = index.numel()
    # Output (0, 0): padding above and left, rows 0, 1, 2, 3 at the centre.
    assert window[0].tolist() == [none, none, none, none, 0, 1, none, 2, 3]
    # Output (1, 1): rows 0-3 up-left of it, masked positions elsewhere.
    assert window[3].tolist() == [0, 1, none, 2, 3, none, none, none, none]


def test_max_pool_rows_equals_dense_max_pool_of_relu_output():
    """3x3 stride-2 max pool (the ResNet stem's) of a non-negative map that is
    zero at masked positions, with exact ties: the same maxima, and the
    gradient goes to the first maximum of each window, as the dense one's."""
    batch, channels, size, patch = 3, 6, 16, 4
    index_in = mask_rows(batch, size, size, patch)
    index_out = mask_rows(batch, size // 2, size // 2, patch // 2)
    gen = torch.Generator().manual_seed(2)
    # Few distinct values: many ties (zeros included, as after ReLU).
    values = torch.randint(0, 4, (index_in.numel(), channels), generator=gen)
    rows = values.to(torch.float64).requires_grad_()
    grad = torch.randn(index_out.numel(), channels, generator=gen, dtype=torch.float64)

    window = window_rows(index_in, index_out, (batch, size, size),
                         (size // 2, size // 2), (3, 3), (2, 2), (1, 1))
    out = _MaxPoolRows.apply(rows, window)
    grad_rows, = torch.autograd.grad(out, rows, grad)

    dense = F.max_pool2d(scatter(rows, index_in, (batch, channels, size, size)), 3, 2, 1)
    ref = gather(dense, index_out)
    ref_rows, = torch.autograd.grad(ref, rows, grad)
    assert torch.equal(out, ref)
    # Ties at positive values route the gradient as the dense pool does;
    # ties at zero may route it to another zero, which a ReLU before the
    # pool drops in both.
    positive = rows.detach() > 0
    assert relative_error(grad_rows * positive, ref_rows * positive) <= RTOL
    assert (grad_rows * positive).abs().max() > 0
