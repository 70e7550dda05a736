# Ablation (paper: 83.9 vs 84.1): learned absolute position embeddings added
# to the densified features.
_base_ = ['../convnext_s_pretrain.py']
model = dict(use_pos_embed=True)
