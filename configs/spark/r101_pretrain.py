# SparK ResNet-101: the ResNet-50 recipe with drop path 0.08.
_base_ = ['r50_pretrain.py']

model = dict(backbone=dict(depth=101, drop_path_rate=0.08))

# tools/train.py writes here unless --work-dir says otherwise; the export,
# <work_dir>/backbone.pth, is what the downstream configs read.
work_dir = 'work_dirs/r101_pretrain'
