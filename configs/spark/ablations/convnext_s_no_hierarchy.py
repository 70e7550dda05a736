# Ablation (paper: 83.6 vs 84.1): only the coarsest encoder scale feeds the decoder.
_base_ = ['../convnext_s_pretrain.py']
model = dict(hierarchical=False)
