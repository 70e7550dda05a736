# Ablation (paper: 83.7 vs 84.1): 800 instead of 1600 epochs.
_base_ = ['../convnext_s_pretrain.py']
from spark_mm.engine.schedulers import spark_param_scheduler  # noqa: E402

max_epochs = 800
warmup_epochs = 40
param_scheduler = spark_param_scheduler(max_epochs, warmup_epochs)
train_cfg = dict(max_epochs=max_epochs)

# tools/train.py writes here unless --work-dir says otherwise; the export,
# <work_dir>/backbone.pth, is what the downstream configs read.
work_dir = 'work_dirs/convnext_s_800e'
