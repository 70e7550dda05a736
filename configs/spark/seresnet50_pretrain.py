# SparK SE-ResNet-50 (mmpretrain's SEResNet: a squeeze-excitation in every
# bottleneck), ImageNet-1k, the ResNet-50 recipe of r50_pretrain.py.
# Sparse: each squeeze-excitation averages the visible positions of its
# sample and gates them only (spark_mm/models/sparse/squeeze_excite.py).
#   python tools/train.py configs/spark/seresnet50_pretrain.py
# <work_dir>/backbone.pth loads into mmpretrain's SEResNet, e.g. the
# classifier of mmpretrain::seresnet/seresnet50_8xb32_in1k.py with
# model.backbone.init_cfg=dict(type='Pretrained', checkpoint=...).
_base_ = ['r50_pretrain.py']

work_dir = 'work_dirs/seresnet50_pretrain'

model = dict(
    backbone=dict(_delete_=True, type='SEResNet', depth=50, se_ratio=16,
                  out_indices=(0, 1, 2, 3), norm_cfg=dict(type='SyncBN'),
                  drop_path_rate={{_base_.drop_path_rate}}))
