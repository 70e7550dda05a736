"""SparK's light UNet decoder: from the coarsest scale up to the input size."""
from typing import List, Optional

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from ..errors import SparKInputError
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
        x = self.conv1(self.upsample(x))
        x = self.conv2(self.act(self.norm1(x)))
        return self.norm2(x)


# As the official SparK decoder: transposed convolutions Kaiming normal
# (fan_out, ReLU), convolutions trunc_normal(std .02), biases 0, norms 1 / 0.
OFFICIAL_DECODER_INIT = [
    dict(type='Kaiming', layer='ConvTranspose2d', mode='fan_out',
         nonlinearity='relu', distribution='normal', bias=0),
    dict(type='TruncNormal', layer='Conv2d', std=0.02, bias=0),
    dict(type='Constant', layer=['_BatchNorm', 'LayerNorm'], val=1, bias=0),
]


@MODELS.register_module()
class LightUNetDecoder(BaseModule):
    """Decoder of widths ``width, width/2, ...``, one block per factor of 2.

    Args:
        width: channels at the coarsest scale (official SparK: 768).
        upsample_ratio: total stride of the encoder (32 for ResNet/ConvNeXt).
        out_channels: predicted channels (3 for RGB).
        norm_cfg: norm of the conv blocks.
        init_cfg: mmengine initialisers; by default the official decoder's
            (:data:`OFFICIAL_DECODER_INIT`).
    """

    def __init__(self, width: int = 768, upsample_ratio: int = 32,
                 out_channels: int = 3, norm_cfg: dict = dict(type='BN'),
                 init_cfg: Optional[List[dict]] = OFFICIAL_DECODER_INIT):
        super().__init__(init_cfg=init_cfg)
        num_blocks = upsample_ratio.bit_length() - 1
        if 2 ** num_blocks != upsample_ratio:
            raise SparKInputError(f'upsample_ratio={upsample_ratio} is not a power of 2')
        if width % upsample_ratio:
            raise SparKInputError(f'decoder width {width} must be divisible by '
                                  f'upsample_ratio {upsample_ratio}')
        self.widths = [width // 2 ** i for i in range(num_blocks + 1)]
        self.blocks = nn.ModuleList(
            UpsampleBlock(cin, cout, norm_cfg)
            for cin, cout in zip(self.widths[:-1], self.widths[1:]))
        self.predict = nn.Conv2d(self.widths[-1], out_channels, 1)

    def forward(self, dense: List[Optional[torch.Tensor]]) -> torch.Tensor:
        """``dense[i]``: map of stride ``upsample_ratio / 2**i`` (None = not fed)."""
        x = dense[0]
        for index, block in enumerate(self.blocks):
            x = block(x)
            skip = dense[index + 1] if index + 1 < len(dense) else None
            if skip is not None:
                x = x + skip
        return self.predict(x)
