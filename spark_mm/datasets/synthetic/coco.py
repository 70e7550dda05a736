"""A small, deterministic COCO-format instance-segmentation dataset.

Images hold a few non-overlapping filled shapes (rectangles, ellipses,
triangles) on a noisy background; every shape is drawn from exactly the
polygon written to the annotation, so masks, boxes and areas agree with the
pixels. The layout is mmdet's COCO layout, so ``CocoDataset`` and
``CocoMetric`` read it unchanged::

    <out>/train2017/000000000001.png ...
    <out>/val2017/...
    <out>/annotations/instances_train2017.json
    <out>/annotations/instances_val2017.json

The same seed gives byte-identical files (PNG, sorted JSON).
"""
import json
import os
from typing import Dict, List, Tuple

import cv2
import numpy as np

CATEGORIES = [
    dict(id=1, name='rectangle', supercategory='shape'),
    dict(id=2, name='ellipse', supercategory='shape'),
    dict(id=3, name='triangle', supercategory='shape'),
]
SPLITS = ('train2017', 'val2017')


def _shape_polygon(rng: np.random.RandomState, category: int, cx: float,
                   cy: float, w: float, h: float) -> np.ndarray:
    """Vertices (k, 2) of a shape of ``category`` in the box around cx, cy."""
    if category == 1:
        return np.array([[cx - w / 2, cy - h / 2], [cx + w / 2, cy - h / 2],
                         [cx + w / 2, cy + h / 2], [cx - w / 2, cy + h / 2]])
    if category == 2:
        angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        return np.stack([cx + w / 2 * np.cos(angles),
                         cy + h / 2 * np.sin(angles)], axis=1)
    apex = cx + (rng.rand() - 0.5) * w
    return np.array([[apex, cy - h / 2], [cx + w / 2, cy + h / 2],
                     [cx - w / 2, cy + h / 2]])


def _draw_image(rng: np.random.RandomState, height: int, width: int,
                max_objects: int) -> Tuple[np.ndarray, List[dict]]:
    """One BGR image and its objects (category, integer polygon)."""
    base = rng.randint(40, 200, size=3)
    noise = rng.randint(-20, 21, size=(height, width, 3))
    image = np.clip(base + noise, 0, 255).astype(np.uint8)
    occupied = np.zeros((height, width), np.uint8)
    objects = []
    for _ in range(rng.randint(1, max_objects + 1)):
        for _attempt in range(20):
            category = int(rng.randint(1, len(CATEGORIES) + 1))
            w = rng.uniform(0.18, 0.45) * width
            h = rng.uniform(0.18, 0.45) * height
            cx = rng.uniform(w / 2 + 1, width - w / 2 - 1)
            cy = rng.uniform(h / 2 + 1, height - h / 2 - 1)
            polygon = np.round(_shape_polygon(rng, category, cx, cy, w,
                                              h)).astype(np.int32)
            mask = np.zeros_like(occupied)
            cv2.fillPoly(mask, [polygon], 1)
            # a 2-pixel margin keeps every instance fully visible
            grown = cv2.dilate(mask, np.ones((5, 5), np.uint8))
            if not (grown & occupied).any():
                break
        else:
            continue
        occupied |= grown
        colour = [int(c) for c in (base + 128 + rng.randint(-40, 41, 3)) % 256]
        cv2.fillPoly(image, [polygon], colour)
        objects.append(dict(category_id=category, polygon=polygon))
    return image, objects


def _annotation(obj: dict, ann_id: int, image_id: int) -> dict:
    polygon = obj['polygon'].astype(np.float64)
    x0, y0 = polygon.min(axis=0)
    x1, y1 = polygon.max(axis=0)
    xs, ys = polygon[:, 0], polygon[:, 1]
    area = 0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1)))
    return dict(
        id=ann_id,
        image_id=image_id,
        category_id=obj['category_id'],
        segmentation=[[float(v) for v in polygon.reshape(-1)]],
        area=float(area),
        bbox=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
        iscrowd=0)


def make_synthetic_coco(out_dir: str,
                        num_train: int = 64,
                        num_val: int = 16,
                        image_size: Tuple[int, int] = (160, 192),
                        max_objects: int = 3,
                        seed: int = 0) -> Dict[str, str]:
    """Write the dataset under ``out_dir``; returns split -> annotation file.

    ``image_size`` is (height, width). Train and val use independent streams
    of the same seed, so changing ``num_train`` leaves val unchanged.
    """
    height, width = image_size
    os.makedirs(os.path.join(out_dir, 'annotations'), exist_ok=True)
    ann_files = {}
    for split_index, (split, count) in enumerate(
            zip(SPLITS, (num_train, num_val))):
        rng = np.random.RandomState(seed * 1000 + split_index)
        os.makedirs(os.path.join(out_dir, split), exist_ok=True)
        images, annotations = [], []
        for image_id in range(1, count + 1):
            image, objects = _draw_image(rng, height, width, max_objects)
            file_name = f'{image_id:012d}.png'
            cv2.imwrite(os.path.join(out_dir, split, file_name), image)
            images.append(
                dict(id=image_id, file_name=file_name, height=height,
                     width=width))
            for obj in objects:
                annotations.append(
                    _annotation(obj, len(annotations) + 1, image_id))
        ann_file = os.path.join(out_dir, 'annotations',
                                f'instances_{split}.json')
        with open(ann_file, 'w') as f:
            json.dump(
                dict(images=images, annotations=annotations,
                     categories=CATEGORIES,
                     info=dict(description='spark_mm synthetic shapes',
                               seed=seed)),
                f, sort_keys=True)
        ann_files[split] = ann_file
    return ann_files
