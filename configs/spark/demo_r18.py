# Demo: a few minutes of SparK pretraining of a ResNet-18 on 2 CPU cores, on
# images the project generates itself (data/spark_demo). Same code path as the
# full recipes, smaller everything.
_base_ = ['r50_pretrain.py']
from spark_mm.engine.schedulers import spark_param_scheduler  # noqa: E402

input_size = 96
batch_size = 16

model = dict(
    backbone=dict(depth=18, drop_path_rate=0.0),
    neck=dict(width=256),
    input_size=input_size)

train_pipeline = [
    dict(type='LoadImageOrSkip'),
    dict(type='RandomResizedCrop', scale=input_size, crop_ratio_range=(0.67, 1.0),
         backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=2,
    pin_memory=False,
    dataset=dict(_delete_=True, type='SparKDemoImages',
                 data_root='data/spark_demo', num_images=256,
                 pipeline=train_pipeline))

max_epochs = 12
warmup_epochs = 1
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = spark_param_scheduler(max_epochs, warmup_epochs)
train_cfg = dict(max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=batch_size)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=4, max_keep_ckpts=2))
# reconstructions of 4 fixed training images, under a fixed mask, every 64
# iterations: <work_dir>/reconstructions/iter_*.png and the visualizer backends.
# A list replaces the runtime's whole list: the safety hooks of
# _base_/spark_runtime.py are stated again, last (indices 0/1 stay put for
# --cfg-options custom_hooks.1.interval=...).
custom_hooks = [
    dict(type='ExportBackboneHook'),
    dict(type='ReconstructionVisualizationHook', interval=64, num_images=4),
    dict(type='NanGuardHook'), dict(type='StepSeedHook'),
    dict(type='PreemptionHook'),
]

# tools/train.py writes here unless --work-dir says otherwise; the export,
# <work_dir>/backbone.pth, is what the downstream configs read.
work_dir = 'work_dirs/demo_r18'
