# ImageNet-1k (mmpretrain layout: data/imagenet/{train,val}/<class>/*.JPEG and
# meta/) with the augmentation of SparK's fine-tuning, official
# downstream_imagenet/data.py create_classification_dataset (img_size 224):
#   timm create_transform(is_training=True, input_size=224, auto_augment='v0',
#   interpolation='bicubic', re_prob=0.25, re_mode='pixel', re_count=1) whose
#   AutoAugment is replaced by TrivialAugmentWide(bicubic) below 384 px;
#   val: transforms_imagenet_eval(224, bicubic, crop_pct=0.95), i.e. resize
#   the short side to floor(224 / 0.95) = 235 and center-crop 224.
# The batch-level Mixup/CutMix and label smoothing are in the model configs.
data_root = 'data/imagenet'
num_classes = 1000
input_size = 224
mean = [123.675, 116.28, 103.53]  # timm IMAGENET_DEFAULT_MEAN x 255 (RGB)
std = [58.395, 57.12, 57.375]
bgr_mean, bgr_std = mean[::-1], std[::-1]

data_preprocessor = dict(type='ClsDataPreprocessor', num_classes=num_classes,
                         mean=mean, std=std, to_rgb=True)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    # timm RandomResizedCropAndInterpolation defaults: scale (0.08, 1),
    # ratio (3/4, 4/3); then horizontal flip 0.5, no colour jitter (timm
    # drops it when an auto-augment policy is given)
    dict(type='RandomResizedCrop', scale=input_size, backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    # torchvision's own TrivialAugmentWide, exactly what data.py inserts
    # (31 magnitude bins, no fill), on the PIL image in RGB
    dict(type='NumpyToPIL', to_rgb=True),
    dict(type='torchvision/TrivialAugmentWide', interpolation='bicubic'),
    dict(type='PILToNumpy', to_bgr=True),
    # timm RandomErasing(0.25, mode='pixel', max_count=1): N(0, 1) noise in
    # the normalized image (spark_mm/classification/transforms.py)
    dict(type='PixelRandomErasing', mean=bgr_mean, std=bgr_std,
         erase_prob=0.25),
    dict(type='PackInputs'),
]
val_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=235, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=input_size),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=512,  # per GPU; 8 GPUs give the official global batch 4096
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='ImageNet', data_root=data_root, split='train',
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=256,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ImageNet', data_root=data_root, split='val',
                 pipeline=val_pipeline))
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
val_cfg = dict()
test_cfg = dict()
