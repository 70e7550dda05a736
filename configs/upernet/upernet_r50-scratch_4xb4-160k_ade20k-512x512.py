# Baseline: the SparK R50 UperNet recipe from random initialisation (mmseg's
# ResNet init: Kaiming convs, BN weight 1, last BN of each block zero).
_base_ = './upernet_r50-spark_4xb4-160k_ade20k-512x512.py'

model = dict(backbone=dict(init_cfg=None))
