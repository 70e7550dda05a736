# CPU demo: the SparK Mask R-CNN recipe in miniature. ResNet-18 from the demo
# pretraining (configs/spark/demo_r18.py), the synthetic shapes dataset
# (python tools/make_synthetic_coco.py --out data/synthetic_coco), short side
# 128..192 instead of 480..896, 40 iterations, then COCO bbox + segm AP.
# Narrower FPN and heads (64 channels instead of 256) keep a step around a
# second on 2 CPU cores. Plain BN so that it also runs without a launcher.
_base_ = './mask-rcnn_r50-spark_fpn_syncbn_1x_coco.py'

pretrained = 'work_dirs/demo_r18/backbone.pth'
data_root = 'data/synthetic_coco/'
classes = ('rectangle', 'ellipse', 'triangle')

norm_cfg = dict(type='BN', requires_grad=True)
width = 64
model = dict(
    backbone=dict(
        depth=18,
        norm_cfg=norm_cfg,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix=None)),
    neck=dict(
        in_channels=[64, 128, 256, 512], out_channels=width,
        norm_cfg=norm_cfg),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(
            num_classes=len(classes),
            in_channels=width,
            conv_out_channels=width,
            fc_out_channels=256,
            norm_cfg=norm_cfg),
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(
            num_classes=len(classes),
            in_channels=width,
            conv_out_channels=width,
            norm_cfg=norm_cfg)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(max_per_img=20)))

train_scales = [(320, 128), (320, 160), (320, 192)]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomChoiceResize', scales=train_scales, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(320, 160), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
# mmdet's COCO paths (ann_file, data_prefix) under this data_root
train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    dataset=dict(data_root=data_root, metainfo=dict(classes=classes),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=2,
    dataset=dict(data_root=data_root, metainfo=dict(classes=classes),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

# A few dozen iterations: a higher lr (not scaled by batch size) and a short
# warmup, the same layer-wise decay and schedule shape as the full recipe.
max_iters = 40
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=10),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[30, 36], gamma=0.25)
]
optim_wrapper = dict(optimizer=dict(lr=1e-3))
auto_scale_lr = dict(enable=False)
custom_hooks = [dict(type='PreciseBNBeforeValHook', num_iters=4),
                dict(type='spark_mm.NanGuardHook'),
                dict(type='spark_mm.StepSeedHook'),
                dict(type='spark_mm.PreemptionHook')]
default_hooks = dict(
    logger=dict(interval=5),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
