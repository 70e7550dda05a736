# SparK ResNet-50 (r50_pretrain.py) in fp16 mixed precision on GPUs, as
# mmpretrain's SparK recipes train (configs/spark/*-amp-*.py there):
# mmengine's AmpOptimWrapper runs the forward under fp16 autocast and scales
# the loss dynamically (torch's GradScaler: x2 every 2000 clean steps, /2 and
# the step skipped on an inf/NaN gradient). The official code trains in fp32
# (r50_pretrain.py). The gradient clip stays inside LAMB (max_grad_norm=5):
# GradScaler unscales the gradients before LAMB's step, so LAMB clips the
# true gradients; a wrapper-level clip_grad would clip a second time.
# Without a GPU tools/train.py runs this config in fp32 (one log line);
# --amp there means bf16 autocast (docs/cluster.md, "Mixed precision").
_base_ = ['r50_pretrain.py']

optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic')

# its own folder: fine-tuning configs read work_dirs/r50_pretrain/backbone.pth,
# so pass this run's export with --cfg-options model.backbone.init_cfg.checkpoint=...
work_dir = 'work_dirs/r50_pretrain_amp'
