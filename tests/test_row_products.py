"""The fast path's matrix products on visible rows, written as oneDNN 1x1
convolutions, equal torch's matrix products (float64, values and gradients),
and hand back contiguous rows without copying (fp32, where oneDNN runs)."""
import pytest
import torch
import torch.nn.functional as F

from spark_mm.models.fast.row_products import (linear_as_conv,
                                               transposed_product_as_conv)


@pytest.mark.parametrize('bias', [True, False])
@pytest.mark.parametrize('n, cin, cout', [(37, 5, 7), (1, 3, 2), (64, 16, 1)])
def test_linear_as_conv_equals_linear_in_float64(n, cin, cout, bias):
    gen = torch.Generator().manual_seed(n + cin)
    rows = torch.randn(n, cin, dtype=torch.float64, generator=gen)
    weight = torch.randn(cout, cin, dtype=torch.float64, generator=gen)
    b = torch.randn(cout, dtype=torch.float64, generator=gen) if bias else None
    grad = torch.randn(n, cout, dtype=torch.float64, generator=gen)
    results = []
    for product in (F.linear, linear_as_conv):
        inputs = [t.clone().requires_grad_() for t in (rows, weight)] + \
            ([b.clone().requires_grad_()] if bias else [])
        out = product(inputs[0], inputs[1], inputs[2] if bias else None)
        out.backward(grad)
        results.append([out] + [t.grad for t in inputs])
    for ours, reference in zip(results[1], results[0]):
        assert ours.shape == reference.shape
        assert torch.allclose(ours, reference, rtol=1e-12, atol=1e-12)


def test_transposed_product_equals_matmul_in_float64():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(41, 6, dtype=torch.float64, generator=gen)
    b = torch.randn(41, 9, dtype=torch.float64, generator=gen)
    assert torch.allclose(transposed_product_as_conv(a, b), a.t() @ b,
                          rtol=1e-12, atol=1e-12)


def test_rows_come_back_contiguous_without_a_copy():
    rows, weight = torch.randn(300, 32), torch.randn(48, 32)
    out = linear_as_conv(rows, weight)
    # a transposed view here would make every later row-wise op slow
    assert out.shape == (300, 48) and out.is_contiguous()
    reference = (rows.double() @ weight.double().t()).float()
    assert (out - reference).abs().max() <= 1e-5 * reference.abs().max()
