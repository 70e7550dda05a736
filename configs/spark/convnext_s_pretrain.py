# SparK ConvNeXt-S, ImageNet-1k, 1600 epochs (paper: 84.1 fine-tuned).
# As the official code (pretrain/utils/arg_util.py, pretrain/models/__init__.py):
# the ResNet recipe with LAMB betas (0.9, 0.999), drop path 0.2, and a
# LayerNorm over visible positions as the densify norm. The backbone's output
# norms norm0..norm3 are not used (SparK(output_norms=False), the default):
# the official encoder returns the raw stage outputs.
# Standalone: only the shared fragments (runtime, data, schedule, SparK).
_base_ = ['_base_/spark_runtime.py', '_base_/imagenet_pretrain.py',
          '_base_/lamb_1600e.py', '_base_/spark_model.py']

drop_path_rate = 0.2

model = dict(
    backbone=dict(type='ConvNeXt', arch='small', drop_path_rate=drop_path_rate,
                  out_indices=(0, 1, 2, 3), gap_before_final_norm=False),
    densify_norm_cfg=dict(type='LN2d', eps=1e-6),
    input_size={{_base_.input_size}},
    data_preprocessor={{_base_.data_preprocessor}})

optim_wrapper = dict(optimizer=dict(betas=(0.9, 0.999)))

# tools/train.py writes here unless --work-dir says otherwise; the export,
# <work_dir>/backbone.pth, is what the downstream configs read.
work_dir = 'work_dirs/convnext_s_pretrain'
