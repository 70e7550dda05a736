# SparK ResNet-18 on your own images, for small data and small machines (one
# GPU or a CPU): 160 px, batch 32 (lr 2.8e-4, see custom_r50.py), decoder
# width 256, 200 epochs.
#   python tools/train.py configs/spark/custom_r18.py --data-root /path/to/images
# Everything else as custom_r50.py (recursive folder, any size, no labels).
_base_ = ['custom_r50.py']
from spark_mm.datasets.image_folder import folder_pretrain_pipeline  # noqa: E402
from spark_mm.engine.schedulers import spark_param_scheduler  # noqa: E402

in_channels = 3
input_size = (160, 160)  # (h, w), multiples of 32
batch_size = 32
max_epochs = 200
warmup_epochs = 10

model = dict(
    backbone=dict(depth=18, drop_path_rate=0.0, in_channels=in_channels),
    neck=dict(width=256),
    in_channels=in_channels,
    input_size=input_size)
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=2,
    dataset=dict(pipeline=folder_pretrain_pipeline(input_size, in_channels)))
optim_wrapper = dict(optimizer=dict(lr=3.2e-3 * (batch_size / 4096) ** 0.5))
param_scheduler = spark_param_scheduler(max_epochs, warmup_epochs)
train_cfg = dict(max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=batch_size)
default_hooks = dict(checkpoint=dict(interval=10))

# tools/train.py writes here unless --work-dir says otherwise; the export,
# <work_dir>/backbone.pth, is what the downstream configs read.
work_dir = 'work_dirs/custom_r18'
