# Baseline: the SparK R50 UperNet recipe from supervised ImageNet weights of the
# same plain ResNet-50 in a local file: torchvision's resnet50 state dict (e.g.
# resnet50-0676ba61.pth; fc.* is left unused), or an mmpretrain ResNet-50
# classifier checkpoint with model.backbone.init_cfg.prefix=backbone.
# (mmseg's published UperNet R50 uses ResNetV1c weights: another stem.)
_base_ = './upernet_r50-spark_4xb4-160k_ade20k-512x512.py'

supervised = 'data/pretrained/resnet50_imagenet_supervised.pth'
model = dict(
    backbone=dict(
        init_cfg=dict(type='spark_mm.CheckedPretrained',
                      checkpoint=supervised, prefix=None)))
