"""SparK's light UNet decoder: from the coarsest scale up to the input size."""
from typing import List, Optional, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from ..errors import SparKInputError
from ..registry import MODELS
from .fast.fused_upsample import composed_is_cheaper, composed_upsample_conv
from .fast.norm_act_conv import (batch_norm_conv, batch_norm_relu6_conv,
                                 keeps_only_norm_input)
from .fast.relu6_inplace import ReLU6InPlace
from .norms import build_norm


class UpsampleBlock(nn.Module):
    """x2 upsampling (transposed conv k4 s2), then 3x3 conv-norm-act at the
    input width and 3x3 conv-norm to the output width, as the official SparK.

    ``fused``: compute the transposed conv and the first conv as one linear
    map (:func:`composed_upsample_conv`; same parameters, same state_dict):
    ``True`` always, ``False`` never (the plain sequential modules),
    ``'auto'`` where it should be faster for the input's shape
    (:func:`composed_is_cheaper`).
    """

    def __init__(self, in_channels: int, out_channels: int, norm_cfg: dict,
                 fused: Union[bool, str] = 'auto'):
        super().__init__()
        if fused not in (True, False, 'auto'):
            raise SparKInputError(f"fused must be True, False or 'auto', not {fused!r}")
        self.upsample = nn.ConvTranspose2d(in_channels, in_channels, 4, 2, 1)
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, padding=1, bias=False)
        self.norm1 = build_norm(norm_cfg, in_channels)
        self.act = ReLU6InPlace()  # keeps only its output for the backward
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = build_norm(norm_cfg, out_channels)
        self.fused = fused

    def uses_fused(self, x: torch.Tensor) -> bool:
        if self.fused == 'auto':
            return composed_is_cheaper(x.shape, self.upsample.in_channels,
                                       self.upsample.out_channels,
                                       self.conv1.out_channels)
        return bool(self.fused)

    def upsample_conv1(self, x: torch.Tensor) -> torch.Tensor:
        """``conv1(upsample(x))``, composed or sequential as ``fused`` says."""
        if self.uses_fused(x):
            return composed_upsample_conv(x, self.upsample, self.conv1)
        return self.conv1(self.upsample(x))

    def convs(self, x):
        """The block up to ``norm2``: upsample, conv1, norm1, act, conv2."""
        x = self.upsample_conv1(x)
        if keeps_only_norm_input(self.norm1, self.conv2, x):
            # the same maths, keeping the norm's input only (fast path)
            return batch_norm_relu6_conv(x, self.norm1, self.conv2)
        return self.conv2(self.act(self.norm1(x)))

    def forward(self, x):
        return self.norm2(self.convs(x))


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
        fused_upsample: each block's ``fused`` (``True``, ``False`` or
            ``'auto'``, see :class:`UpsampleBlock`); parameters and state_dict
            do not depend on it.
        init_cfg: mmengine initialisers; by default the official decoder's
            (:data:`OFFICIAL_DECODER_INIT`).
    """

    def __init__(self, width: int = 768, upsample_ratio: int = 32,
                 out_channels: int = 3, norm_cfg: dict = dict(type='BN'),
                 fused_upsample: Union[bool, str] = 'auto',
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
            UpsampleBlock(cin, cout, norm_cfg, fused=fused_upsample)
            for cin, cout in zip(self.widths[:-1], self.widths[1:]))
        self.predict = nn.Conv2d(self.widths[-1], out_channels, 1)

    def forward(self, dense: List[Optional[torch.Tensor]]) -> torch.Tensor:
        """``dense[i]``: map of stride ``upsample_ratio / 2**i`` (None = not fed)."""
        x = dense[0]
        for index, block in enumerate(self.blocks):
            skip = dense[index + 1] if index + 1 < len(dense) else None
            if index == len(self.blocks) - 1 and skip is None:
                return self.predict_after(block, x)
            x = block(x)
            if skip is not None:
                x = x + skip
        return self.predict(x)

    def predict_after(self, block: UpsampleBlock, x: torch.Tensor) -> torch.Tensor:
        """``predict(block(x))``; the fast path keeps no copy of the block's
        output (the input of its ``norm2`` is kept anyway)."""
        x = block.convs(x)
        if keeps_only_norm_input(block.norm2, self.predict, x):
            return batch_norm_conv(x, block.norm2, self.predict)
        return self.predict(block.norm2(x))
