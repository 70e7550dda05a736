"""Any folder of images as an unlabelled pretraining set.

Every image file under ``data_root``, at any depth and of any size, is one
sample; there are no labels and no required layout. Before training, the
folder is scanned once (file headers only, no decoding): files that cannot be
opened and images smaller than ``min_size`` on a side are left out, with one
warning that counts them and names a few. Files that pass the header check but
fail to decode later are skipped at load time by ``LoadImageOrSkip``.
"""
import logging
import os
from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

from mmengine.dataset import BaseDataset
from mmengine.logging import print_log
from PIL import Image

from ..errors import DataNotFoundError, SparKInputError
from ..registry import DATASETS
from .folder_walk import walk_each_folder_once

FOLDER_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.pgm', '.pbm', '.bmp',
                     '.tif', '.tiff', '.webp')


@dataclass
class FolderScan:
    """The outcome of :func:`scan_image_folder` (paths sorted)."""
    images: List[str] = field(default_factory=list)
    unreadable: List[Tuple[str, str]] = field(default_factory=list)  # path, why
    tiny: List[Tuple[str, Tuple[int, int]]] = field(default_factory=list)  # path, (w, h)

    def summary(self, min_size: int, limit: int = 3) -> str:
        parts = []
        if self.unreadable:
            named = ', '.join(f'{path} ({why})'
                              for path, why in self.unreadable[:limit])
            parts.append(f'{len(self.unreadable)} unreadable (e.g. {named})')
        if self.tiny:
            named = ', '.join(f'{path} ({w}x{h})' for path, (w, h) in self.tiny[:limit])
            parts.append(f'{len(self.tiny)} smaller than {min_size} px on a side '
                         f'(e.g. {named})')
        return '; '.join(parts)


def list_image_files(root: str, extensions: Sequence[str] = FOLDER_EXTENSIONS
                     ) -> List[str]:
    """Image files under ``root`` (recursive, symlinks followed, each real
    folder once, sorted).

    Hidden files and folders (``.thumbnails``, macOS ``._x.jpg``) are ignored.
    """
    extensions = tuple(ext.lower() for ext in extensions)
    found = []
    for folder, subfolders, files in walk_each_folder_once(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith('.'))
        found.extend(os.path.join(folder, name) for name in sorted(files)
                     if not name.startswith('.') and name.lower().endswith(extensions))
    return found


def _header_size(path: str) -> Tuple[int, int]:
    """(width, height) from the file header; raises if it is not an image."""
    if os.path.getsize(path) == 0:
        raise SparKInputError('empty file')
    with Image.open(path) as image:
        return image.size


def scan_image_folder(root: str, min_size: int = 32,
                      extensions: Sequence[str] = FOLDER_EXTENSIONS) -> FolderScan:
    """Sort the image files under ``root`` into usable, unreadable and tiny."""
    scan = FolderScan()
    for path in list_image_files(root, extensions):
        try:
            width, height = _header_size(path)
        except Exception as error:  # noqa: BLE001  any reader failure
            reason = ' '.join(str(error).split()) or type(error).__name__
            scan.unreadable.append((path, reason[:80]))
            continue
        if min(width, height) < min_size:
            scan.tiny.append((path, (width, height)))
        else:
            scan.images.append(path)
    return scan


def check_image_folder(data_root: str, batch_size: int, world_size: int = 1,
                       min_size: int = 32,
                       extensions: Sequence[str] = FOLDER_EXTENSIONS) -> FolderScan:
    """Raise a one-line error when ``data_root`` cannot feed one batch.

    The message names the folder, what is wrong with its files and the fix.
    """
    if not os.path.isdir(data_root):
        raise DataNotFoundError(
            f'image folder {data_root!r} does not exist; pass the folder of '
            'your images with --data-root DIR (or --cfg-options data_root=DIR)')
    scan = scan_image_folder(data_root, min_size, extensions)
    found = len(scan.images) + len(scan.unreadable) + len(scan.tiny)
    if found == 0:
        raise DataNotFoundError(
            f'image folder {data_root!r} holds no images ({", ".join(extensions)}, '
            'searched recursively); copy or link the images there or fix '
            '--data-root')
    needed = batch_size * world_size
    if len(scan.images) < needed:
        bad = scan.summary(min_size)
        raise SparKInputError(
            f'image folder {data_root!r} has {len(scan.images)} usable images of '
            f'{found}' + (f' ({bad})' if bad else '') + f', fewer than one batch '
            f'({batch_size} per process x {world_size} processes); add images, '
            'fix or remove the broken ones, or lower the batch with --cfg-options '
            f'train_dataloader.batch_size={max(1, len(scan.images) // world_size)}'
            + (f' (train_dataloader.dataset.min_size below {min_size} keeps '
               'the small images)' if scan.tiny else ''))
    return scan


@DATASETS.register_module()
class UnlabeledImageFolder(BaseDataset):
    """Every image under ``data_root`` (recursively), without labels.

    Args:
        data_root: the folder.
        min_size: images with a side shorter than this (pixels) are left out;
            the default is the total stride of ResNet/ConvNeXt, one patch.
        extensions: file name endings that count as images (case-insensitive).
        pipeline, serialize_data, ...: as mmengine's ``BaseDataset``.
    """

    def __init__(self, data_root: str, min_size: int = 32,
                 extensions: Sequence[str] = FOLDER_EXTENSIONS, **kwargs):
        self.min_size = min_size
        self.extensions = tuple(extensions)
        super().__init__(data_root=data_root, **kwargs)

    def load_data_list(self) -> List[dict]:
        scan = scan_image_folder(self.data_root, self.min_size, self.extensions)
        left_out = scan.summary(self.min_size)
        found = f'found {len(scan.images)} images in {self.data_root}'
        if left_out:
            print_log(f'{found}; left out: {left_out}', logger='current',
                      level=logging.WARNING)
        else:
            print_log(found, logger='current')
        if not scan.images:
            raise DataNotFoundError(
                f'image folder {self.data_root!r} holds no usable images'
                + (f' ({left_out})' if left_out else '') + '; fix --data-root')
        return [dict(img_path=path) for path in scan.images]


def folder_pretrain_pipeline(input_size, channels: int = 3,
                             crop_scale=(0.67, 1.0), flip: bool = True) -> list:
    """SparK's augmentation for an image folder, as a pipeline config.

    ``input_size`` is (h, w) or an int. The crop's aspect ratio range is
    centred on w/h, so a non-square input (a spectrogram, a line scan) is not
    squeezed; cv2 resizing takes any channel count. Called from the
    ``configs/spark/custom_*.py`` configs.
    """
    height, width = ((input_size, input_size) if isinstance(input_size, int)
                     else tuple(input_size))
    aspect = width / height
    pipeline = [
        dict(type='LoadImageOrSkip', channels=channels),
        dict(type='RandomResizedCrop', scale=(height, width),
             crop_ratio_range=tuple(crop_scale),
             aspect_ratio_range=(3 / 4 * aspect, 4 / 3 * aspect),
             backend='cv2', interpolation='bicubic'),
    ]
    if flip:
        pipeline.append(dict(type='RandomFlip', prob=0.5))
    pipeline.append(dict(type='PackInputs'))
    return pipeline
