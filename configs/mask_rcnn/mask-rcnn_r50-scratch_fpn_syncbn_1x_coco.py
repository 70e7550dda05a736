# Baseline: the same recipe as the SparK 1x config from random initialisation
# (mmdet's default ResNet init: Kaiming convs, zero-init last BN of each block).
_base_ = './mask-rcnn_r50-spark_fpn_syncbn_1x_coco.py'

model = dict(backbone=dict(init_cfg=None))
