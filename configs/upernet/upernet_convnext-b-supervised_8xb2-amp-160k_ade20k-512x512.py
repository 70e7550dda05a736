# Baseline: the ConvNeXt-B UperNet recipe from the supervised ImageNet-1k
# weights mmseg's own config uses (mmpretrain's converted official ConvNeXt-B;
# downloaded on first use), through the same load check: the classifier has
# norm3 only, so norm0..norm2 start fresh, as in mmseg's run.
_base_ = './upernet_convnext-b-spark_8xb2-amp-160k_ade20k-512x512.py'

supervised = {{_base_.checkpoint_file}}
model = dict(
    backbone=dict(
        init_cfg=dict(type='spark_mm.CheckedPretrained',
                      checkpoint=supervised, prefix='backbone.')))
