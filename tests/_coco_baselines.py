"""Reference predictions for COCO bbox AP on a synthetic COCO split, scored by
mmdet's real ``CocoMetric`` (pycocotools): the ground truth itself (AP 1) and
random boxes (what a detector that learnt nothing can reach)."""
import json

import numpy as np
import torch

from spark_mm.datasets.synthetic.coco import CATEGORIES

CLASSES = tuple(category['name'] for category in CATEGORIES)


def _images_and_boxes(ann_file):
    with open(ann_file) as file:
        coco = json.load(file)
    boxes = {image['id']: [] for image in coco['images']}
    for ann in coco['annotations']:
        boxes[ann['image_id']].append(ann)
    return coco['images'], boxes


def coco_bbox_metrics(ann_file, predictions):
    """``CocoMetric`` bbox results for ``predictions``: image id ->
    (xyxy boxes (n, 4), scores (n,), labels (n,) as class indices)."""
    from mmdet.evaluation import CocoMetric
    images, _ = _images_and_boxes(ann_file)
    metric = CocoMetric(ann_file=ann_file, metric='bbox')
    metric.dataset_meta = dict(classes=CLASSES)
    samples = []
    for image in images:
        boxes, scores, labels = predictions[image['id']]
        samples.append(dict(
            img_id=image['id'],
            ori_shape=(image['height'], image['width']),
            pred_instances=dict(
                bboxes=torch.as_tensor(
                    np.asarray(boxes, np.float32)).reshape(-1, 4),
                scores=torch.as_tensor(np.asarray(scores, np.float32)),
                labels=torch.as_tensor(np.asarray(labels, np.int64)))))
    metric.process({}, samples)
    return metric.evaluate(len(samples))


def ground_truth_predictions(ann_file):
    """Every annotated box, its own class, score 1."""
    label_of = {category['id']: index
                for index, category in enumerate(CATEGORIES)}
    images, anns = _images_and_boxes(ann_file)
    predictions = {}
    for image in images:
        boxes = [[x, y, x + w, y + h]
                 for x, y, w, h in (ann['bbox'] for ann in anns[image['id']])]
        labels = [label_of[ann['category_id']] for ann in anns[image['id']]]
        predictions[image['id']] = (boxes, [1.0] * len(boxes), labels)
    return predictions


def random_box_predictions(ann_file, seed, per_image=100):
    """``per_image`` boxes a shape could occupy (sides 18-45% of the image,
    as synthetic_coco draws them; inside the image), random classes and
    scores: a stronger guess than boxes of any size."""
    rng = np.random.RandomState(seed)
    images, _ = _images_and_boxes(ann_file)
    predictions = {}
    for image in images:
        height, width = image['height'], image['width']
        w = rng.uniform(0.18, 0.45, per_image) * width
        h = rng.uniform(0.18, 0.45, per_image) * height
        cx = rng.uniform(w / 2, width - w / 2)
        cy = rng.uniform(h / 2, height - h / 2)
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        predictions[image['id']] = (boxes, rng.rand(per_image),
                                    rng.randint(0, len(CLASSES), per_image))
    return predictions
