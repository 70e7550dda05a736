"""Matrix products on visible rows, by whichever library multiplies faster here.

The fast path's layers on visible rows multiply an (n, C_in) matrix of rows by
a weight. On a CPU, torch's matrix product goes to MKL's GEMM and its
convolutions to oneDNN, and which is faster depends on the processor: on an
AMD EPYC, oneDNN runs these products at 190-230 GMAC/s and MKL at 80-100
(``docs/speed.md``). The same product written as a 1x1 convolution over a
(1, C_in, n, 1) channels_last view of the rows runs in oneDNN without a copy,
forward and both gradients. :func:`rows_linear` lets the tuner time both for
each shape (operation ``'matrix product on rows'``); the plain candidate is
torch's ``F.linear``.
"""
import torch
import torch.nn.functional as F

MATMUL, ONEDNN = 'matrix product', '1x1 conv (oneDNN)'


def linear_as_conv(rows: torch.Tensor, weight: torch.Tensor,
                   bias: torch.Tensor = None) -> torch.Tensor:
    """``F.linear(rows, weight, bias)`` as a 1x1 convolution: ``rows`` (n, C_in)
    is read as the pixels of a (1, C_in, n, 1) channels_last map."""
    n, cin = rows.shape
    cout = weight.shape[0]
    pixels = rows.contiguous().view(1, n, 1, cin).permute(0, 3, 1, 2)
    out = F.conv2d(pixels, weight.reshape(cout, cin, 1, 1), bias)
    return out.permute(0, 2, 3, 1).reshape(n, cout)


def rows_linear(layer, name: str, rows: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor = None) -> torch.Tensor:
    """``F.linear(rows, weight, bias)`` computed the way ``layer``'s tuner
    measured faster for this shape (``layer``: a :class:`~.tuner.TunedMixin`)."""
    weight = weight.reshape(weight.shape[0], -1)

    def timed(implementation):
        def run():
            copies = [rows.detach().requires_grad_(rows.requires_grad),
                      weight.detach().requires_grad_()]
            return implementation(*copies, bias), copies
        return run

    choice = layer.fast_tuner.choose(
        f'{layer.fast_name}.{name}', 'matrix product on rows',
        (tuple(rows.shape), tuple(weight.shape), bias is not None, str(rows.dtype)),
        {MATMUL: timed(F.linear), ONEDNN: timed(linear_as_conv)}, rows.device)
    return (linear_as_conv if choice == ONEDNN else F.linear)(rows, weight, bias)


def transposed_product_as_conv(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a.t() @ b`` for ``a`` (n, N) and ``b`` (n, K), summed over the n rows:
    the weight gradient of a 1x1 convolution whose pixels are the rows."""
    n, cout = a.shape
    cin = b.shape[1]
    grad_out = a.contiguous().view(1, n, 1, cout).permute(0, 3, 1, 2)
    pixels = b.contiguous().view(1, n, 1, cin).permute(0, 3, 1, 2)
    shape_only = b.new_empty(cout, cin, 1, 1)  # the kernel reads its shape only
    grad_weight = torch.ops.aten.convolution_backward(
        grad_out, pixels, shape_only, None, [1, 1], [0, 0], [1, 1], False,
        [0, 0], 1, [False, True, False])[1]
    return grad_weight.reshape(cout, cin)


def linear_by(engine: str, rows: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``rows @ weight.t()`` (``weight`` (C_out, C_in)) by ``engine``."""
    return linear_as_conv(rows, weight) if engine == ONEDNN else F.linear(rows, weight)


def transposed_product_by(engine: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a.t() @ b`` by ``engine``."""
    return transposed_product_as_conv(a, b) if engine == ONEDNN else a.t() @ b
