"""SparK's light UNet decoder: from the coarsest scale up to the input size."""
from typing import List, Optional

import torch
import torch.nn as nn

from ..registry import MODELS
from .norms import build_norm


class UpsampleBlock(nn.Module):
    """x2 upsampling (transposed conv k4 s2), then 3x3 conv-norm-act at the
    input width and 3x3 conv-norm to the output width, as the official SparK."""

    def __init__(self, in_channels: int, out_channels: int, norm_cfg: dict):
        super().__init__()
        self.upsample = nn.ConvTranspose2d(in_channels, in_channels, 4, 2, 1)
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, padding=1, bias=False)
        self.norm1 = build_norm(norm_cfg, in_channels)
        self.act = nn.ReLU6(inplace=True)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = build_norm(norm_cfg, out_channels)

    def forward(self, x):
        x = self.upsample(x)
        x = self.act(self.norm1(self.conv1(x)))
        return self.norm2(self.conv2(x))


@MODELS.register_module()
class LightUNetDecoder(nn.Module):
    """Decoder of widths ``width, width/2, ...``, one block per factor of 2.

    Args:
        width: channels at the coarsest scale (official SparK: 768).
        upsample_ratio: total stride of the encoder (32 for ResNet/ConvNeXt).
        out_channels: predicted channels (3 for RGB).
        norm_cfg: norm of the conv blocks.
    """

    def __init__(self, width: int = 768, upsample_ratio: int = 32,
                 out_channels: int = 3, norm_cfg: dict = dict(type='BN')):
        super().__init__()
        num_blocks = upsample_ratio.bit_length() - 1
        if 2 ** num_blocks != upsample_ratio:
            raise ValueError(f'upsample_ratio={upsample_ratio} is not a power of 2')
        if width % upsample_ratio:
            raise ValueError(f'decoder width {width} must be divisible by '
                             f'upsample_ratio {upsample_ratio}')
        self.widths = [width // 2 ** i for i in range(num_blocks + 1)]
        self.blocks = nn.ModuleList(
            UpsampleBlock(cin, cout, norm_cfg)
            for cin, cout in zip(self.widths[:-1], self.widths[1:]))
        self.predict = nn.Conv2d(self.widths[-1], out_channels, 1)

    def init_weights(self):
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, dense: List[Optional[torch.Tensor]]) -> torch.Tensor:
        """``dense[i]``: map of stride ``upsample_ratio / 2**i`` (None = not fed)."""
        x = dense[0]
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index + 1 < len(dense) and dense[index + 1] is not None:
                x = x + dense[index + 1]
        return self.predict(x)
