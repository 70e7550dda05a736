"""ResNet ``Bottleneck`` blocks (mmpretrain's, mmdet's) computed on the visible rows only.

The sparse encoder computes every layer densely and re-masks it (see
:mod:`spark_mm.models.sparse.remask`); at the default mask ratio 60% of that
work lands on positions that are zero anyway. In a bottleneck, three of the
four convolutions are 1x1: on a channels_last map viewed as (B * H * W, C)
rows they are matrix products of the rows, so they can run on the visible
rows alone. This module runs a whole block that way:

- gather the visible rows of the block input once (``(n, C_in)``);
- conv1 (1x1) as ``rows @ W1^T``, batch norm over those rows (the statistics
  of the visible positions, i.e. sparse BN, SyncBN included), ReLU;
- scatter into a zero channels_last map only for conv2 (3x3, stride 1 or 2),
  gather its output at the visible positions of the output resolution (the
  coarser mask after a stride-2 conv: the sparse conv's re-masking); on
  small maps, where that is faster, each visible output's 3x3 window is
  gathered from the rows instead and multiplied by the weight
  (:mod:`.gather_conv`);
- BN, ReLU, conv3 (1x1), BN on rows; the shortcut on rows too: the input rows,
  or the downsample's strided 1x1 conv on the input rows at the positions the
  stride samples (the output mask's positions), then its BN over them;
- drop path per sample (the same random numbers as the dense block), the
  residual sum and ReLU on rows, and one scatter into zeros at the output.

The result equals the dense-and-re-mask sparse block (float64: to rounding):
masked positions of every map are zero in both, and the visible ones are
computed from the same visible inputs by the same formulas.

Consecutive blocks of a stage hand rows to each other (:class:`SparseResLayerRowsMixin`),
so a stage gathers once at its input and scatters once at its output. Whether
a stage runs on rows or on maps, and its 3x3 convs as dense convs or gathers,
is measured where it runs (:mod:`.tuner`).

Only training with a mask active takes this path (eval-mode and unmasked
forwards run the dense block unchanged), and only channels_last inputs.
Blocks it does not cover (caffe style, non-ReLU activation, other conv or norm
types, timm's post-norm activations) run the dense sparse block.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..sparse.batch_norm import SparseBatchNormMixin, rows_batch_norm
from ..sparse.bn_statistics import has_post_norm
from ..sparse.convert import dense_class_of
from ..sparse.remask import SparseMixin
from .gather_conv import SparseConvGather
from .neighbour_rows import window_rows
from .row_products import ONEDNN, rows_linear
from .tuner import TunedMixin
from .visible_rows import (gather_rows, rows_of, rows_view, scatter_rows,
                           scatter_rows_into_zeros)


class _SparseConvRows(torch.autograd.Function):
    """A conv of the map holding ``rows`` at ``index_in`` (zero elsewhere),
    read at ``index_out``: the sparse (re-masked) conv, rows in, rows out.

    Keeps only the input rows for the backward (the input map is rebuilt
    there), not a map-sized tensor.
    """

    @staticmethod
    def forward(ctx, rows, weight, index_in, index_out, in_shape, conv):
        settings = (conv.stride, conv.padding, conv.dilation, conv.groups)
        with torch.autocast(rows.device.type, enabled=False):
            x = scatter_rows_into_zeros(rows, index_in, in_shape)
            out = F.conv2d(x, weight, None, *settings)
            out_rows = rows_view(out).index_select(0, index_out)
        ctx.save_for_backward(rows, weight, index_in, index_out)
        ctx.in_shape, ctx.out_shape, ctx.settings = in_shape, tuple(out.shape), settings
        return out_rows

    @staticmethod
    def backward(ctx, grad_rows):
        rows, weight, index_in, index_out = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.settings
        with torch.autocast(grad_rows.device.type, enabled=False):
            x = scatter_rows_into_zeros(rows, index_in, ctx.in_shape)
            grad_out = scatter_rows_into_zeros(
                grad_rows.contiguous().to(rows.dtype), index_out, ctx.out_shape)
            needs = ctx.needs_input_grad
            grad_x, grad_weight, _ = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, stride, padding, dilation, False,
                [0, 0], groups,
                [needs[0], needs[1], False])
            grad_rows_in = (rows_view(grad_x).index_select(0, index_in)
                            if needs[0] else None)
        return grad_rows_in, grad_weight, None, None, None, None


def _sparse_conv_rows(block, rows, index_in, index_out, in_shape, out_hw):
    """``block.conv2`` (no bias) on rows: as a dense conv of the scattered map
    or as gather + matrix product (:mod:`.gather_conv`), whichever the tuner
    measured faster for this shape."""
    conv, context = block.conv2, block.sparse_context
    weight = conv.weight.to(rows.dtype)
    if conv.groups != 1:
        return _SparseConvRows.apply(rows, weight, index_in, index_out, in_shape, conv)
    batch, _, height, width = in_shape
    geometry = (tuple(conv.kernel_size), tuple(conv.stride), tuple(conv.padding),
                tuple(conv.dilation))
    window = context.cached(
        ('conv window', height, width) + geometry,
        lambda: window_rows(index_in, index_out, (batch, height, width), out_hw,
                            *geometry))

    def dense_conv(rows=rows, weight=weight):
        return _SparseConvRows.apply(rows, weight, index_in, index_out, in_shape, conv)

    def gather_gemm(rows=rows, weight=weight):
        return SparseConvGather.apply(rows, weight, window)

    def gather_onednn(rows=rows, weight=weight):
        return SparseConvGather.apply(rows, weight, window, ONEDNN)

    def timed(implementation):
        def run():
            copies = rows.detach().requires_grad_(), weight.detach().requires_grad_()
            return implementation(*copies), copies
        return run

    choice = block.fast_tuner.choose(
        f'{block.fast_name}.conv2', 'conv on visible rows',
        (tuple(in_shape), tuple(weight.shape), geometry, str(rows.dtype)),
        {'dense conv': timed(dense_conv), 'gather + GEMM': timed(gather_gemm),
         'gather + oneDNN': timed(gather_onednn)},
        rows.device)
    return {'gather + GEMM': gather_gemm,
            'gather + oneDNN': gather_onednn}.get(choice, dense_conv)()


# ---- the block ---------------------------------------------------------------------
def is_rows_conv(conv, kernel_size=None) -> bool:
    """A sparse ``nn.Conv2d`` (zero padding, of ``kernel_size`` if given)."""
    return (isinstance(conv, SparseMixin) and dense_class_of(type(conv)) is nn.Conv2d
            and conv.padding_mode == 'zeros'
            and (kernel_size is None or tuple(conv.kernel_size) == kernel_size))


def _is_pointwise(conv) -> bool:
    return (is_rows_conv(conv, (1, 1)) and tuple(conv.stride) == (1, 1)
            and tuple(conv.padding) == (0, 0) and conv.groups == 1)


def is_rows_norm(norm) -> bool:
    """A sparse batch norm without timm's activation after it."""
    return (isinstance(norm, SparseBatchNormMixin)
            and isinstance(norm, nn.modules.batchnorm._BatchNorm)
            and not has_post_norm(norm))


def _pointwise(block, name, rows, conv):
    """A 1x1 conv on rows, by the matrix product the tuner measured faster."""
    return rows_linear(block, name, rows, conv.weight, conv.bias)


def _strided_rows(index_out, in_shape, out_shape, stride):
    """Flat input-map indices sampled by a 1x1 conv of ``stride`` at the
    output positions ``index_out``."""
    height, width = in_shape[-2:]
    out_h, out_w = out_shape[-2:]
    batch, rest = index_out.div(out_h * out_w, rounding_mode='floor'), index_out % (out_h * out_w)
    row, col = rest.div(out_w, rounding_mode='floor'), rest % out_w
    return (batch * height + row * stride[0]) * width + col * stride[1]


def trains_on_rows(module, x) -> bool:
    """Whether a rows-path ``module`` may take that path for ``x``: training
    with a mask active, on a channels_last map."""
    return (module.training and module.sparse_active
            and x.dim() == 4
            and x.is_contiguous(memory_format=torch.channels_last))


class SparseBottleneckRowsMixin(TunedMixin, SparseMixin):
    """mmpretrain's (or mmdet's) ``Bottleneck`` on visible rows; see the module docstring."""

    def forward(self, x):
        if not self._takes_rows_path(x):
            return super().forward(x)
        if self.with_cp and x.requires_grad:
            return torch.utils.checkpoint.checkpoint(
                self._rows_forward, x, use_reentrant=False)
        return self._rows_forward(x)

    def maps_forward(self, x):
        """The block as the plain sparse encoder computes it (maps)."""
        return super().forward(x)

    def _takes_rows_path(self, x) -> bool:
        return trains_on_rows(self, x) and self.supports_rows()

    def supports_rows(self) -> bool:
        """Whether this block's layers are the ones the rows path computes."""
        cached = self.__dict__.get('_supports_rows')
        if cached is None:
            cached = self.__dict__['_supports_rows'] = self._check_supports_rows()
        return cached

    def _check_supports_rows(self) -> bool:
        return (self.style == 'pytorch' and _is_pointwise(self.conv1)
                and not getattr(self, 'with_plugins', False)  # mmdet's
                and is_rows_conv(self.conv2) and _is_pointwise(self.conv3)
                and all(is_rows_norm(n) for n in (self.norm1, self.norm2, self.norm3))
                and type(self.relu) is nn.ReLU)

    def _rows_forward(self, x):
        index_in = self.sparse_context.visible_rows(*x.shape[-2:])
        rows, index, shape = self.forward_rows(gather_rows(x, index_in),
                                               index_in, tuple(x.shape), x)
        return scatter_rows(rows, index, shape)

    def forward_rows(self, rows_in, index_in, in_shape, x=None):
        """The block on the visible rows ``rows_in`` (at ``index_in`` of a
        channels_last ``in_shape`` map): (rows, index, shape) of its output.

        ``x``, the input map, is needed only by a downsample that is not a
        1x1 conv + BN.
        """
        batch, _, height, width = in_shape
        out = _pointwise(self, 'conv1', rows_in, self.conv1)
        out = F.relu(rows_batch_norm(self.norm1, out), inplace=True)

        conv2 = self.conv2
        mid = out.shape[1]
        out_h = (height + 2 * conv2.padding[0] - conv2.dilation[0]
                 * (conv2.kernel_size[0] - 1) - 1) // conv2.stride[0] + 1
        out_w = (width + 2 * conv2.padding[1] - conv2.dilation[1]
                 * (conv2.kernel_size[1] - 1) - 1) // conv2.stride[1] + 1
        index_out = self.sparse_context.visible_rows(out_h, out_w)
        out = _sparse_conv_rows(self, out, index_in, index_out,
                                (batch, mid, height, width), (out_h, out_w))
        if conv2.bias is not None:
            out = out + conv2.bias
        out = F.relu(rows_batch_norm(self.norm2, out), inplace=True)

        out = rows_batch_norm(self.norm3, _pointwise(self, 'conv3', out, self.conv3))
        out_shape = (batch, out.shape[1], out_h, out_w)
        identity = self._shortcut_rows(rows_in, index_in, in_shape, index_out,
                                       out_shape, x)
        out = self._drop_path_rows(out, index_out, out_h * out_w)
        out = F.relu(out + identity, inplace=True)
        return out, index_out, out_shape

    def _shortcut_rows(self, rows_in, index_in, in_shape, index_out, out_shape, x):
        downsample = self.downsample
        if downsample is None:
            return rows_in
        if (isinstance(downsample, nn.Sequential) and len(downsample) == 2
                and is_rows_conv(downsample[0], (1, 1))
                and tuple(downsample[0].padding) == (0, 0)
                and downsample[0].groups == 1 and is_rows_norm(downsample[1])):
            conv, norm = downsample
            stride = tuple(conv.stride)
            if stride == (1, 1):
                rows = rows_in
            else:
                # A strided 1x1 conv reads the input at the positions it
                # samples: the output mask's visible positions (a coarse
                # visible position samples a visible fine one), taken from
                # the input rows (index_in is sorted).
                fine = _strided_rows(index_out, in_shape, out_shape, stride)
                rows = rows_in.index_select(0, torch.searchsorted(index_in, fine))
            return rows_batch_norm(norm, _pointwise(self, 'downsample', rows, conv))
        if x is None:
            raise RuntimeError('this shortcut needs the input map')
        return gather_rows(downsample(x), index_out)

    def _drop_path_rows(self, rows, index, positions):
        drop_path = getattr(self, 'drop_path', None)  # mmdet's blocks have none
        if drop_path is None or isinstance(drop_path, nn.Identity):
            return rows
        # The dense block calls drop_path on its (B, C, H, W) branch output:
        # one random draw of shape (B, 1, 1, 1). Drawing the same on ones
        # gives each sample's factor (0 or 1 / keep_prob).
        batch = self.sparse_context.active_b1hw.shape[0]
        scale = drop_path(rows.new_ones(batch, 1, 1, 1)).view(batch, 1)
        return rows * scale.index_select(
            0, index.div(positions, rounding_mode='floor'))


class SparseResLayerRowsMixin(TunedMixin, SparseMixin):
    """A ResNet ``ResLayer`` (a stage of blocks) handing rows block to block.

    When every block can take the rows path, the stage runs on rows or on
    maps, whichever the tuner measured faster. On rows it gathers the visible
    rows of its input once (or takes the rows the previous stage scattered
    into it) and scatters its output once, remembering its rows for the next
    stage and the densify step's norm.
    """

    def forward(self, x):
        blocks = list(self)
        if not (blocks and all(isinstance(b, SparseBottleneckRowsMixin)
                               and not b.with_cp and b._takes_rows_path(x)
                               for b in blocks)):
            return super().forward(x)

        def timed(implementation):
            def run():
                copy = x.detach().requires_grad_()
                return implementation(copy), [copy] + list(self.parameters())
            return run

        choice = self.fast_tuner.choose(
            self.fast_name, 'ResNet stage', (tuple(x.shape), str(x.dtype)),
            {'maps': timed(self._maps_forward), 'rows': timed(self._rows_forward)},
            x.device, modules=[self])
        return self._rows_forward(x) if choice == 'rows' else self._maps_forward(x)

    def _maps_forward(self, x):
        for block in self:
            x = block.maps_forward(x)
        return x

    def _rows_forward(self, x):
        shape = tuple(x.shape)
        index = self.sparse_context.visible_rows(*shape[-2:])
        rows = rows_of(x, index)
        map_in = x
        for block in self:
            rows, index, shape = block.forward_rows(rows, index, shape, map_in)
            map_in = None
        return scatter_rows(rows, index, shape, remember=True)
