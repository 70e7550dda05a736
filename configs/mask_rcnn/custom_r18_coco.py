# Mask R-CNN R18-FPN on your own COCO-format set, from your SparK pretraining
# (configs/spark/custom_r18.py writes work_dirs/custom_r18/backbone.pth):
#   python tools/train.py configs/mask_rcnn/custom_r18_coco.py --data-root /path/to/coco
# The set: <root>/annotations/instances_{train,val}2017.json and the images
# under <root>/train2017/, <root>/val2017/ (mmdet's COCO layout; polygons or
# RLE masks). The class names come from the training annotation file
# (classes_from_annotations), so no class list to edit. COCO bbox and segm AP
# (pycocotools) after training, with precise BN. Random initialisation:
# --cfg-options model.backbone.init_cfg=None.
# Same recipe as the SparK R50 configs (BN everywhere, nothing frozen, 4conv1fc
# box head and 4conv mask head with norm, AdamW, layer-wise lr decay 0.6),
# scaled down: FPN/heads 128 wide, short side 480-640, batch 4, 6000 iters.
_base_ = './mask-rcnn_r50-spark_fpn_syncbn_1x_coco.py'

pretrained = 'work_dirs/custom_r18/backbone.pth'
data_root = 'data/my_coco/'
classes_from_annotations = True
in_channels = 3

norm_cfg = dict(type='SyncBN', requires_grad=True)  # BN in a 1-process run
width = 128
model = dict(
    backbone=dict(
        depth=18,
        in_channels=in_channels,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix=None)),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(in_channels=width, conv_out_channels=width,
                       fc_out_channels=512),
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(in_channels=width, conv_out_channels=width)))

train_scales = [(1066, short) for short in range(480, 641, 32)]
train_pipeline = [
    dict(type='spark_mm.LoadImageChannels', channels=in_channels),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomChoiceResize', scales=train_scales, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='spark_mm.LoadImageChannels', channels=in_channels),
    dict(type='Resize', scale=(1066, 640), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
# mmdet's COCO paths (ann_file, data_prefix) under this data_root
batch_size = 4
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=2,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=2,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

max_iters = 6000
train_cfg = dict(max_iters=max_iters, val_interval=2000)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=200),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[int(max_iters * 2 / 3), int(max_iters * 8 / 9)],
         gamma=0.25)
]
# AdamW 2.5e-4 per 16 images (the recipe's), for this batch; --auto-scale-lr
# rescales it to GPUs x batch.
optim_wrapper = dict(optimizer=dict(lr=2.5e-4 * batch_size / 16))
auto_scale_lr = dict(enable=False, base_batch_size=batch_size)
custom_hooks = [dict(type='PreciseBNBeforeValHook', num_iters=50),
                dict(type='spark_mm.NanGuardHook'),
                dict(type='spark_mm.StepSeedHook'),
                dict(type='spark_mm.PreemptionHook')]
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=2000, max_keep_ckpts=1))
