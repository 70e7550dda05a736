"""The ResNet stem (conv, BN, ReLU, max pool) with its pointwise part on visible rows.

The dense sparse stem works on full maps at half the input resolution: the
conv output is re-masked, BN scatters its rows back into a zero map, ReLU and
the max pool run on that map, and the max pool's output is re-masked and
gathered again by the first stage. Each of these costs a pass over (or a zero
fill of) a (B, 64, H/2, W/2) map forward and backward, where 60% of the
positions are zero at the default mask ratio. Here:

- the conv runs densely (its masked outputs are never read, so it is not
  re-masked) and its visible rows are gathered once;
- BN (sparse: statistics of these rows) and ReLU run on the rows;
- the max pool reads each visible output's window from the rows
  (:mod:`.neighbour_rows`), a masked or padded position counting as zero;
- one scatter at the pool's (quarter) resolution, whose rows the first stage
  takes as they are (:func:`.visible_rows.rows_of`).

The max pool gives what the dense one gives on the re-masked ReLU output:
ReLU outputs are >= 0 and masked positions are 0, so a window's maximum is
>= 0 and a zero read for a padded position (where the dense pool pads with
-inf) never changes it; the first maximum in the window's row-major order is
the one chosen (as the dense kernel does), and a gradient sent to a zero
instead of another zero is dropped by the ReLU's backward in both.

Only training with a mask active on channels_last inputs takes this path, for
mmpretrain's / mmdet's ``ResNet`` with the plain stem; others run the dense
forward.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..sparse.batch_norm import rows_batch_norm
from ..sparse.convert import dense_class_of
from ..sparse.remask import SparseMixin
from .neighbour_rows import window_rows, with_zero_row
from .resnet_rows import is_rows_conv, is_rows_norm, trains_on_rows
from .tuner import TunedMixin
from .visible_rows import gather_rows, scatter_rows


class _MaxPoolRows(torch.autograd.Function):
    """Max over each output's window of non-negative ``rows``.

    ``window`` (n_out, K): row numbers each output reads, ``n_in`` for a zero
    (see :func:`.neighbour_rows.window_rows`). The taps are read one at a
    time into (n_out, C) (a (n_out, K, C) stack costs more to allocate and
    reduce). The tap of each maximum is tracked as the last tap that raised
    the running maximum strictly, i.e. the first maximum in tap order (the
    dense kernel's choice), as the largest ``k * [tap k raised it]`` (uint8,
    cheap elementwise maxima). The backward sums each output's gradient into
    the row that tap read.
    """

    @staticmethod
    def forward(ctx, rows, window):
        padded = with_zero_row(rows)
        values = padded.index_select(0, window[:, 0])
        which = torch.zeros(values.shape, dtype=torch.uint8, device=values.device)
        raised = torch.empty_like(which)
        for tap in range(1, window.shape[1]):
            candidate = padded.index_select(0, window[:, tap])
            torch.gt(candidate, values, out=raised)
            torch.maximum(which, raised.mul_(tap), out=which)
            torch.maximum(values, candidate, out=values)
        ctx.save_for_backward(window, which)
        ctx.num_rows = rows.shape[0]
        return values

    @staticmethod
    def backward(ctx, grad_out):
        window, which = ctx.saved_tensors
        source = torch.gather(window, 1, which.long())
        grad_rows = grad_out.new_zeros(ctx.num_rows + 1, grad_out.shape[1])
        grad_rows.scatter_add_(0, source, grad_out.contiguous())
        return grad_rows[:ctx.num_rows], None


def _pool_out_size(size, pool, dim):
    return (size + 2 * pool.padding[dim] - pool.kernel_size[dim]) // pool.stride[dim] + 1


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


class _PoolGeometry:
    """``nn.MaxPool2d``'s kernel, stride and padding as pairs."""

    def __init__(self, pool):
        self.kernel_size = _pair(pool.kernel_size)
        self.stride = _pair(pool.stride if pool.stride is not None else pool.kernel_size)
        self.padding = _pair(pool.padding)


def _is_rows_max_pool(pool) -> bool:
    kernel = _pair(pool.kernel_size)
    return (isinstance(pool, SparseMixin) and dense_class_of(type(pool)) is nn.MaxPool2d
            and _pair(pool.dilation) == (1, 1) and not pool.ceil_mode
            and not pool.return_indices
            and kernel[0] * kernel[1] <= 256)  # taps counted in uint8


class SparseResNetRowsMixin(TunedMixin, SparseMixin):
    """mmpretrain's / mmdet's ``ResNet`` whose stem runs on visible rows
    (see the module docstring) where the tuner measured that faster; the
    stages run as they are."""

    def forward(self, x):
        if not self._stem_takes_rows(x):
            return super().forward(x)

        def timed(implementation):
            def run():
                copy = x.detach().requires_grad_()
                return implementation(copy), [copy, self.conv1.weight,
                                              self.norm1.weight, self.norm1.bias]
            return run

        choice = self.fast_tuner.choose(
            f'{self.fast_name}.stem', 'ResNet stem', (tuple(x.shape), str(x.dtype)),
            {'maps': timed(self._stem_maps), 'rows': timed(self._stem_rows)},
            x.device, modules=[self.norm1])
        x = self._stem_rows(x) if choice == 'rows' else self._stem_maps(x)
        outs = []  # the rest as ResNet.forward
        for i, layer_name in enumerate(self.res_layers):
            x = getattr(self, layer_name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _stem_maps(self, x):
        return self.maxpool(self.relu(self.norm1(self.conv1(x))))

    def _stem_takes_rows(self, x) -> bool:
        return trains_on_rows(self, x) and self.stem_supports_rows()

    def stem_supports_rows(self) -> bool:
        """Whether the stem is the conv, BN, ReLU, max pool this path computes."""
        cached = self.__dict__.get('_stem_supports_rows')
        if cached is None:
            cached = self.__dict__['_stem_supports_rows'] = (
                not self.deep_stem and is_rows_conv(self.conv1)
                and is_rows_norm(self.norm1) and type(self.relu) is nn.ReLU
                and _is_rows_max_pool(self.maxpool))
        return cached

    def _stem_rows(self, x):
        """The stem's output map (rows remembered for the first stage)."""
        context, conv = self.sparse_context, self.conv1
        out = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding,
                       conv.dilation, conv.groups)
        batch, channels, height, width = out.shape
        index = context.visible_rows(height, width)
        rows = F.relu(rows_batch_norm(self.norm1, gather_rows(out, index)),
                      inplace=True)

        pool = _PoolGeometry(self.maxpool)
        out_hw = (_pool_out_size(height, pool, 0), _pool_out_size(width, pool, 1))
        index_out = context.visible_rows(*out_hw)
        window = context.cached(
            ('max pool window', height, width, pool.kernel_size, pool.stride,
             pool.padding),
            lambda: window_rows(index, index_out, (batch, height, width), out_hw,
                                pool.kernel_size, pool.stride, pool.padding))
        rows = _MaxPoolRows.apply(rows, window)
        return scatter_rows(rows, index_out, (batch, channels) + out_hw,
                            remember=True)
