# Ablation (paper: 83.2 vs 84.1): dense convolution on the zero-outed image
# instead of sparse convolution.
_base_ = ['../convnext_s_pretrain.py']
model = dict(sparse=False)

# tools/train.py writes here unless --work-dir says otherwise; the export,
# <work_dir>/backbone.pth, is what the downstream configs read.
work_dir = 'work_dirs/convnext_s_zero_outing'
