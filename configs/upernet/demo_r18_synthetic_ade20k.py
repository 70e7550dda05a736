# CPU demo: the SparK UperNet recipe in miniature. ResNet-18 from the demo
# pretraining (configs/spark/demo_r18.py), the generated ADE20K-layout dataset
# (python -c "from spark_mm.datasets.synthetic import make_synthetic_ade20k;
# make_synthetic_ade20k('data/synthetic_ade20k')"), 64 px crops instead of
# 512, 5 classes, narrow heads (64/32 channels instead of 512/256), 40
# iterations, then mmseg's mIoU. SyncBN as in the full recipe: tools/train.py
# turns it into BN for a single process, dist_train.sh runs it over gloo.
_base_ = './upernet_r50-spark_4xb4-160k_ade20k-512x512.py'

pretrained = 'work_dirs/demo_r18/backbone.pth'
data_root = 'data/synthetic_ade20k'
classes = ('wall', 'building', 'sky', 'floor', 'tree')  # ADE20K's labels 1..5
crop_size = (64, 64)

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        depth=18,
        init_cfg=dict(type='spark_mm.CheckedPretrained',
                      checkpoint=pretrained, prefix=None)),
    decode_head=dict(in_channels=[64, 128, 256, 512], channels=64,
                     num_classes=len(classes)),
    auxiliary_head=dict(in_channels=256, channels=32,
                        num_classes=len(classes)))

# mmseg's ADE20K pipeline at 1/8 scale. No PhotoMetricDistortion: the
# generated classes differ by colour, which its hue jitter would scramble.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(256, 64), ratio_range=(0.75, 1.5),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 64), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(data_root=data_root, metainfo=dict(classes=classes),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=2,
    dataset=dict(data_root=data_root, metainfo=dict(classes=classes),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader

# A few dozen iterations: a higher lr and a short warm-up, the same optimizer,
# layer-wise decay and schedule shape as the full recipe.
max_iters = 40
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=5),
    dict(type='PolyLR', power=1.0, begin=5, end=max_iters, eta_min=0.0,
         by_epoch=False)
]
optim_wrapper = dict(optimizer=dict(lr=2e-3))
default_hooks = dict(
    logger=dict(interval=5),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
randomness = dict(seed=0)
