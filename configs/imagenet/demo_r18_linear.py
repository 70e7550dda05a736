# CPU demo of the linear probe
# (resnet50_spark-linear_8xb32-sgd-steplr-100e_in1k.py): the frozen demo
# ResNet-18 (configs/spark/demo_r18.py -> work_dirs/demo_r18/backbone.pth)
# under a linear classifier, on the generated 4-class folder
# (data/spark_cls_demo, written on first use). 64 px, a few epochs, steps at
# 60% and 80% of the run; SGD lr 1 instead of the protocol's 30, at which a
# run of a few dozen steps on these 512-d features still oscillates (measured
# 66% vs 100% after 12 steps).
_base_ = ['resnet50_spark-linear_8xb32-sgd-steplr-100e_in1k.py']

data_root = 'data/spark_cls_demo'
num_classes = 4
max_epochs = 5

demo_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=64, backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
demo_val_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=73, edge='short', backend='pillow'),
    dict(type='CenterCrop', crop_size=64),  # 256 / 224 of 64 px
    dict(type='PackInputs'),
]
data_preprocessor = dict(num_classes=num_classes)
model = dict(
    backbone=dict(depth=18, init_cfg=dict(
        checkpoint='work_dirs/demo_r18/backbone.pth')),
    head=dict(num_classes=num_classes, in_channels=512, topk=(1, )))
train_dataloader = dict(
    batch_size=16, num_workers=2, persistent_workers=False, pin_memory=False,
    dataset=dict(_delete_=True, type='SparKDemoLabelledImages', root=data_root,
                 split='train', pipeline=demo_train_pipeline))
val_dataloader = dict(
    batch_size=16, num_workers=2, persistent_workers=False, pin_memory=False,
    dataset=dict(_delete_=True, type='SparKDemoLabelledImages', root=data_root,
                 split='val', pipeline=demo_val_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(lr=1.0))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[3, 4], gamma=0.1)]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
auto_scale_lr = dict(base_batch_size=16)
default_hooks = dict(logger=dict(interval=5),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
custom_hooks = [dict(type='NanGuardHook'), dict(type='StepSeedHook'),
                dict(type='PreemptionHook'),
                dict(type='NumClassesCheckHook')]
