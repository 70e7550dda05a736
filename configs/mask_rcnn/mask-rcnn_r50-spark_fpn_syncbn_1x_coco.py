# Mask R-CNN R50-FPN 1x on COCO from SparK ResNet-50 weights: the official SparK
# Detectron2 recipe (paper: 41.6 AP box / 37.7 AP mask), in mmdet.
# Batch 16 = 8 GPUs x 2 images:  bash tools/dist_train.sh <this config> 8
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
# spark_mm.detection registers its ResNet layer-decay constructor and precise-BN
# hook in mmdet's registries; spark_mm's components are reachable as spark_mm.<Name>.
custom_imports = dict(imports=['spark_mm.detection'], allow_failed_imports=False)

# SparK weights. Either the backbone-only file (written at the end of
# pretraining as <work_dir>/backbone.pth, or by tools/export_backbone.py as
# backbone_mmdet.pth) with pretrained_prefix = None, or the full pretraining
# checkpoint with pretrained_prefix = 'backbone.', e.g. on the command line:
#   --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/r50_pretrain/epoch_1600.pth \
#                 model.backbone.init_cfg.prefix=backbone.
# Default: the export of `python tools/train.py configs/spark/r50_pretrain.py`.
pretrained = 'work_dirs/r50_pretrain/backbone.pth'
pretrained_prefix = None

# SyncBN in backbone, FPN and RoI heads; nothing frozen, BN keeps training.
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    data_preprocessor=dict(  # RGB, ImageNet mean/std: as in pretraining
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True),
    backbone=dict(
        depth=50,
        frozen_stages=-1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained,
            prefix=pretrained_prefix)),
    neck=dict(norm_cfg=norm_cfg),
    roi_head=dict(
        bbox_head=dict(  # 4 conv + 1 fc with norm
            type='Shared4Conv1FCBBoxHead',
            conv_out_channels=256,
            norm_cfg=norm_cfg),
        mask_head=dict(num_convs=4, norm_cfg=norm_cfg)))

# Multi-scale training: short side 480..896 step 32, long side <= 1333.
train_scales = [(1333, short) for short in range(480, 897, 32)]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomChoiceResize', scales=train_scales, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
train_dataloader = dict(
    batch_size=2,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(pipeline=train_pipeline))

# 90k iterations at batch 16, x0.25 at 60k and 80k, linear warmup from 0.01.
max_iters = 90000
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=5000)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=1000),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[60000, 80000], gamma=0.25)
]

# AdamW 2.5e-4 at batch 16, wd 1e-4 (0 on norms), layer-wise lr decay 0.6.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='ResNetLayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=2.5e-4, betas=(0.9, 0.999),
                   weight_decay=1e-4),
    paramwise_cfg=dict(decay_rate=0.6, norm_decay_mult=0.0))
auto_scale_lr = dict(enable=False, base_batch_size=16)  # --auto-scale-lr

# Precise BN (Detectron2's 200 batches) right before every evaluation; then
# the safety hooks of every spark_mm config: stop at the first NaN/inf loss
# before it reaches a checkpoint, seeds from (seed, rank, step) for an exact
# --resume. Configs that set custom_hooks replace this whole list, so they
# state the two again, after precise BN (custom_hooks.0 stays precise BN for
# --cfg-options custom_hooks.0.num_iters=N).
custom_hooks = [dict(type='PreciseBNBeforeValHook', num_iters=200),
                dict(type='spark_mm.NanGuardHook'),
                dict(type='spark_mm.StepSeedHook'),
                dict(type='spark_mm.PreemptionHook')]

default_hooks = dict(
    logger=dict(interval=50),
    # writes <name>.partial, then renames: a kill never leaves a torn file
    checkpoint=dict(type='spark_mm.AtomicCheckpointHook', by_epoch=False,
                    interval=5000, max_keep_ckpts=3))
log_processor = dict(by_epoch=False)
