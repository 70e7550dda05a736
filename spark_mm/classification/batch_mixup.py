"""Mixup / CutMix exactly as SparK's ImageNet fine-tuning mixes a batch.

Official ``downstream_imagenet/mixup.py`` (``BatchMixup``, mode 'batch'), as
``util.py`` configures it: one draw per batch; with probability ``prob`` the
batch is mixed, by CutMix with probability ``switch_prob`` (lambda ~
Beta(cutmix_alpha)) else by mixup (lambda ~ Beta(mixup_alpha)); every image
is mixed with the image at the mirrored position of the batch (``x.flip(0)``);
the CutMix box is a square-ratio box of side ``sqrt(1 - lambda)`` around a
uniform centre, clipped to the image, and lambda is corrected to the area
actually kept (mmpretrain's ``CutMix.cutmix_bbox_and_lam``, the same rule).
Label smoothing is the loss's (``LabelSmoothLoss``, mode 'original': the same
target as the official one).

Kept over mmpretrain's ``RandomBatchAugment([Mixup, CutMix])``, which mixes by
the same distributions but pairs images by ``torch.randperm`` and draws its
numpy numbers in another order: this one equals the official mixup draw for
draw (tests/test_classification.py), so a run can be compared with the
official one batch by batch.
"""
from typing import Tuple

import numpy as np
import torch
from mmpretrain.models.utils.batch_augments import CutMix
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
        # only its box rule is used: lambda is drawn by draw() below
        self.cutmix = CutMix(alpha=1.0, correct_lam=True)

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

    def __call__(self, inputs: torch.Tensor, scores: torch.Tensor
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
        """inputs (B, C, H, W), one-hot scores (B, num_classes)."""
        scores = scores.float()
        lam, use_cutmix = self.draw()
        if lam == 1.0:
            return inputs, scores
        partner = inputs.flip(0)
        if use_cutmix:
            (top, bottom, left, right), lam = self.cutmix.cutmix_bbox_and_lam(
                tuple(inputs.shape[-2:]), lam)
            lam = float(lam)
            inputs = inputs.clone()
            inputs[..., top:bottom, left:right] = \
                partner[..., top:bottom, left:right]
        else:
            inputs = lam * inputs + (1.0 - lam) * partner
        return inputs, lam * scores + (1.0 - lam) * scores.flip(0)
