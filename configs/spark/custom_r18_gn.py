# SparK ResNet-18 with GroupNorm on your own images (e.g. medical scans, where
# batches are small and batch statistics unreliable): custom_r18.py with every
# batch norm of the backbone replaced by GroupNorm (32 groups), whose
# statistics come from the visible positions of each image.
#   python tools/train.py configs/spark/custom_r18_gn.py --data-root /path/to/images
# <work_dir>/backbone.pth loads into mmpretrain's / mmdet's ResNet-18 with
# norm_cfg=dict(type='GN', num_groups=32) (docs/any_cnn.md: a CPU demo).
_base_ = ['custom_r18.py']

work_dir = 'work_dirs/custom_r18_gn'

model = dict(
    backbone=dict(norm_cfg=dict(_delete_=True, type='GN', num_groups=32,
                                requires_grad=True)))
