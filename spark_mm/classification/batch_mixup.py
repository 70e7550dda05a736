"""Mixup / CutMix exactly as SparK's ImageNet fine-tuning mixes a batch.

Official ``downstream_imagenet/mixup.py`` (``BatchMixup``, mode 'batch'), as
``util.py`` configures it: one draw per batch; with probability ``prob`` the
batch is mixed, by CutMix with probability ``switch_prob`` (lambda ~
Beta(cutmix_alpha)) else by mixup (lambda ~ Beta(mixup_alpha)); every image
is mixed with the image at the mirrored position of the batch (``x.flip(0)``);
the CutMix box is a square-ratio box of side ``sqrt(1 - lambda)`` around a
uniform centre, clipped to the image, and lambda is corrected to the area
actually kept. mmpretrain's ``Mixup``/``CutMix`` pair images by a random
permutation instead; this augment keeps the official pairing and draws its
random numbers (numpy) in the official order. Label smoothing is the loss's
(``LabelSmoothLoss``, mode 'original': the same target as the official one).
"""
from typing import Tuple

import numpy as np
import torch
from mmpretrain.registry import BATCH_AUGMENTS

from ..errors import SparKInputError


@BATCH_AUGMENTS.register_module()
class SparKBatchMixup:
    """Args: mixup_alpha, cutmix_alpha (a value <= 0 turns that one off),
    prob (of mixing a batch at all), switch_prob (CutMix instead of mixup
    when both are on). Official values: cutmix_alpha 1.0, prob 1.0,
    switch_prob 0.5, mixup_alpha from ``arg.py`` (0.1 ResNets, 0.8 ConvNeXt).
    """

    def __init__(self, mixup_alpha: float, cutmix_alpha: float = 1.0,
                 prob: float = 1.0, switch_prob: float = 0.5):
        if mixup_alpha <= 0 and cutmix_alpha <= 0:
            raise SparKInputError('SparKBatchMixup needs mixup_alpha > 0 or '
                                  'cutmix_alpha > 0')
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.prob, self.switch_prob = prob, switch_prob

    def draw(self) -> Tuple[float, bool]:
        """(lambda, use CutMix) for one batch; lambda 1 means no mixing."""
        if np.random.rand() >= self.prob:
            return 1.0, False
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = bool(np.random.rand() < self.switch_prob)
        else:
            use_cutmix = self.cutmix_alpha > 0
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        return float(np.random.beta(alpha, alpha)), use_cutmix

    @staticmethod
    def cutmix_box(height: int, width: int, lam: float):
        """(top, bottom, left, right) of the pasted box, and the lambda of the
        area kept."""
        side = np.sqrt(1.0 - lam)
        box_h, box_w = int(height * side), int(width * side)
        cy, cx = np.random.randint(0, height), np.random.randint(0, width)
        top, bottom = np.clip([cy - box_h // 2, cy + box_h // 2], 0, height)
        left, right = np.clip([cx - box_w // 2, cx + box_w // 2], 0, width)
        kept = 1.0 - (bottom - top) * (right - left) / float(height * width)
        return (int(top), int(bottom), int(left), int(right)), kept

    def __call__(self, inputs: torch.Tensor, scores: torch.Tensor
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
        """inputs (B, C, H, W), one-hot scores (B, num_classes)."""
        scores = scores.float()
        lam, use_cutmix = self.draw()
        if lam == 1.0:
            return inputs, scores
        partner = inputs.flip(0)
        if use_cutmix:
            (top, bottom, left, right), lam = self.cutmix_box(
                inputs.shape[-2], inputs.shape[-1], lam)
            inputs = inputs.clone()
            inputs[..., top:bottom, left:right] = \
                partner[..., top:bottom, left:right]
        else:
            inputs = lam * inputs + (1.0 - lam) * partner
        return inputs, lam * scores + (1.0 - lam) * scores.flip(0)
