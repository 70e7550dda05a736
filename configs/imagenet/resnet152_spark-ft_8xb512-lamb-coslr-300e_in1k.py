# ImageNet-1k fine-tuning of a SparK ResNet-152 (paper: 82.7): keyu-tian/SparK
# downstream_imagenet/arg.py HP_DEFAULT_VALUES['resnet152'] equals resnet101's
# (base_lr 0.001, lr_scale 0.8, drop_path 0.2, rest as R50).
_base_ = ['resnet101_spark-ft_8xb512-lamb-coslr-300e_in1k.py']

model = dict(backbone=dict(
    depth=152, init_cfg=dict(checkpoint='work_dirs/r152_pretrain/backbone.pth')))
