"""Which visible input rows a window (conv / pooling kernel) reads.

For a map held as its visible rows (``rows[i]`` is flat position
``index_in[i]`` of a (B, H, W) grid, see :mod:`.visible_rows`), a kernel
window at each visible output position reads a few input positions. This
module lists them as row numbers: ``(n_out, kh * kw)``, the entry
``n_in`` (one past the last row) standing for a position that holds no row (a
masked position, or padding outside the map), i.e. a zero. Gathering from the
rows with one zero row appended then reads the window of the zero-filled map
without building that map.
"""
import torch


def window_rows(index_in, index_out, in_shape, out_hw, kernel, stride, padding,
                dilation=(1, 1)):
    """Row numbers (into the rows at ``index_in``) each output position of
    ``index_out`` reads, kernel positions in row-major order; ``n_in`` where
    it reads no row.

    ``in_shape`` is (B, H, W) of the input grid, ``out_hw`` (Ho, Wo) of the
    output grid; ``index_in`` / ``index_out`` are flat positions in
    (B * H * W) / (B * Ho * Wo) order.
    """
    batch, height, width = in_shape
    out_h, out_w = out_hw
    n_in = index_in.numel()
    device = index_in.device
    lookup = torch.full((batch * height * width, ), n_in, dtype=torch.long,
                        device=device)
    lookup[index_in] = torch.arange(n_in, device=device)
    sample = index_out.div(out_h * out_w, rounding_mode='floor')
    rest = index_out % (out_h * out_w)
    row = rest.div(out_w, rounding_mode='floor')
    col = rest % out_w
    k_row, k_col = torch.meshgrid(torch.arange(kernel[0], device=device),
                                  torch.arange(kernel[1], device=device),
                                  indexing='ij')
    in_row = row[:, None] * stride[0] - padding[0] + k_row.flatten() * dilation[0]
    in_col = col[:, None] * stride[1] - padding[1] + k_col.flatten() * dilation[1]
    inside = (in_row >= 0) & (in_row < height) & (in_col >= 0) & (in_col < width)
    flat = ((sample[:, None] * height + in_row.clamp(0, height - 1)) * width
            + in_col.clamp(0, width - 1))
    return torch.where(inside, lookup[flat], n_in)


def with_zero_row(rows):
    """``rows`` (n, C) with a zero row appended (row ``n``)."""
    return torch.cat([rows, rows.new_zeros(1, rows.shape[1])])
