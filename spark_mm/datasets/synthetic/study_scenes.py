"""Generated data for the transfer study: many unlabelled scenes, few labels.

Pretraining pays off when unlabelled images are plentiful, labels are scarce,
and both show the same kind of things. Every image here is a scene of the
same world: a shaded, noisy background with clutter (irregular blobs, plain
or textured), and objects of four categories, each a shape with its own
texture in random colours, orientation and scale:

    striped_disc     ellipse, parallel stripes
    checkered_box    rotated rectangle, checkerboard
    dotted_triangle  triangle, dot grid
    ringed_star      five-pointed star, concentric rings

Objects may occlude each other; an annotation is the visible part (an RLE
mask; instances less than ``MIN_VISIBLE`` visible are not annotated and count
as clutter). So neither colour nor texture alone names a category: a
detector must learn shape and texture together, which is what reconstruction
of masked patches can teach from the unlabelled scenes.

Layout written by :func:`make_study_data`::

    <out>/unlabeled/part_00/000000.jpg ...     (nested, mixed sizes, JPEG)
    <out>/coco/train2017/000000000001.png ...  (few labelled images)
    <out>/coco/val2017/...
    <out>/coco/annotations/instances_{train,val}2017.json
    <out>/settings.json                        (the arguments, for the record)

Deterministic: the same settings give the same files.
"""
import json
import os
import shutil
from typing import Dict, List, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from ...errors import SparKInputError

CATEGORIES = [
    dict(id=1, name='striped_disc', supercategory='thing'),
    dict(id=2, name='checkered_box', supercategory='thing'),
    dict(id=3, name='dotted_triangle', supercategory='thing'),
    dict(id=4, name='ringed_star', supercategory='thing'),
]
MIN_VISIBLE = 0.4  # an object less visible than this is not annotated

# The committed settings of the transfer study (tools/transfer_study.py);
# sizes chosen so that the whole study fits about an hour on 2 CPU cores.
STUDY_SETTINGS = dict(
    num_unlabeled=3000,
    unlabeled_size_range=(96, 176),  # each side, pixels
    num_train=48,
    num_val=150,
    labelled_size=(128, 160),  # (h, w)
    max_objects=4,
    seed=0,
)


def _colour(rng) -> np.ndarray:
    return rng.randint(0, 256, size=3).astype(np.float32)


def _texture(rng, kind: str, height: int, width: int, scale: float,
             centre=None) -> np.ndarray:
    """(H, W) float in [0, 1]: the pattern, random phase and angle.

    Rings are concentric around ``centre`` (x, y), else a random point.
    """
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    u = xs * np.cos(angle) + ys * np.sin(angle) + rng.uniform(0, 100)
    v = -xs * np.sin(angle) + ys * np.cos(angle) + rng.uniform(0, 100)
    period = scale * rng.uniform(0.8, 1.25)
    if kind == 'stripes':
        return (np.sin(2 * np.pi * u / period) > 0).astype(np.float32)
    if kind == 'checker':
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    if kind == 'dots':
        du = np.mod(u, period) - period / 2
        dv = np.mod(v, period) - period / 2
        return (du ** 2 + dv ** 2 < (0.3 * period) ** 2).astype(np.float32)
    if kind == 'rings':
        cx, cy = centre if centre is not None else (rng.uniform(0, width),
                                                    rng.uniform(0, height))
        radius = np.sqrt((ys - cy) ** 2 + (xs - cx) ** 2)
        return (np.sin(2 * np.pi * radius / period) > 0).astype(np.float32)
    raise SparKInputError(kind)


TEXTURES = ('stripes', 'checker', 'dots', 'rings')  # category i has TEXTURES[i - 1]


def _shape(rng, category: int, cx: float, cy: float, size: float) -> np.ndarray:
    """Integer polygon (k, 2) of the category's shape around (cx, cy)."""
    angle = rng.uniform(0, 2 * np.pi)
    if category == 1:  # ellipse
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        a, b = size / 2, size / 2 * rng.uniform(0.55, 1.0)
        points = np.stack([a * np.cos(t), b * np.sin(t)], 1)
    elif category == 2:  # rectangle
        a, b = size / 2, size / 2 * rng.uniform(0.5, 1.0)
        points = np.array([[-a, -b], [a, -b], [a, b], [-a, b]])
    elif category == 3:  # triangle
        t = np.array([0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-0.3, 0.3, 3)
        points = np.stack([np.cos(t), np.sin(t)], 1) * size / 2
    else:  # five-pointed star
        t = np.linspace(0, 2 * np.pi, 10, endpoint=False)
        radii = np.where(np.arange(10) % 2 == 0, size / 2, size / 2 * 0.45)
        points = np.stack([radii * np.cos(t), radii * np.sin(t)], 1)
    rotation = np.array([[np.cos(angle), -np.sin(angle)],
                         [np.sin(angle), np.cos(angle)]])
    return np.round(points @ rotation.T + [cx, cy]).astype(np.int32)


def _blob(rng, cx: float, cy: float, size: float) -> np.ndarray:
    """An irregular polygon: clutter that is none of the categories."""
    count = rng.randint(5, 10)
    t = np.sort(rng.uniform(0, 2 * np.pi, count))
    radii = size / 2 * rng.uniform(0.4, 1.0, count)
    return np.round(np.stack([cx + radii * np.cos(t), cy + radii * np.sin(t)],
                             1)).astype(np.int32)


def _background(rng, height: int, width: int) -> np.ndarray:
    """Shaded multi-scale noise in a random tint, (H, W, 3) float."""
    image = np.zeros((height, width, 3), np.float32)
    for cells, weight in ((2, 60.0), (6, 25.0), (20, 10.0)):
        grid = rng.randn(cells + 1, cells + 1, 3).astype(np.float32)
        image += weight * cv2.resize(grid, (width, height),
                                     interpolation=cv2.INTER_CUBIC)
    return image + _colour(rng) * 0.5 + 60


def _paint(image: np.ndarray, mask: np.ndarray, pattern: np.ndarray,
           colour_a: np.ndarray, colour_b: np.ndarray):
    fill = pattern[..., None] * colour_a + (1 - pattern[..., None]) * colour_b
    image[mask] = fill[mask]


def draw_scene(rng, height: int, width: int, max_objects: int
               ) -> Tuple[np.ndarray, List[dict]]:
    """One BGR uint8 scene and its visible objects (category_id, mask)."""
    image = _background(rng, height, width)
    side = min(height, width)
    for _ in range(rng.randint(2, 6)):  # clutter behind and among the objects
        blob = _blob(rng, rng.uniform(0, width), rng.uniform(0, height),
                     side * rng.uniform(0.15, 0.5))
        mask = np.zeros((height, width), np.uint8)
        cv2.fillPoly(mask, [blob], 1)
        if rng.rand() < 0.5:
            pattern = rng.rand(height, width).astype(np.float32)
        else:
            pattern = _texture(rng, TEXTURES[rng.randint(4)], height, width,
                               side * rng.uniform(0.03, 0.12))
        _paint(image, mask.astype(bool), pattern, _colour(rng), _colour(rng))
    owner = np.zeros((height, width), np.int32)  # which object shows at a pixel
    placed = []
    for index in range(1, rng.randint(1, max_objects + 1) + 1):
        category = int(rng.randint(1, len(CATEGORIES) + 1))
        size = side * rng.uniform(0.25, 0.55)
        centre = (rng.uniform(size / 3, width - size / 3),
                  rng.uniform(size / 3, height - size / 3))
        polygon = _shape(rng, category, *centre, size)
        mask = np.zeros((height, width), np.uint8)
        cv2.fillPoly(mask, [polygon], 1)
        mask = mask.astype(bool)
        if mask.sum() < 30:
            continue
        pattern = _texture(rng, TEXTURES[category - 1], height, width,
                           max(4.0, size * rng.uniform(0.12, 0.22)), centre)
        colour_a = _colour(rng)
        colour_b = colour_a * 0.25 + _colour(rng) * 0.75
        _paint(image, mask, pattern, colour_a, colour_b)
        owner[mask] = index
        placed.append((index, category, int(mask.sum())))
    shading = np.linspace(rng.uniform(0.75, 1.0), rng.uniform(1.0, 1.25), width)
    image = image * shading[None, :, None] + rng.randn(height, width, 3) * 6
    image = cv2.GaussianBlur(np.clip(image, 0, 255).astype(np.uint8), (3, 3), 0.6)
    objects = []
    for index, category, area in placed:
        visible = owner == index
        if visible.sum() >= MIN_VISIBLE * area:
            objects.append(dict(category_id=category, mask=visible))
    return image, objects


def _annotation(obj: dict, ann_id: int, image_id: int) -> dict:
    rle = mask_utils.encode(np.asfortranarray(obj['mask'].astype(np.uint8)))
    x, y, w, h = mask_utils.toBbox(rle).tolist()
    return dict(id=ann_id, image_id=image_id, category_id=obj['category_id'],
                segmentation=dict(size=[int(v) for v in rle['size']],
                                  counts=rle['counts'].decode('ascii')),
                area=float(mask_utils.area(rle)), bbox=[x, y, w, h], iscrowd=0)


def _write_coco_split(out_dir: str, split: str, count: int, rng,
                      size: Tuple[int, int], max_objects: int) -> str:
    os.makedirs(os.path.join(out_dir, split), exist_ok=True)
    images, annotations = [], []
    height, width = size
    for image_id in range(1, count + 1):
        image, objects = draw_scene(rng, height, width, max_objects)
        file_name = f'{image_id:012d}.png'
        cv2.imwrite(os.path.join(out_dir, split, file_name), image)
        images.append(dict(id=image_id, file_name=file_name, height=height,
                           width=width))
        annotations.extend(_annotation(obj, len(annotations) + 1, image_id)
                           for obj in objects)
    ann_file = os.path.join(out_dir, 'annotations', f'instances_{split}.json')
    with open(ann_file, 'w') as f:
        json.dump(dict(images=images, annotations=annotations,
                       categories=CATEGORIES,
                       info=dict(description='spark_mm study scenes')),
                  f, sort_keys=True)
    return ann_file


def make_study_data(out_dir: str, num_unlabeled: int = 3000,
                    unlabeled_size_range: Tuple[int, int] = (96, 176),
                    num_train: int = 48, num_val: int = 150,
                    labelled_size: Tuple[int, int] = (128, 160),
                    max_objects: int = 4, seed: int = 0) -> Dict[str, str]:
    """Write the study's data under ``out_dir`` (see the module docstring).

    Each part has its own random stream, so changing one count leaves the
    other parts unchanged. Returns the paths: ``unlabeled``, ``coco``.
    Written into a staging folder and renamed, so an interrupted run leaves
    no half-made data behind.
    """
    settings = dict(num_unlabeled=num_unlabeled,
                    unlabeled_size_range=list(unlabeled_size_range),
                    num_train=num_train, num_val=num_val,
                    labelled_size=list(labelled_size), max_objects=max_objects,
                    seed=seed)
    staging = out_dir.rstrip('/') + '.partial'
    shutil.rmtree(staging, ignore_errors=True)
    rng = np.random.RandomState(seed * 1000 + 7)
    low, high = unlabeled_size_range
    for index in range(num_unlabeled):
        folder = os.path.join(staging, 'unlabeled', f'part_{index // 500:02d}')
        os.makedirs(folder, exist_ok=True)
        height, width = rng.randint(low, high + 1, size=2)
        image, _ = draw_scene(rng, int(height), int(width), max_objects)
        cv2.imwrite(os.path.join(folder, f'{index:06d}.jpg'), image,
                    [cv2.IMWRITE_JPEG_QUALITY, 92])
    coco = os.path.join(staging, 'coco')
    os.makedirs(os.path.join(coco, 'annotations'), exist_ok=True)
    for offset, (split, count) in enumerate((('train2017', num_train),
                                             ('val2017', num_val))):
        _write_coco_split(coco, split, count,
                          np.random.RandomState(seed * 1000 + offset),
                          tuple(labelled_size), max_objects)
    with open(os.path.join(staging, 'settings.json'), 'w') as f:
        json.dump(settings, f, indent=1, sort_keys=True)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.rename(staging, out_dir)
    return dict(unlabeled=os.path.join(out_dir, 'unlabeled'),
                coco=os.path.join(out_dir, 'coco'))


def study_data_matches(out_dir: str, **settings) -> bool:
    """Whether ``out_dir`` holds data made with exactly these settings."""
    path = os.path.join(out_dir, 'settings.json')
    if not os.path.isfile(path):
        return False
    with open(path) as f:
        written = json.load(f)
    wanted = {key: list(value) if isinstance(value, tuple) else value
              for key, value in settings.items()}
    return written == wanted
