# SparK ResNet-50, ImageNet-1k, 1600 epochs: the official recipe
# (IN-1k fine-tune 80.6; COCO Mask R-CNN 1x 41.6/37.7, 2x 43.4/39.4).
_base_ = ['_base_/spark_runtime.py', '_base_/imagenet_pretrain.py',
          '_base_/lamb_1600e.py']

depth = 50
drop_path_rate = 0.05

model = dict(
    type='SparK',
    backbone=dict(type='ResNet', depth=depth, out_indices=(0, 1, 2, 3),
                  norm_cfg=dict(type='SyncBN'), drop_path_rate=drop_path_rate),
    neck=dict(type='LightUNetDecoder', width=768, norm_cfg=dict(type='SyncBN')),
    head=dict(type='SparKReconstructionHead', norm_pixel=True, masked_only=True),
    mask_ratio=0.6,
    sparse=True,
    hierarchical=True,
    use_pos_embed=False,
    # The fast path, same results: channels_last maps let sparse BN work on
    # the gathered visible rows (less memory, fewer passes); with `--amp` add
    # bf16/fp16 autocast. See README "Speed".
    channels_last=True,
    densify_norm_cfg=dict(type='SyncBN'),
    input_size={{_base_.input_size}},
    data_preprocessor={{_base_.data_preprocessor}})
