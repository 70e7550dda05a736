"""Image loading that survives an unreadable file in a large dataset.

One corrupt JPEG among a million should cost one warning, not a crashed run
hours into an epoch. :class:`LoadImageOrSkip` returns ``None`` for a file that
cannot be read or decoded; mmengine's ``BaseDataset`` then draws another
sample in its place (training mode; at test time a ``None`` still fails).
"""
from mmcv.transforms import LoadImageFromFile
from mmengine.logging import print_log

from ..registry import TRANSFORMS


@TRANSFORMS.register_module()
class LoadImageOrSkip(LoadImageFromFile):
    """``LoadImageFromFile`` (same arguments) that skips unreadable images.

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
