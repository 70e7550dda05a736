# SparK ResNet-50 with GroupNorm (32 groups) instead of batch norm: for
# small per-GPU batches and for detectors with GroupNorm backbones (mmdet's
# gn/ configs). ImageNet-1k, the ResNet-50 recipe of r50_pretrain.py.
# Sparse: each group norm takes its statistics from the visible positions of
# its sample (spark_mm/models/sparse/group_norm.py).
#   python tools/train.py configs/spark/r50_gn_pretrain.py
# <work_dir>/backbone.pth loads into mmdet's / mmpretrain's ResNet with
# norm_cfg=dict(type='GN', num_groups=32), e.g. the backbone of
# mmdet::gn/mask-rcnn_r50_fpn_gn-all_2x_coco.py with
# init_cfg=dict(type='Pretrained', checkpoint=...).
_base_ = ['r50_pretrain.py']

work_dir = 'work_dirs/r50_gn_pretrain'

model = dict(
    backbone=dict(norm_cfg=dict(_delete_=True, type='GN', num_groups=32,
                                requires_grad=True)))
