# SparK ConvNeXt-L: the ConvNeXt-S recipe with drop path 0.4.
_base_ = ['convnext_s_pretrain.py']

model = dict(backbone=dict(arch='large', drop_path_rate=0.4))

# tools/train.py writes here unless --work-dir says otherwise; the export,
# <work_dir>/backbone.pth, is what the downstream configs read.
work_dir = 'work_dirs/convnext_l_pretrain'
