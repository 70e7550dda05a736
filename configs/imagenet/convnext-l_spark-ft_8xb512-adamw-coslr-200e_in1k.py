# ImageNet-1k fine-tuning of a SparK ConvNeXt-L (paper: 85.4): keyu-tian/SparK
# downstream_imagenet/arg.py HP_DEFAULT_VALUES['convnext_large'] =
# (4096, ep 200, wp_ep 10, 'adam', base_lr 1e-4, 0.7, wd 0.02, 0.8, 3,
#  drop_path 0.5, 0.9999); the rest as ConvNeXt-S.
_base_ = ['convnext-s_spark-ft_8xb512-adamw-coslr-400e_in1k.py']

max_epochs = 200
warmup_epochs = 10
model = dict(
    backbone=dict(arch='large', drop_path_rate=0.5, init_cfg=dict(
        checkpoint='work_dirs/convnext_l_pretrain/backbone.pth')),
    head=dict(in_channels=1536))
optim_wrapper = dict(optimizer=dict(lr=1e-4 * 4096 / 256, weight_decay=0.02))
param_scheduler = [
    dict(type='SparKWarmupCosineLR', warmup=warmup_epochs, by_epoch=True,
         begin=0, end=max_epochs, convert_to_iter_based=True)]
train_cfg = dict(max_epochs=max_epochs,
                 dynamic_intervals=[(max_epochs // 3, 1)])
