"""A small, deterministic semantic-segmentation dataset in ADE20K's layout.

mmseg's ``ADE20KDataset`` reads it unchanged (``reduce_zero_label=True``)::

    <out>/images/training/ADE_train_00000001.jpg ...
    <out>/images/validation/ADE_val_00000001.jpg ...
    <out>/annotations/training/ADE_train_00000001.png      (uint8 labels)
    <out>/annotations/validation/ADE_val_00000001.png

Labels follow ADE20K: 0 is "other" (ignored by the metric), 1..5 are ADE20K's
first five classes, so the dataset is ``ADE20KDataset`` with
``metainfo=dict(classes=CLASSES)``. Each image is a class-1 background with
up to four shapes of classes 2..5 and, sometimes, a small unlabelled (0)
patch; every class has its own colour (with noise), so a few fine-tuning
iterations can learn it. The same seed gives identical files.
"""
import os
from typing import Dict

import cv2
import numpy as np

# ADE20K's classes 1..5 (mmseg ADE20KDataset.METAINFO order)
CLASSES = ('wall', 'building', 'sky', 'floor', 'tree')
# BGR base colour of each label 1..5
COLOURS = {1: (90, 90, 90), 2: (40, 40, 200), 3: (220, 160, 60),
           4: (60, 190, 60), 5: (200, 60, 200)}
SPLITS = {'training': 'ADE_train', 'validation': 'ADE_val'}


def _shape_mask(rng: np.random.RandomState, label: int, size: int) -> np.ndarray:
    """A filled shape of ``label`` (2 rectangle, 3 ellipse, 4 triangle, 5 band)."""
    mask = np.zeros((size, size), np.uint8)
    w, h = rng.uniform(0.25, 0.5, size=2) * size
    cx = rng.uniform(w / 2, size - w / 2)
    cy = rng.uniform(h / 2, size - h / 2)
    if label == 2:
        cv2.rectangle(mask, (int(cx - w / 2), int(cy - h / 2)),
                      (int(cx + w / 2), int(cy + h / 2)), 1, -1)
    elif label == 3:
        cv2.ellipse(mask, (int(cx), int(cy)), (int(w / 2), int(h / 2)), 0, 0,
                    360, 1, -1)
    elif label == 4:
        points = np.array([[cx, cy - h / 2], [cx + w / 2, cy + h / 2],
                           [cx - w / 2, cy + h / 2]], np.int32)
        cv2.fillPoly(mask, [points], 1)
    else:
        top = int(cy - size * 0.08)
        mask[max(top, 0):top + int(size * 0.16)] = 1
    return mask.astype(bool)


def _draw(rng: np.random.RandomState, size: int):
    """One BGR image and its label map."""
    labels = np.ones((size, size), np.uint8)
    for label in rng.choice([2, 3, 4, 5], size=rng.randint(1, 5), replace=False):
        labels[_shape_mask(rng, int(label), size)] = label
    if rng.rand() < 0.5:  # an unlabelled object ("other", ignored)
        y, x = rng.randint(0, size - size // 8, size=2)
        labels[y:y + size // 8, x:x + size // 8] = 0
    image = np.zeros((size, size, 3), np.int32)
    for label, colour in COLOURS.items():
        image[labels == label] = colour
    image[labels == 0] = rng.randint(0, 256, size=3)
    image += rng.randint(-25, 26, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), labels


def make_synthetic_ade20k(out_dir: str, num_train: int = 32, num_val: int = 8,
                          size: int = 64, seed: int = 0) -> Dict[str, int]:
    """Write the dataset under ``out_dir``; returns the number of images per split."""
    rng = np.random.RandomState(seed)
    counts = {'training': num_train, 'validation': num_val}
    for split, stem in SPLITS.items():
        image_dir = os.path.join(out_dir, 'images', split)
        label_dir = os.path.join(out_dir, 'annotations', split)
        os.makedirs(image_dir, exist_ok=True)
        os.makedirs(label_dir, exist_ok=True)
        for index in range(1, counts[split] + 1):
            image, labels = _draw(rng, size)
            name = f'{stem}_{index:08d}'
            cv2.imwrite(os.path.join(image_dir, name + '.jpg'), image,
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(os.path.join(label_dir, name + '.png'), labels)
    return counts
