"""The mask a SparK model hands to its sparse layers for one forward pass.

Each SparK model owns one :class:`SparseContext`; the layers converted for that
model hold a reference to it. Nothing is module- or class-level, so several
models (or a model and the dense backbone it came from) coexist in a process.
With no mask active every sparse layer behaves exactly like its dense original.
"""
from contextlib import contextmanager
from typing import Dict, Optional, Tuple

import torch

from ...errors import SparKInputError


def expand_mask(active_b1hw: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``active_b1hw`` (B, 1, h, w) repeated to (B, 1, height, width), whole multiples."""
    grid_h, grid_w = active_b1hw.shape[-2:]
    return (active_b1hw.repeat_interleave(height // grid_h, dim=2)
            .repeat_interleave(width // grid_w, dim=3))


class SparseContext:
    """Holds the active mask ``active_b1hw`` (True = visible) on the coarsest grid.

    Masks at other resolutions are expanded on demand and cached, so each
    resolution (and layout) is expanded once per forward, whatever the number
    of layers working at it.
    """

    def __init__(self):
        self.active_b1hw: Optional[torch.Tensor] = None
        self._expanded: Dict[Tuple, torch.Tensor] = {}

    @property
    def is_active(self) -> bool:
        return self.active_b1hw is not None

    @contextmanager
    def masked(self, active_b1hw: torch.Tensor):
        """Activate ``active_b1hw`` (B, 1, h, w) bool for the duration of a block."""
        if active_b1hw.dim() != 4 or active_b1hw.shape[1] != 1:
            raise SparKInputError('the mask must have shape (B, 1, h, w), got '
                                  f'{tuple(active_b1hw.shape)}')
        previous = self.active_b1hw, self._expanded
        self.active_b1hw, self._expanded = active_b1hw.bool(), {}
        try:
            yield self
        finally:
            self.active_b1hw, self._expanded = previous

    def mask_bool(self, height: int, width: int) -> torch.Tensor:
        """Visible positions at ``height x width`` as (B, 1, height, width) bool."""
        key = ('bool', height, width)
        if key not in self._expanded:
            grid_h, grid_w = self.active_b1hw.shape[-2:]
            if height % grid_h or width % grid_w:
                raise SparKInputError(
                    f'a sparse layer produced a {height}x{width} map, which is '
                    f'not a whole multiple of the {grid_h}x{grid_w} mask grid; '
                    'use an input size that is a multiple of the total stride')
            self._expanded[key] = expand_mask(self.active_b1hw, height, width)
        return self._expanded[key]

    def mask_like(self, x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        """A 0/1 mask in ``x``'s dtype that broadcasts against ``x``.

        ``x`` is (B, C, H, W), or (B, H, W, C) when ``channels_last``.
        """
        height, width = (x.shape[1], x.shape[2]) if channels_last else x.shape[-2:]
        key = ('float', height, width, x.dtype, x.device, channels_last)
        if key not in self._expanded:
            mask = self.mask_bool(height, width).to(device=x.device, dtype=x.dtype)
            if channels_last:
                mask = mask.permute(0, 2, 3, 1)
            self._expanded[key] = mask
        return self._expanded[key]

    def visible_index(self, height: int, width: int) -> Tuple[torch.Tensor, ...]:
        """(batch, row, column) indices of the visible positions at ``height x width``.

        Layers that compute on visible positions only gather them with these
        (``x.permute(0, 2, 3, 1)[index]`` is (n, C)) and scatter back.
        """
        key = ('index', height, width)
        if key not in self._expanded:
            self._expanded[key] = self.mask_bool(height, width)[:, 0].nonzero(
                as_tuple=True)
        return self._expanded[key]

    def visible_rows(self, height: int, width: int) -> torch.Tensor:
        """Flat indices of the visible positions in (B * height * width) order.

        Row ``i`` of a channels_last map viewed as (B * H * W, C) is position
        (b, h, w) with ``i = (b * H + h) * W + w``; ``index_select`` with these
        gathers the visible rows of such a view in one pass.
        """
        key = ('rows', height, width)
        if key not in self._expanded:
            self._expanded[key] = (self.mask_bool(height, width)
                                   .flatten().nonzero().squeeze(1))
        return self._expanded[key]

    def cached(self, key, compute):
        """``compute()``, once per active mask: for index tensors that layers
        derive from the mask (e.g. the rows a pooling window reads)."""
        key = ('derived', key)
        if key not in self._expanded:
            self._expanded[key] = compute()
        return self._expanded[key]
