# SparK ResNet-152: the ResNet-50 recipe with drop path 0.10.
_base_ = ['r50_pretrain.py']

model = dict(backbone=dict(depth=152, drop_path_rate=0.10))

# tools/train.py writes here unless --work-dir says otherwise; the export,
# <work_dir>/backbone.pth, is what the downstream configs read.
work_dir = 'work_dirs/r152_pretrain'
