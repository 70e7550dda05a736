# The pretraining of tools/transfer_study.py: SparK ResNet-18 on the study's
# unlabelled scenes (or any folder, --data-root), sized for 2 CPU cores:
# 96 px, batch 32, decoder width 256, 5 epochs with 1 warm-up epoch.
# The lr is higher than the official per-batch rule (2e-4 x 32/256 = 2.5e-5),
# which assumes hundreds of thousands of steps; this run has a few hundred.
_base_ = ['custom_r18.py']
from spark_mm.datasets.image_folder import folder_pretrain_pipeline  # noqa: E402
from spark_mm.engine.schedulers import spark_param_scheduler  # noqa: E402

data_root = 'data/transfer_study/unlabeled'
input_size = (96, 96)
batch_size = 32
max_epochs = 5
warmup_epochs = 1

model = dict(input_size=input_size)
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=1,
    dataset=dict(data_root=data_root,
                 pipeline=folder_pretrain_pipeline(input_size, 3)))
optim_wrapper = dict(optimizer=dict(lr=1.5e-3))
param_scheduler = spark_param_scheduler(max_epochs, warmup_epochs)
train_cfg = dict(max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=batch_size)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=1))

# tools/train.py writes here unless --work-dir says otherwise; the export,
# <work_dir>/backbone.pth, is what the downstream configs read.
work_dir = 'work_dirs/custom_r18_study'
