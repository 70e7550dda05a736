# tests/_tiny_demo.py (SparK's demo) in an iteration-based loop: mmengine's
# IterBasedTrainLoop on one endless InfiniteSampler stream, as the detection
# and segmentation recipes train. The official schedule in iterations.
_base_ = ['_tiny_demo.py']
max_iters = 12
train_dataloader = dict(sampler=dict(_delete_=True, type='InfiniteSampler',
                                     shuffle=True))
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop',
                 max_iters=max_iters)
param_scheduler = [
    dict(type='SparKWarmupCosineLR', warmup=3, by_epoch=False, begin=0,
         end=max_iters),
    dict(type='SparKCosineWeightDecay', end_value=0.2, by_epoch=False,
         begin=0, end=max_iters),
]
log_processor = dict(by_epoch=False, window_size=1)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=max_iters))
