# SparK ResNet-152: the ResNet-50 recipe with drop path 0.10.
_base_ = ['r50_pretrain.py']

model = dict(backbone=dict(depth=152, drop_path_rate=0.10))
