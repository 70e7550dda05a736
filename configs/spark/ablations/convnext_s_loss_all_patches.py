# Ablation (paper: 83.3 vs 84.1): reconstruction loss on all patches, not
# only the masked ones.
_base_ = ['../convnext_s_pretrain.py']
model = dict(head=dict(masked_only=False))
