# 2x: 180k iterations, x0.25 at 120k and 160k (paper: 43.4 AP box / 39.4 AP mask).
_base_ = './mask-rcnn_r50-spark_fpn_syncbn_1x_coco.py'

max_iters = 180000
train_cfg = dict(max_iters=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=1000),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[120000, 160000], gamma=0.25)
]
