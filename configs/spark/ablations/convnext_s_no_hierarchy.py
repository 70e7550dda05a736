# Ablation (paper: 83.6 vs 84.1): only the coarsest encoder scale feeds the decoder.
_base_ = ['../convnext_s_pretrain.py']
model = dict(hierarchical=False)

# tools/train.py writes here unless --work-dir says otherwise; the export,
# <work_dir>/backbone.pth, is what the downstream configs read.
work_dir = 'work_dirs/convnext_s_no_hierarchy'
