# ImageNet-1k in mmpretrain's layout (data/imagenet/train/<class>/*.JPEG),
# SparK's augmentation: RandomResizedCrop(0.67-1) and horizontal flip only.
data_root = 'data/imagenet'
input_size = 224

data_preprocessor = dict(
    type='SelfSupDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

train_pipeline = [
    dict(type='LoadImageOrSkip'),  # an unreadable file: warning, not a crash
    dict(type='RandomResizedCrop', scale=input_size, crop_ratio_range=(0.67, 1.0),
         backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=512,  # per GPU; 8 GPUs give the official global batch of 4096
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ImageNet', data_root=data_root, split='train',
                 pipeline=train_pipeline))
