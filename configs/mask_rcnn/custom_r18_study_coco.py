# The fine-tuning of tools/transfer_study.py: Mask R-CNN R18-FPN on the study's
# few labelled scenes (128x160 px), sized for 2 CPU cores: FPN/heads 64 wide,
# short side 128..160, batch 4, 300 iterations, COCO bbox + segm AP
# (pycocotools) at the end, after precise BN. Random initialisation:
# --cfg-options model.backbone.init_cfg=None. Weights: the export of
# configs/spark/custom_r18_study.py run on its own (the study passes its own).
_base_ = './custom_r18_coco.py'

pretrained = 'work_dirs/custom_r18_study/backbone.pth'
data_root = 'data/transfer_study/coco/'

width = 64
model = dict(
    backbone=dict(init_cfg=dict(checkpoint=pretrained)),
    neck=dict(out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(in_channels=width, conv_out_channels=width,
                       fc_out_channels=256),
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(in_channels=width, conv_out_channels=width)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(max_per_img=30)))

train_scales = [(400, short) for short in range(128, 161, 16)]
train_pipeline = [
    dict(type='spark_mm.LoadImageChannels', channels=3),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomChoiceResize', scales=train_scales, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='spark_mm.LoadImageChannels', channels=3),
    dict(type='Resize', scale=(400, 160), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
train_dataloader = dict(
    num_workers=1,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

max_iters = 300
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[int(max_iters * 0.75), int(max_iters * 0.9)], gamma=0.25)
]
optim_wrapper = dict(optimizer=dict(lr=6e-4))
custom_hooks = [dict(type='PreciseBNBeforeValHook', num_iters=12),
                dict(type='spark_mm.NanGuardHook'),
                dict(type='spark_mm.StepSeedHook'),
                dict(type='spark_mm.PreemptionHook')]
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=50, max_keep_ckpts=1))
