# ImageNet-1k fine-tuning of a SparK ResNet-200 (paper: 83.1): keyu-tian/SparK
# downstream_imagenet/arg.py HP_DEFAULT_VALUES['resnet200'] equals resnet101's
# (base_lr 0.001, lr_scale 0.8, drop_path 0.2, rest as R50).
# mmpretrain's ResNet stops at 152: timm's resnet200 (the official model) via
# TIMMBackbone, as configs/spark/r200_pretrain.py; its BN becomes SyncBN when
# distributed (sync_bn below; official sbn=True).
_base_ = ['resnet101_spark-ft_8xb512-lamb-coslr-300e_in1k.py']

model = dict(backbone=dict(
    _delete_=True, type='TIMMBackbone', model_name='resnet200',
    pretrained=False, drop_path_rate=0.2,
    init_cfg=dict(type='spark_mm.CheckedPretrained',
                  checkpoint='work_dirs/r200_pretrain/backbone.pth')))
sync_bn = 'torch'
# TIMMBackbone has no get_layer_depth: the same official rule by parameter
# name (spark_mm/classification/layer_decay.py)
optim_wrapper = dict(constructor='ResNetClsLayerDecayOptimWrapperConstructor')
