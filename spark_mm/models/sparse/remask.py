"""Sparse behaviour for dense layers, added by subclassing them in place.

A dense module becomes sparse by swapping its class for a subclass that mixes
in one of the classes below (see :mod:`.convert`). Parameters, buffers and
their names stay those of the dense module. Every mixin reads the mask from
``self.sparse_context``; with no mask active it calls the dense forward.

Semantics (submanifold sparse operators, simulated on dense tensors):
- conv / pooling / linear / layer norm / GRN: the dense result, re-masked, so
  masked positions stay exactly zero. Their inputs are zero at masked
  positions already, so visible outputs never see masked pixels
  (:class:`SparseRemaskMixin`, here);
- batch norm (and SyncBN): statistics over visible positions only
  (:mod:`.batch_norm`).
"""
from .context import SparseContext


class SparseMixin:
    """Marks a converted module; ``sparse_context`` is set by the conversion."""

    sparse_context: SparseContext = None

    @property
    def sparse_active(self) -> bool:
        return self.sparse_context is not None and self.sparse_context.is_active


class SparseRemaskMixin(SparseMixin):
    """Dense computation, then masked positions set back to zero.

    ``sparse_channels_last`` tells the layout of the output: (B, H, W, C) for
    the pointwise ``Linear`` layers and channels-last norms of ConvNeXt-style
    blocks, (B, C, H, W) otherwise. Modules that take a ``data_format``
    argument (mmpretrain's LayerNorm2d and GRN) override it per call.
    """

    sparse_channels_last: bool = False

    def forward(self, x, *args, **kwargs):
        out = super().forward(x, *args, **kwargs)
        if not self.sparse_active:
            return out
        if out.dim() != 4:
            raise RuntimeError(
                f'sparse layer {type(self).__name__} got a {out.dim()}-d '
                'output; only 4-d feature maps can be masked')
        mask = self.sparse_context.mask_like(out, self._output_is_channels_last(args, kwargs))
        if out is x:
            return out * mask
        # In place: none of these layers keeps its output for the backward,
        # and a fresh full-size map per layer costs allocation and page faults.
        return out.mul_(mask)

    def _output_is_channels_last(self, args, kwargs) -> bool:
        data_format = kwargs.get('data_format', args[0] if args else None)
        if data_format is None:
            return self.sparse_channels_last
        return data_format in ('channel_last', 'channels_last')
