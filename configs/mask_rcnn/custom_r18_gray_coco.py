# Mask R-CNN R18-FPN for single-channel images, from
# configs/spark/custom_r18_gray.py (work_dirs/custom_r18_gray/backbone.pth):
#   python tools/train.py configs/mask_rcnn/custom_r18_gray_coco.py --data-root /path/to/coco
# For N channels: copy this file, set in_channels and mean/std as in pretraining.
_base_ = './custom_r18_coco.py'

pretrained = 'work_dirs/custom_r18_gray/backbone.pth'
in_channels = 1
model = dict(
    data_preprocessor=dict(mean=[117.0], std=[57.4], bgr_to_rgb=False),
    backbone=dict(in_channels=in_channels,
                  init_cfg=dict(checkpoint=pretrained)))
train_pipeline = [
    dict(type='spark_mm.LoadImageChannels', channels=in_channels),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomChoiceResize', scales={{_base_.train_scales}},
         keep_ratio=True),
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
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
