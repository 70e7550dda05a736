# SparK ResNet-200: the ResNet-50 recipe with drop path 0.15.
_base_ = ['r50_pretrain.py']

model = dict(backbone=dict(depth=200, drop_path_rate=0.15))
