# Ablation (paper: 83.3 vs 84.1): reconstruction loss on all patches, not
# only the masked ones.
_base_ = ['../convnext_s_pretrain.py']
model = dict(head=dict(masked_only=False))

# tools/train.py writes here unless --work-dir says otherwise; the export,
# <work_dir>/backbone.pth, is what the downstream configs read.
work_dir = 'work_dirs/convnext_s_loss_all_patches'
