# UperNet R50 on ADE20K (512x512, 160k iterations, batch 16 = 4 GPUs x 4) from
# SparK ResNet-50 weights:  bash tools/dist_train.sh <this config> 4
# mmseg's UperNet R50 recipe (model, heads, data pipeline, 160k schedule,
# SyncBN) with its ConvNeXt UperNet optimizer (AdamW 1e-4, wd 0.05, 1500
# warm-up iterations, linear (poly power 1) decay to 0), and SparK's ResNet
# layer-wise lr decay instead of mmseg's ConvNeXt one.
_base_ = 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py'
# spark_mm.segmentation registers the ResNet layer-decay constructor in
# mmseg's registry and the CheckedPretrained initializer.
custom_imports = dict(imports=['spark_mm.segmentation'],
                      allow_failed_imports=False)

# SparK weights: the backbone-only file (<work_dir>/backbone.pth of the
# pretraining, or tools/export_backbone.py's backbone_mmdet.pth) with
# pretrained_prefix = None, or the full pretraining checkpoint with
#   --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/r50_pretrain/epoch_1600.pth \
#                 model.backbone.init_cfg.prefix=backbone.
# Default: the export of `python tools/train.py configs/spark/r50_pretrain.py`.
pretrained = 'work_dirs/r50_pretrain/backbone.pth'
pretrained_prefix = None

model = dict(
    pretrained=None,  # mmseg's base would load open-mmlab://resnet50_v1c
    backbone=dict(
        # SparK pretrains a plain ResNet (v1b: one 7x7 stem conv, strided 3x3
        # convs; mmseg's ResNet defaults), not mmseg's default ResNetV1c
        # (deep stem: other keys, refused by the load check below).
        type='ResNet',
        depth=50,
        norm_eval=False,
        # every backbone key must come from the checkpoint (one-line error
        # otherwise), see spark_mm/checkpoint/checked_pretrained.py
        init_cfg=dict(type='spark_mm.CheckedPretrained',
                      checkpoint=pretrained, prefix=pretrained_prefix)))

# AdamW as in mmseg's ConvNeXt UperNet recipe; no weight decay on norms and
# biases (what mmseg's LearningRateDecayOptimizerConstructor does for 1-D
# parameters); lr x 0.9 per ResNet layer id from the heads down (mmseg's
# ConvNeXt rate): heads 1, layer4 0.9, ..., R50 stem 0.9^6.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999),
                   weight_decay=0.05),
    constructor='ResNetLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=0.9, norm_decay_mult=0.0,
                       bias_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=1500),
    dict(type='PolyLR', power=1.0, begin=1500, end=160000, eta_min=0.0,
         by_epoch=False)
]
# --auto-scale-lr rescales the lr from the recipe's global batch of 16
auto_scale_lr = dict(enable=False, base_batch_size=16)

# The safety hooks every config states (configs/spark/_base_/spark_runtime.py)
default_hooks = dict(checkpoint=dict(type='spark_mm.AtomicCheckpointHook'))
custom_hooks = [dict(type='spark_mm.NanGuardHook'),
                dict(type='spark_mm.StepSeedHook'),
                dict(type='spark_mm.PreemptionHook')]
