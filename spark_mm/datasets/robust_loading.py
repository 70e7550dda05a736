"""Image loading for real-world folders: any channel count, unreadable files.

One corrupt JPEG among a million should cost one warning, not a crashed run
hours into an epoch. :class:`LoadImageOrSkip` returns ``None`` for a file that
cannot be read or decoded; mmengine's ``BaseDataset`` then draws another
sample in its place (training mode; at test time a ``None`` still fails).

A folder may also mix grayscale, RGB and RGBA files while the model takes a
fixed number of channels: ``channels=N`` brings every image to N channels
(:func:`to_channels`) or refuses it with a message naming the file.
"""
from typing import Optional

import cv2
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine.logging import print_log

from ..errors import SparKInputError
from ..registry import TRANSFORMS


def to_channels(img: np.ndarray, channels: int, path: str = '') -> np.ndarray:
    """``img`` (H, W) or (H, W, C), colour order BGR(A), as (H, W, channels).

    1 channel: BGR(A) becomes gray. 3: gray is repeated, alpha dropped. 4
    (BGRA): an opaque alpha is added to BGR or gray. Any other N: gray is
    repeated. Other combinations raise ``ValueError`` naming the file.
    """
    if img.ndim == 2:
        img = img[..., None]
    have = img.shape[2]
    if have == channels:
        return img
    if channels == 1 and have in (3, 4):
        return cv2.cvtColor(np.ascontiguousarray(img[..., :3]),
                            cv2.COLOR_BGR2GRAY)[..., None]
    if channels == 3 and have == 4:
        return np.ascontiguousarray(img[..., :3])
    if channels == 4 and have in (1, 3):
        bgr = np.repeat(img, 3, axis=2) if have == 1 else img
        opaque = np.iinfo(img.dtype).max if img.dtype.kind in 'ui' else 1.0
        return np.concatenate([bgr, np.full_like(img[..., :1], opaque)], axis=2)
    if have == 1:
        return np.repeat(img, channels, axis=2)
    raise SparKInputError(f'{path or "image"} has {have} channels; the model takes '
                          f'{channels} (gray, BGR and BGRA files are converted)')


@TRANSFORMS.register_module()
class LoadImageChannels(LoadImageFromFile):
    """``LoadImageFromFile`` (same arguments) with a fixed channel count.

    Args:
        channels: None keeps ``LoadImageFromFile``'s behaviour (``color_type``
            decides, 3 channels by default). 3 reads every file as BGR (gray
            repeated, alpha dropped); any other N reads the file unchanged
            (bit depth kept) and converts it with :func:`to_channels`.
    """

    def __init__(self, channels: Optional[int] = None, **kwargs):
        if channels is not None:
            if channels < 1:
                raise SparKInputError(f'channels must be >= 1, got {channels}')
            kwargs['color_type'] = 'color' if channels == 3 else 'unchanged'
        super().__init__(**kwargs)
        self.channels = channels

    def transform(self, results: dict) -> Optional[dict]:
        results = super().transform(results)
        if results is not None and self.channels is not None:
            results['img'] = to_channels(results['img'], self.channels,
                                         results.get('img_path', ''))
        return results


@TRANSFORMS.register_module()
class LoadImageOrSkip(LoadImageChannels):
    """``LoadImageChannels`` (same arguments) that skips unreadable images.

    Each skipped file gets a warning naming it and the running count of this
    process (``num_skipped``; every dataloader worker counts its own).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.num_skipped = 0

    def transform(self, results: dict):
        try:
            loaded = super().transform(results)
            reason = 'empty or undecodable file' if loaded is None else None
        except Exception as error:  # noqa: BLE001  any reader/decoder failure
            loaded, reason = None, f'{type(error).__name__}: {error}'
        if loaded is not None:
            return loaded
        self.num_skipped += 1
        print_log(
            f'skipped unreadable image {results.get("img_path")!r} '
            f'({" ".join(str(reason).split())}); {self.num_skipped} skipped so '
            'far in this process; another image is drawn in its place; '
            'replace or delete the file', logger='current', level=30)
        return None
