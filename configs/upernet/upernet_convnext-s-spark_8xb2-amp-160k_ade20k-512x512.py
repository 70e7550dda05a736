# UperNet ConvNeXt-S on ADE20K (512x512, 160k iterations, batch 16 = 8 GPUs x 2,
# AMP) from SparK ConvNeXt-S weights:  bash tools/dist_train.sh <this config> 8
# mmseg's own ConvNeXt UperNet recipe unchanged (AdamW 1e-4, wd 0.05, mmseg's
# stage-wise lr decay 0.9 over 12 layers, 1500 warm-up iterations, linear decay
# to 0, SyncBN heads, slide inference 512/341); only the weights differ.
_base_ = 'mmseg::convnext/convnext-small_upernet_8xb2-amp-160k_ade20k-512x512.py'
custom_imports = dict(imports=['spark_mm.segmentation', 'mmpretrain.models'],
                      allow_failed_imports=False)

# Backbone-only SparK ConvNeXt-S weights (the pretraining's backbone.pth or
# tools/export_backbone.py); for the full pretraining checkpoint set
# model.backbone.init_cfg.prefix=backbone.
pretrained = 'work_dirs/convnext_s_pretrain/backbone.pth'
pretrained_prefix = None

# Every backbone key must come from the checkpoint except ConvNeXt's per-stage
# output norms norm0..norm3, which SparK does not pretrain (start at weight 1,
# bias 0; logged), see spark_mm/checkpoint/checked_pretrained.py.
model = dict(
    backbone=dict(
        init_cfg=dict(_delete_=True, type='spark_mm.CheckedPretrained',
                      checkpoint=pretrained, prefix=pretrained_prefix)))
# --auto-scale-lr rescales the lr from the recipe's global batch of 16
auto_scale_lr = dict(enable=False, base_batch_size=16)

# The safety hooks every config states (configs/spark/_base_/spark_runtime.py)
default_hooks = dict(checkpoint=dict(type='spark_mm.AtomicCheckpointHook'))
custom_hooks = [dict(type='spark_mm.NanGuardHook'),
                dict(type='spark_mm.StepSeedHook'),
                dict(type='spark_mm.PreemptionHook')]
