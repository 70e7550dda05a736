# What the SparK ImageNet-1k fine-tuning recipes share (keyu-tian/SparK
# downstream_imagenet/): the runtime, ImageNet-1k with the official
# augmentation, lr stated for the global batch of 4096 (arg.py; lr = base_lr x
# 4096 / 256 in each recipe), validation every 5 epochs in the first third,
# then every epoch (main.py ep_eval; each recipe adds dynamic_intervals for
# its epochs), and the EMA of the weights.
_base_ = ['finetune_runtime.py', 'imagenet_finetune.py']

global_batch_size = 4096
auto_scale_lr = dict(base_batch_size=global_batch_size, enable=False)
train_cfg = dict(by_epoch=True, val_interval=5)

# timm ModelEmaV2(decay=0.9999) updated after every step, buffers included;
# mmengine validates and saves the EMA weights (official: reports
# max(model, EMA) accuracy). The list replaces finetune_runtime.py's, so its
# safety hooks are stated again.
custom_hooks = [
    dict(type='NanGuardHook'), dict(type='StepSeedHook'),
    dict(type='PreemptionHook'),
    dict(type='EMAHook', momentum=1 - 0.9999, update_buffers=True,
         priority='ABOVE_NORMAL')]
