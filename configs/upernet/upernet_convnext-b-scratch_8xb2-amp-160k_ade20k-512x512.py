# Baseline: the ConvNeXt-B UperNet recipe from random initialisation
# (mmpretrain ConvNeXt's own init: truncated normal std 0.02 for convs and
# linears, LayerNorm weight 1 / bias 0).
_base_ = './upernet_convnext-b-spark_8xb2-amp-160k_ade20k-512x512.py'

model = dict(
    backbone=dict(init_cfg=[
        dict(type='TruncNormal', layer=['Conv2d', 'Linear'], std=.02, bias=0.),
        dict(type='Constant', layer=['LayerNorm'], val=1., bias=0.)
    ]))
