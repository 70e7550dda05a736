"""Demo images generated on the fly, so the demo pretraining needs no download.

Each image is a smooth colour gradient with a few random ellipses, rectangles
and stripes: enough structure for a reconstruction loss to fall visibly within
a few hundred steps. Generation is deterministic (seeded) and atomic (written
to a temporary folder, then renamed), so parallel ranks can race safely.
"""
import os
import shutil
import tempfile

import numpy as np
from mmpretrain.datasets import CustomDataset
from PIL import Image, ImageDraw

from ...registry import DATASETS


def _draw_image(rng: np.random.RandomState, height: int, width: int) -> Image.Image:
    top, bottom = rng.randint(0, 256, size=(2, 3))
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    pixels = (top * (1 - ramp) + bottom * ramp) * np.ones((1, width, 1))
    image = Image.fromarray(pixels.astype(np.uint8), 'RGB')
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(2, 6)):
        x0, x1 = sorted(rng.randint(0, width, size=2))
        y0, y1 = sorted(rng.randint(0, height, size=2))
        box = (x0, y0, max(x1, x0 + 6), max(y1, y0 + 6))
        colour = tuple(int(c) for c in rng.randint(0, 256, size=3))
        shape = rng.randint(3)
        if shape == 0:
            draw.ellipse(box, fill=colour)
        elif shape == 1:
            draw.rectangle(box, fill=colour)
        else:
            step = int(rng.randint(4, 12))
            for x in range(box[0], box[2], 2 * step):
                draw.rectangle((x, box[1], x + step - 1, box[3]), fill=colour)
    return image


def make_demo_images(root: str, num_images: int = 256,
                     image_size=(128, 160), seed: int = 0) -> str:
    """Write ``num_images`` PNGs (height, width = ``image_size``) under ``root``.

    Does nothing when ``root`` already holds them.
    """
    if os.path.isdir(root) and len(os.listdir(root)) >= num_images:
        return root
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix='.demo_images_', dir=parent)
    rng = np.random.RandomState(seed)
    height, width = image_size
    for index in range(num_images):
        _draw_image(rng, height, width).save(
            os.path.join(staging, f'demo_{index:05d}.png'))
    try:
        if os.path.isdir(root):
            shutil.rmtree(root)
        os.rename(staging, root)
    except OSError:  # another process finished first; its images are identical
        shutil.rmtree(staging, ignore_errors=True)
    return root


@DATASETS.register_module()
class SparKDemoImages(CustomDataset):
    """Unlabelled demo images under ``data_root``, generated when missing."""

    def __init__(self, data_root: str = 'data/spark_demo', num_images: int = 256,
                 image_size=(128, 160), seed: int = 0, **kwargs):
        make_demo_images(data_root, num_images, tuple(image_size), seed)
        super().__init__(data_root=data_root, with_label=False, **kwargs)
