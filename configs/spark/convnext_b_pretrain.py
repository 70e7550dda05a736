# SparK ConvNeXt-B: the ConvNeXt-S recipe with drop path 0.3.
_base_ = ['convnext_s_pretrain.py']

model = dict(backbone=dict(arch='base', drop_path_rate=0.3))

# tools/train.py writes here unless --work-dir says otherwise; the export,
# <work_dir>/backbone.pth, is what the downstream configs read.
work_dir = 'work_dirs/convnext_b_pretrain'
