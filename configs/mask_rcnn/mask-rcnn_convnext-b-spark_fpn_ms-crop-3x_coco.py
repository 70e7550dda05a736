# Mask R-CNN ConvNeXt-B FPN 3x on COCO from SparK ConvNeXt-B weights (paper:
# 51.2 AP box / 45.1 AP mask). The official SparK mmdet recipe: ConvNeXt's
# 3x multi-scale + crop augmentation, AdamW 2e-4 at batch 16, wd 0.05,
# layer-wise lr decay 0.65 (mmdet's LearningRateDecayOptimizerConstructor,
# 12 layers for 27 blocks in stage 3), x0.2 at epochs 27 and 33, fp32.
_base_ = 'mmdet::convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py'
custom_imports = dict(imports=['spark_mm.detection', 'mmpretrain.models'],
                      allow_failed_imports=False)

# Backbone-only SparK ConvNeXt-B weights (tools/export_backbone.py or the
# pretraining's backbone.pth); for the full pretraining checkpoint set
# model.backbone.init_cfg.prefix=backbone.
pretrained = 'work_dirs/convnext_b_pretrain/backbone.pth'
pretrained_prefix = None

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.5,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained,
            prefix=pretrained_prefix)),
    neck=dict(in_channels=[128, 256, 512, 1024]))

max_epochs = 36
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[27, 33], gamma=0.2)
]
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='LearningRateDecayOptimizerConstructor',
    paramwise_cfg={
        'decay_rate': 0.65,
        'decay_type': 'layer_wise',
        'num_layers': 12
    },
    optimizer=dict(lr=2e-4, weight_decay=0.05))
auto_scale_lr = dict(enable=False, base_batch_size=16)  # --auto-scale-lr

# The safety hooks every config states (configs/spark/_base_/spark_runtime.py)
default_hooks = dict(checkpoint=dict(type='spark_mm.AtomicCheckpointHook'))
custom_hooks = [dict(type='spark_mm.NanGuardHook'),
                dict(type='spark_mm.StepSeedHook'),
                dict(type='spark_mm.PreemptionHook')]
