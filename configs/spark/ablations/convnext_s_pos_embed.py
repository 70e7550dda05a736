# Ablation (paper: 83.9 vs 84.1): learned absolute position embeddings added
# to the densified features.
_base_ = ['../convnext_s_pretrain.py']
model = dict(use_pos_embed=True)

# tools/train.py writes here unless --work-dir says otherwise; the export,
# <work_dir>/backbone.pth, is what the downstream configs read.
work_dir = 'work_dirs/convnext_s_pos_embed'
