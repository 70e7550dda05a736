"""Random erasing in timm's ``mode='pixel'``, which SparK's fine-tuning uses.

Official ``downstream_imagenet/data.py`` builds its training transform with
timm's ``create_transform(re_prob=0.25, re_mode='pixel', re_count=1)``: with
probability 0.25 one rectangle (area 2%-33% of the image, log-uniform aspect
ratio in [0.3, 1/0.3], up to 10 tries to fit) of the *normalized* image is
replaced by per-pixel N(0, 1) noise. mmpretrain's ``RandomErasing`` erases
before normalization and clips the noise to uint8 [0, 255]. This transform
writes N(mean, std) per pixel into a float image instead, unclipped, so after
the data preprocessor's ``(x - mean) / std`` the rectangle holds exactly
N(0, 1) noise, as in the official code.
"""
import math
from typing import Sequence

import numpy as np
from mmcv.transforms import BaseTransform

from ..errors import SparKInputError
from ..registry import TRANSFORMS


@TRANSFORMS.register_module()
class PixelRandomErasing(BaseTransform):
    """Erase one random rectangle with per-pixel normal noise.

    Args:
        mean, std: the data preprocessor's per-channel values, in the channel
            order of ``results['img']`` at this point (BGR after
            ``LoadImageFromFile``).
        erase_prob: probability of erasing (official 0.25).
        min_area_ratio, max_area_ratio: erased share of the image.
        aspect_range: (min, max) aspect ratio, sampled uniformly in log space.
        max_attempts: rectangles tried before giving up.

    The image always leaves as float32 (erased or not), so that a batch holds
    one dtype.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float],
                 erase_prob: float = 0.25, min_area_ratio: float = 0.02,
                 max_area_ratio: float = 1 / 3,
                 aspect_range: Sequence[float] = (0.3, 1 / 0.3),
                 max_attempts: int = 10):
        if not 0 <= erase_prob <= 1:
            raise SparKInputError(f'erase_prob must be in [0, 1], got {erase_prob}')
        if not 0 < min_area_ratio <= max_area_ratio <= 1:
            raise SparKInputError('need 0 < min_area_ratio <= max_area_ratio <= 1, '
                                  f'got {min_area_ratio}, {max_area_ratio}')
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.erase_prob = erase_prob
        self.area_range = (min_area_ratio, max_area_ratio)
        self.log_aspect_range = (math.log(aspect_range[0]),
                                 math.log(aspect_range[1]))
        self.max_attempts = max_attempts

    def transform(self, results: dict) -> dict:
        img = results['img'].astype(np.float32)
        if np.random.rand() < self.erase_prob:
            height, width = img.shape[:2]
            for _ in range(self.max_attempts):
                area = np.random.uniform(*self.area_range) * height * width
                aspect = math.exp(np.random.uniform(*self.log_aspect_range))
                h = int(round(math.sqrt(area * aspect)))
                w = int(round(math.sqrt(area / aspect)))
                if h < height and w < width:
                    top = np.random.randint(0, height - h + 1)
                    left = np.random.randint(0, width - w + 1)
                    noise = np.random.standard_normal(
                        (h, w, img.shape[2])).astype(np.float32)
                    img[top:top + h, left:left + w] = (
                        noise * self.std[:img.shape[2]] +
                        self.mean[:img.shape[2]])
                    break
        results['img'] = img
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(erase_prob={self.erase_prob}, '
                f'area={self.area_range}, mean={self.mean.tolist()}, '
                f'std={self.std.tolist()})')
