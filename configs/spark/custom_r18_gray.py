# SparK ResNet-18 on single-channel images (X-ray, microscopy, depth, ...):
# the backbone, the data preprocessor and the decoder's prediction take one
# channel; colour files in the folder are converted to gray, 16-bit files keep
# their range (set mean/std to it).
#   python tools/train.py configs/spark/custom_r18_gray.py --data-root /path/to/images
# For N channels (e.g. RGBA or multispectral files with N planes) copy this
# file and set in_channels = N and N values (or one shared value) of mean/std.
# Fine-tuning takes the same channel count: configs/mask_rcnn/custom_r18_coco.py
# with --cfg-options model.backbone.in_channels=1 and the same mean/std.
_base_ = ['custom_r18.py']
from spark_mm.datasets.image_folder import folder_pretrain_pipeline  # noqa: E402

in_channels = 1
input_size = (160, 160)  # (h, w), as custom_r18.py
mean = [117.0]  # ImageNet's mean/std as luma, for 8-bit pixels
std = [57.4]

model = dict(
    backbone=dict(in_channels=in_channels),
    in_channels=in_channels,
    data_preprocessor=dict(mean=mean, std=std, to_rgb=False))
train_dataloader = dict(dataset=dict(
    pipeline=folder_pretrain_pipeline(input_size, in_channels)))

# tools/train.py writes here unless --work-dir says otherwise; the export,
# <work_dir>/backbone.pth, is what the downstream configs read.
work_dir = 'work_dirs/custom_r18_gray'
