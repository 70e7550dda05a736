# ImageNet-1k fine-tuning of a SparK ConvNeXt-B (paper: 84.8): keyu-tian/SparK
# downstream_imagenet/arg.py HP_DEFAULT_VALUES['convnext_base'] =
# (4096, 400, 20, 'adam', base_lr 1e-4, 0.7, wd 0.01, 0.8, 3, drop_path 0.4,
#  0.9999); the rest as ConvNeXt-S.
_base_ = ['convnext-s_spark-ft_8xb512-adamw-coslr-400e_in1k.py']

model = dict(
    backbone=dict(arch='base', drop_path_rate=0.4, init_cfg=dict(
        checkpoint='work_dirs/convnext_b_pretrain/backbone.pth')),
    head=dict(in_channels=1024))
optim_wrapper = dict(optimizer=dict(lr=1e-4 * 4096 / 256))
