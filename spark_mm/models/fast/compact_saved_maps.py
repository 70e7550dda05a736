"""Keep the encoder's masked maps as visible rows until the backward needs them.

Autograd keeps each layer's input for the backward: for a sparse encoder these
are full-size maps that are zero at every masked position (60% of them at the
default ratio). Inside :class:`CompactSavedMaps`, every such map that autograd
saves is stored as its visible rows only and scattered back into zeros when the
backward unpacks it: the same values, so the same results, with 40% of the
memory. A map is stored compactly only after checking that it is exactly zero
at the masked positions; any other map (dense ones, parameters, small tensors,
NCHW maps) is kept as it is.
"""
from typing import NamedTuple, Tuple

import torch
from torch.utils.weak import WeakTensorKeyDictionary

from ..sparse.context import SparseContext
from .visible_rows import rows_view, scatter_rows_into_zeros


class _VisibleRows(NamedTuple):
    rows: torch.Tensor         # (n, C): the visible positions
    index: torch.Tensor        # their flat (B * H * W) indices
    shape: Tuple[int, ...]     # (B, C, H, W) of the map


class CompactSavedMaps:
    """``with CompactSavedMaps(context): ...`` around the sparse encoder's forward.

    Args:
        context: the model's :class:`SparseContext`, holding the active mask.
        min_numel: maps smaller than this are kept as they are (not worth it).
    """

    min_numel = 1 << 16

    def __init__(self, context: SparseContext, min_numel: int = None):
        self.context = context
        if min_numel is not None:
            self.min_numel = min_numel
        self._packed = WeakTensorKeyDictionary()
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)

    def __enter__(self):
        self._packed = WeakTensorKeyDictionary()
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._packed = WeakTensorKeyDictionary()  # the graph holds what it needs
        return self._hooks.__exit__(*exc)

    def _may_compact(self, t: torch.Tensor) -> bool:
        if t.dim() != 4 or not t.is_floating_point() or t.numel() < self.min_numel:
            return False
        if t.requires_grad and t.is_leaf:  # a parameter
            return False
        if not t.is_contiguous(memory_format=torch.channels_last) or t.is_contiguous():
            return False
        grid = self.context.active_b1hw
        height, width = t.shape[-2:]
        return (t.shape[0] == grid.shape[0] and height % grid.shape[2] == 0
                and width % grid.shape[3] == 0)

    def pack(self, t: torch.Tensor):
        if not (self.context.is_active and self._may_compact(t)):
            return t
        # The same map is often saved twice (an in-place activation's output
        # is the next conv's input): pack it once. Keyed by the tensor itself
        # (weakly) and its version, never by address, which memory reuses.
        version, packed = self._packed.get(t, (None, None))
        if version != t._version:
            packed = self._compact(t)
            self._packed[t] = (t._version, packed)
        return packed

    def _compact(self, t: torch.Tensor):
        height, width = t.shape[-2:]
        index = self.context.visible_rows(height, width)
        flat = rows_view(t.detach())
        rows = flat.index_select(0, index)
        # Exactly zero at the masked positions <=> no more non-zeros than the
        # visible rows hold (NaN and inf count as non-zero).
        if int(torch.count_nonzero(flat)) != int(torch.count_nonzero(rows)):
            return t
        return _VisibleRows(rows, index, tuple(t.shape))

    @staticmethod
    def unpack(packed):
        if isinstance(packed, torch.Tensor):
            return packed
        return scatter_rows_into_zeros(packed.rows, packed.index, packed.shape)  # channels_last
