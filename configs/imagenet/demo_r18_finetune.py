# CPU demo of the fine-tuning path: a ResNet-18 from the demo pretraining
# (configs/spark/demo_r18.py -> work_dirs/demo_r18/backbone.pth) fine-tuned
# on a generated 4-class labelled folder, written to data/spark_cls_demo on
# first use (SparKDemoLabelledImages, spark_mm/datasets/synthetic/
# labelled_folder.py). Same code path and augmentation types as the ImageNet
# recipe; 64 px, batch 16, a few epochs, a larger lr (LAMB moves each weight
# by about lr of its norm per step) and a faster EMA, so that a minute of
# training shows.
_base_ = ['custom_r50_finetune.py']

data_root = 'data/spark_cls_demo'
num_classes = 4
input_size = 64
batch_size = 16
max_epochs = 6
warmup_epochs = 1

demo_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=input_size, backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='NumpyToPIL', to_rgb=True),
    dict(type='torchvision/TrivialAugmentWide', interpolation='bicubic'),
    dict(type='PILToNumpy', to_bgr=True),
    dict(type='PixelRandomErasing', mean={{_base_.bgr_mean}},
         std={{_base_.bgr_std}}, erase_prob=0.25),
    dict(type='PackInputs'),
]
demo_val_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=67, edge='short', backend='pillow',
         interpolation='bicubic'),  # floor(64 / 0.95)
    dict(type='CenterCrop', crop_size=input_size),
    dict(type='PackInputs'),
]

data_preprocessor = dict(num_classes=num_classes)
model = dict(
    backbone=dict(depth=18, drop_path_rate=0.0, init_cfg=dict(
        checkpoint='work_dirs/demo_r18/backbone.pth')),
    head=dict(num_classes=num_classes, in_channels=512,
              loss=dict(loss_weight=1.0 / num_classes)))
train_dataloader = dict(
    batch_size=batch_size, num_workers=2, persistent_workers=False,
    pin_memory=False,
    dataset=dict(_delete_=True, type='SparKDemoLabelledImages', root=data_root,
                 split='train', pipeline=demo_train_pipeline))
val_dataloader = dict(
    batch_size=batch_size, num_workers=2, persistent_workers=False,
    pin_memory=False,
    dataset=dict(_delete_=True, type='SparKDemoLabelledImages', root=data_root,
                 split='val', pipeline=demo_val_pipeline))
test_dataloader = val_dataloader

# mmpretrain's ResNet.get_layer_depth has no ResNet-18: the official rule
# with R50's block groups (spark_mm/classification/layer_decay.py)
optim_wrapper = dict(optimizer=dict(lr=0.02),
                     constructor='ResNetClsLayerDecayOptimWrapperConstructor')
param_scheduler = [
    dict(type='SparKWarmupCosineLR', warmup=warmup_epochs, by_epoch=True,
         begin=0, end=max_epochs, convert_to_iter_based=True)]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs,
                 dynamic_intervals=None)
auto_scale_lr = dict(base_batch_size=batch_size)
default_hooks = dict(logger=dict(interval=5),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
custom_hooks = [
    dict(type='NanGuardHook'), dict(type='StepSeedHook'),
    dict(type='PreemptionHook'),
    dict(type='NumClassesCheckHook'),
    dict(type='EMAHook', momentum=0.1, update_buffers=True,
         priority='ABOVE_NORMAL')]
