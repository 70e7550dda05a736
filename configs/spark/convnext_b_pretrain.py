# SparK ConvNeXt-B: the ConvNeXt-S recipe with drop path 0.3.
_base_ = ['convnext_s_pretrain.py']

model = dict(backbone=dict(arch='base', drop_path_rate=0.3))
