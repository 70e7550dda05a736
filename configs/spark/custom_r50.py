# SparK ResNet-50 on your own images: every image under data_root, at any
# depth, of any size, no labels (files that cannot be read or are smaller than
# 32 px are left out with a warning).
#   python tools/train.py configs/spark/custom_r50.py --data-root /path/to/images
# Presets for a few thousand to a few hundred thousand images on 1-8 GPUs:
# batch 64 per GPU; 400 epochs with 20 warm-up epochs (the official 1600/40 is
# for ImageNet-1k); 224 px. lr: LAMB's lr is a per-layer relative step; the
# official 2e-4 x batch / 256 is meant for batches of 4096 and ~500k steps and
# gives a small batch almost no movement, so these presets scale the official
# 3.2e-3 at 4096 by the square root of the batch (LAMB's usual rule):
# 4e-4 at 64. --auto-scale-lr then rescales it (linearly, mmengine's rule)
# from this batch to GPUs x batch. Non-square input: input_size = (h, w),
# multiples of 32 (the crop keeps that aspect ratio). Other channel counts:
# see custom_r18_gray.py.
_base_ = ['r50_pretrain.py']
from spark_mm.datasets.image_folder import folder_pretrain_pipeline  # noqa: E402
from spark_mm.engine.schedulers import spark_param_scheduler  # noqa: E402

data_root = 'data/my_images'
in_channels = 3
mean = [123.675, 116.28, 103.53]  # RGB, pixel values 0-255 (ImageNet's)
std = [58.395, 57.12, 57.375]
input_size = (224, 224)  # (h, w)
batch_size = 64  # per GPU
max_epochs = 400
warmup_epochs = 20

model = dict(
    backbone=dict(in_channels=in_channels),
    in_channels=in_channels,  # the decoder predicts as many channels
    input_size=input_size,
    data_preprocessor=dict(mean=mean, std=std, to_rgb=in_channels == 3))

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=4,
    pin_memory=False,
    drop_last=True,  # no tiny last batch for BN statistics
    dataset=dict(_delete_=True, type='UnlabeledImageFolder', data_root=data_root,
                 min_size=32,
                 pipeline=folder_pretrain_pipeline(input_size, in_channels)))

optim_wrapper = dict(optimizer=dict(lr=3.2e-3 * (batch_size / 4096) ** 0.5))
param_scheduler = spark_param_scheduler(max_epochs, warmup_epochs)
train_cfg = dict(max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=batch_size)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=20, max_keep_ckpts=2))

# tools/train.py writes here unless --work-dir says otherwise; the export,
# <work_dir>/backbone.pth, is what the downstream configs read.
work_dir = 'work_dirs/custom_r50'
