# ImageNet-1k fine-tuning of a SparK ResNet-101 (paper: 82.2): the R50 recipe
# with keyu-tian/SparK downstream_imagenet/arg.py HP_DEFAULT_VALUES['resnet101']
# = (4096, 300, 5, 'lamb', base_lr 0.001, lr_scale 0.8, 0.02, 0.1, 0,
#    drop_path 0.2, 0.9999).
_base_ = ['resnet50_spark-ft_8xb512-lamb-coslr-300e_in1k.py']

base_lr = 0.001
model = dict(backbone=dict(
    depth=101, drop_path_rate=0.2,
    init_cfg=dict(checkpoint='work_dirs/r101_pretrain/backbone.pth')))
optim_wrapper = dict(optimizer=dict(lr=base_lr * 4096 / 256),
                     paramwise_cfg=dict(layer_decay_rate=0.8))
