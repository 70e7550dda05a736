"""Densify: turn sparse encoder features into dense decoder inputs, per scale.

For each scale: a norm over visible positions, a learned ``[mask]`` token at
masked positions, and a projection to the decoder width at that scale: at the
coarsest scale a 1x1 conv (identity when the widths already match), a 3x3 conv
at every finer scale, whatever the widths (as the official SparK: ConvNeXt-S,
768 wide like the decoder, gets identity + three 3x3 convs).
"""
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model.weight_init import trunc_normal_

from .norms import build_norm
from .sparse import SparseContext
from .sparse.context import expand_mask


class Densifier(nn.Module):
    """Densify step for encoder widths ``in_channels`` (coarsest scale first).

    Args:
        in_channels: encoder width of each scale, coarsest first.
        out_channels: decoder width of each scale, coarsest first.
        context: the owning model's sparse context (for the visible-only norm).
        norm_cfg: norm applied to encoder features before densifying.
        pos_embed_grids: (h, w) of each scale for the absolute position
            embedding ablation; None disables it.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int],
                 context: SparseContext, norm_cfg: dict = dict(type='BN'),
                 pos_embed_grids: Optional[Sequence[Sequence[int]]] = None):
        super().__init__()
        self.norms = nn.ModuleList(
            build_norm(norm_cfg, channels, context) for channels in in_channels)
        self.mask_tokens = nn.ParameterList(
            nn.Parameter(torch.zeros(1, channels, 1, 1)) for channels in in_channels)
        self.projections = nn.ModuleList()
        for scale, (cin, cout) in enumerate(zip(in_channels, out_channels)):
            if scale == 0 and cin == cout:
                self.projections.append(nn.Identity())
            else:
                kernel = 1 if scale == 0 else 3
                self.projections.append(
                    nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=True))
        self.pos_embeds = None
        if pos_embed_grids is not None:
            self.pos_embeds = nn.ParameterList(
                nn.Parameter(torch.zeros(1, cout, h, w))
                for cout, (h, w) in zip(out_channels, pos_embed_grids))

    def init_weights(self):
        # As the official SparK: std .02, truncated at +-.02 (absolute). The
        # projections keep torch's default init, as there.
        for token in self.mask_tokens:
            trunc_normal_(token, std=0.02, a=-0.02, b=0.02)
        if self.pos_embeds is not None:
            for pos_embed in self.pos_embeds:
                trunc_normal_(pos_embed, std=0.02)

    def forward(self, features: List[torch.Tensor],
                active_b1hw: torch.Tensor) -> List[torch.Tensor]:
        """``features`` coarsest first; returns dense maps in decoder widths."""
        dense = []
        for scale, feature in enumerate(features):
            feature = self.norms[scale](feature)
            height, width = feature.shape[-2:]
            active = expand_mask(active_b1hw, height, width)
            feature = torch.where(active, feature, self.mask_tokens[scale].to(feature.dtype))
            feature = self.projections[scale](feature)
            if self.pos_embeds is not None:
                feature = feature + self._pos_embed(scale, height, width)
            dense.append(feature)
        return dense

    def _pos_embed(self, scale: int, height: int, width: int) -> torch.Tensor:
        pos_embed = self.pos_embeds[scale]
        if pos_embed.shape[-2:] != (height, width):
            pos_embed = F.interpolate(pos_embed, size=(height, width),
                                      mode='bicubic', align_corners=False)
        return pos_embed
