# Baseline: the ConvNeXt-S UperNet recipe from random initialisation
# (mmpretrain ConvNeXt's own init: truncated normal std 0.02 for convs and
# linears, LayerNorm weight 1 / bias 0, layer scale 1e-6; mmseg's 1.0 is the
# value of its pretrained checkpoint, whose gammas replace it anyway).
_base_ = './upernet_convnext-s-spark_8xb2-amp-160k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        layer_scale_init_value=1e-6,
        init_cfg=[
            dict(type='TruncNormal', layer=['Conv2d', 'Linear'], std=.02,
                 bias=0.),
            dict(type='Constant', layer=['LayerNorm'], val=1., bias=0.)
        ]))
