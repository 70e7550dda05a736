# UperNet ConvNeXt-B on ADE20K (512x512, 160k iterations, batch 16 = 8 GPUs x 2,
# AMP) from SparK ConvNeXt-B weights:  bash tools/dist_train.sh <this config> 8
# The ConvNeXt-S config with what mmseg's own ConvNeXt-B UperNet config
# (convnext/convnext-base_upernet_8xb2-amp-160k_ade20k-512x512.py) changes:
# the backbone's width and drop path, the heads' input widths, its supervised
# checkpoint; everything else (optimizer, schedule, data, hooks) is the same.
_base_ = './upernet_convnext-s-spark_8xb2-amp-160k_ade20k-512x512.py'

# mmseg's ConvNeXt-B checkpoint (the supervised baseline's weights)
checkpoint_file = 'https://download.openmmlab.com/mmclassification/v0/convnext/downstream/convnext-base_3rdparty_32xb128-noema_in1k_20220301-2a0ee547.pth'  # noqa: E501
# Backbone-only SparK ConvNeXt-B weights (the pretraining's backbone.pth or
# tools/export_backbone.py); for the full pretraining checkpoint set
# model.backbone.init_cfg.prefix=backbone.
pretrained = 'work_dirs/convnext_b_pretrain/backbone.pth'

model = dict(
    backbone=dict(arch='base', drop_path_rate=0.4,
                  init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
