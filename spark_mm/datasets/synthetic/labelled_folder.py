"""A generated labelled image folder (one class per sub-folder), so the
classification demos and tests need no download.

Four classes that a small network can learn from a few dozen images: each has
its own colour family and pattern (horizontal stripes, vertical stripes,
checkerboard, disc), drawn with random jitter in position, scale, brightness
and background. The layout is mmpretrain ``CustomDataset``'s:
``<root>/{train,val}/<class>/*.png``. Deterministic (seeded); written to a
temporary folder and renamed, so parallel ranks can race safely.
"""
import os
import shutil
import tempfile

import numpy as np
from mmpretrain.datasets import CustomDataset
from PIL import Image, ImageDraw

from ...errors import SparKInputError
from ...registry import DATASETS

CLASSES = ('h_stripes', 'v_stripes', 'checker', 'disc')
_COLOURS = ((200, 60, 50), (50, 170, 70), (60, 80, 200), (210, 190, 40))


def _draw(rng: np.random.RandomState, label: int, size: int) -> Image.Image:
    background = rng.randint(0, 90, size=3)
    image = Image.new('RGB', (size, size), tuple(int(c) for c in background))
    draw = ImageDraw.Draw(image)
    colour = np.clip(np.array(_COLOURS[label]) * rng.uniform(0.75, 1.2) +
                     rng.randint(-25, 26, size=3), 0, 255)
    colour = tuple(int(c) for c in colour)
    step = int(rng.randint(max(3, size // 16), max(4, size // 6)))
    offset = int(rng.randint(0, step))
    if label == 0:
        for y in range(offset - step, size, 2 * step):
            draw.rectangle((0, y, size, y + step - 1), fill=colour)
    elif label == 1:
        for x in range(offset - step, size, 2 * step):
            draw.rectangle((x, 0, x + step - 1, size), fill=colour)
    elif label == 2:
        for y in range(offset - step, size, step):
            for x in range(offset - step, size, step):
                if ((x - offset) // step + (y - offset) // step) % 2 == 0:
                    draw.rectangle((x, y, x + step - 1, y + step - 1),
                                   fill=colour)
    else:
        radius = rng.uniform(0.25, 0.45) * size
        cy, cx = rng.uniform(radius, size - radius, size=2)
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius),
                     fill=colour)
    pixels = np.asarray(image, dtype=np.float32)
    pixels += rng.normal(0, 8, size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_labelled_folder(root: str, num_train: int = 24, num_val: int = 12,
                         image_size: int = 64, seed: int = 0) -> str:
    """Write ``num_train`` / ``num_val`` images per class into
    ``root/train/<class>/`` and ``root/val/<class>/``; returns ``root``.

    Does nothing when ``root`` already holds a complete folder of this size.
    """
    if num_train < 1 or num_val < 1 or image_size < 8:
        raise SparKInputError('make_labelled_folder needs num_train, num_val >= 1 '
                              f'and image_size >= 8, got {num_train}, {num_val}, '
                              f'{image_size}')
    expected = {'train': num_train, 'val': num_val}
    if all(os.path.isdir(os.path.join(root, split, name)) and
           len(os.listdir(os.path.join(root, split, name))) == count
           for split, count in expected.items() for name in CLASSES):
        return root
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix='.labelled_folder_', dir=parent)
    rng = np.random.RandomState(seed)
    for split, count in expected.items():
        for label, name in enumerate(CLASSES):
            folder = os.path.join(staging, split, name)
            os.makedirs(folder)
            for index in range(count):
                _draw(rng, label, image_size).save(
                    os.path.join(folder, f'{name}_{index:04d}.png'))
    if os.path.isdir(root):
        shutil.rmtree(root, ignore_errors=True)
    try:
        os.rename(staging, root)
    except OSError:  # another process won the race: keep its folder
        shutil.rmtree(staging, ignore_errors=True)
    return root


@DATASETS.register_module()
class SparKDemoLabelledImages(CustomDataset):
    """One split of the generated folder, written on first use.

    Args:
        root: the folder (``<root>/{train,val}/<class>/*.png``); generated
            with the sizes below when it does not exist, used as it is when it
            does (so tests may write a smaller one first).
        split: 'train' or 'val'.
        num_train, num_val, image_size, seed: of :func:`make_labelled_folder`.
        **kwargs: the rest of ``CustomDataset``'s arguments (``pipeline``...).
    """

    def __init__(self, root: str = 'data/spark_cls_demo', split: str = 'train',
                 num_train: int = 24, num_val: int = 12, image_size: int = 64,
                 seed: int = 0, **kwargs):
        if split not in ('train', 'val'):
            raise SparKInputError(f"split must be 'train' or 'val', got {split!r}")
        if not os.path.isdir(root):
            make_labelled_folder(root, num_train, num_val, image_size, seed)
        super().__init__(data_root=root, data_prefix=split, with_label=True,
                         **kwargs)
