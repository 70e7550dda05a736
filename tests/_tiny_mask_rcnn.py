"""The Mask R-CNN demo (configs/mask_rcnn/demo_r18_synthetic_coco.py) shrunk
to 64 x 80 images and a few iterations, for the tests that train it end to
end (test_preemption.py, test_detection_reliability.py).

The lr schedule's warmup and step fall inside the run; validation (with
precise BN first, from the demo's custom hooks) follows iterations 3 and 6.
"""
import os

from spark_mm.datasets.synthetic import make_synthetic_coco

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MASK_RCNN_DEMO = os.path.join(ROOT, 'configs', 'mask_rcnn',
                              'demo_r18_synthetic_coco.py')
TRAIN_IMAGES, BATCH = 8, 2

_CONFIG = '''
_base_ = [{demo!r}]
randomness = dict(seed=7)
model = dict(backbone=dict(init_cfg=None))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomChoiceResize', scales=[(160, 64), (160, 80), (160, 96)],
         keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
train_dataloader = dict(
    batch_size={batch}, num_workers={workers}, persistent_workers={persistent},
    dataset=dict(data_root={data_root!r}, pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root={data_root!r}))
val_evaluator = dict(ann_file={data_root!r} + 'annotations/instances_val2017.json')
test_cfg = None
test_dataloader = None
test_evaluator = None
train_cfg = dict(max_iters={iters}, val_interval=3)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=3),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end={iters},
         milestones=[6], gamma=0.5)
]
log_processor = dict(by_epoch=False, window_size=1)
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(type='spark_mm.AtomicCheckpointHook', by_epoch=False,
                    interval={save_every}, max_keep_ckpts=-1))
'''


def make_tiny_coco(folder) -> str:
    """The synthetic COCO split the tiny config reads; its data root."""
    data_root = os.path.join(str(folder), 'coco') + '/'
    make_synthetic_coco(data_root, num_train=TRAIN_IMAGES, num_val=1,
                        image_size=(64, 80), seed=3)
    return data_root


def write_tiny_mask_rcnn(path, data_root: str, iters: int,
                         save_every: int = None, workers: int = 0,
                         custom_hooks: str = None) -> str:
    """Write the tiny config to ``path``: ``iters`` iterations, a checkpoint
    every ``save_every`` (default: at the end), ``workers`` persistent data
    workers; ``custom_hooks`` (config text) replaces the demo's list."""
    text = _CONFIG.format(
        demo=MASK_RCNN_DEMO, data_root=data_root, iters=iters, batch=BATCH,
        save_every=save_every or iters, workers=workers,
        persistent=workers > 0)
    if custom_hooks is not None:
        text += f'custom_hooks = {custom_hooks}\n'
    with open(path, 'w') as file:
        file.write(text)
    return str(path)
