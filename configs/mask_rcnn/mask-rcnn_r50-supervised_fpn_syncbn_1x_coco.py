# Baseline: the same recipe as the SparK 1x config from supervised ImageNet
# weights in a local file: torchvision's resnet50 state dict (e.g.
# resnet50-0676ba61.pth, fc.* is ignored), or an mmpretrain ResNet-50
# classifier checkpoint with model.backbone.init_cfg.prefix=backbone.
_base_ = './mask-rcnn_r50-spark_fpn_syncbn_1x_coco.py'

supervised = 'data/pretrained/resnet50_imagenet_supervised.pth'
model = dict(
    backbone=dict(
        init_cfg=dict(type='Pretrained', checkpoint=supervised, prefix=None)))
