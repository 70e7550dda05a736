# Linear probe of a SparK ResNet-50 on ImageNet-1k: the frozen backbone
# (all 4 stages, BN statistics frozen too) under a trainable linear classifier.
# The SparK paper reports no linear probe; this is mmpretrain 1.2.0's protocol
# for ResNet-50 self-supervised methods (configs/mocov2/benchmarks/
# resnet50_8xb32-linear-steplr-100e_in1k.py): SGD lr 30, momentum 0.9, no
# weight decay, x0.1 at epochs 60 and 80 of 100, batch 8 x 32 = 256,
# RandomResizedCrop(224) + flip; val: short side 256, center crop 224.
_base_ = ['_base_/finetune_runtime.py', '_base_/imagenet_finetune.py']

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ResNet', depth=50, out_indices=(3, ), frozen_stages=4,
        norm_eval=True,
        # 'Pretrained', not spark_mm.CheckedPretrained: mmpretrain's ResNet
        # skips its zero_init_residual (last BN of each block to 0) after
        # loading only for that type name
        init_cfg=dict(type='Pretrained',
                      checkpoint='work_dirs/r50_pretrain/backbone.pth')),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=1000, in_channels=2048,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
              topk=(1, 5)))

data_preprocessor = dict(type='ClsDataPreprocessor', num_classes=1000,
                         mean=[123.675, 116.28, 103.53],
                         std=[58.395, 57.12, 57.375], to_rgb=True)
linear_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
linear_val_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=32,
                        dataset=dict(pipeline=linear_train_pipeline))
val_dataloader = dict(batch_size=32, dataset=dict(pipeline=linear_val_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=30.0, momentum=0.9, weight_decay=0.0))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[60, 80], gamma=0.1)]
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=1)
auto_scale_lr = dict(base_batch_size=256, enable=False)
default_hooks = dict(checkpoint=dict(interval=10))
