# Ablation (paper: 83.2 vs 84.1): dense convolution on the zero-outed image
# instead of sparse convolution.
_base_ = ['../convnext_s_pretrain.py']
model = dict(sparse=False)
