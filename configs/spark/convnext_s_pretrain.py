# SparK ConvNeXt-S, ImageNet-1k, 1600 epochs (paper: 84.1 fine-tuned).
# The densify norm is LayerNorm over visible positions, as in the official code.
_base_ = ['r50_pretrain.py']

model = dict(
    backbone=dict(_delete_=True, type='ConvNeXt', arch='small',
                  drop_path_rate=0.2, out_indices=(0, 1, 2, 3),
                  gap_before_final_norm=False),
    densify_norm_cfg=dict(type='LN2d', eps=1e-6))
