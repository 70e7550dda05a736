# SparK ResNet-50, ImageNet-1k, 1600 epochs: the official recipe
# (IN-1k fine-tune 80.6; COCO Mask R-CNN 1x 41.6/37.7, 2x 43.4/39.4).
# _base_/spark_model.py holds SparK's own settings (mask ratio, decoder, loss),
# _base_/lamb_1600e.py the optimizer and schedule.
_base_ = ['_base_/spark_runtime.py', '_base_/imagenet_pretrain.py',
          '_base_/lamb_1600e.py', '_base_/spark_model.py']

depth = 50
drop_path_rate = 0.05

model = dict(
    backbone=dict(type='ResNet', depth=depth, out_indices=(0, 1, 2, 3),
                  norm_cfg=dict(type='SyncBN'), drop_path_rate=drop_path_rate),
    densify_norm_cfg=dict(type='SyncBN'),
    input_size={{_base_.input_size}},
    data_preprocessor={{_base_.data_preprocessor}})

# tools/train.py writes here unless --work-dir says otherwise; the export,
# <work_dir>/backbone.pth, is what the downstream configs read.
work_dir = 'work_dirs/r50_pretrain'
