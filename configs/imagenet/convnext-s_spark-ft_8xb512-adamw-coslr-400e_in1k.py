# ImageNet-1k fine-tuning of a SparK ConvNeXt-S: the official recipe
# (paper: 84.1). Numbers from keyu-tian/SparK downstream_imagenet/: arg.py
# HP_DEFAULT_VALUES['convnext_small'] =
#   (bs 4096, ep 400, wp_ep 20, opt 'adam' (AdamW), base_lr 2e-4,
#    lr_scale 0.7, wd 0.01, mixup 0.8, rep_aug 3, drop_path 0.3, ema 0.9999),
#   lr = base_lr * bs / 256, no clipping; util.py create_model_opt (AdamW,
# SoftTargetCrossEntropy, BatchMixup with label smoothing 0.1),
# models/__init__.py convnext_get_layer_id_and_scale_exp (layer ids),
# data.py (augmentation, repeated augmentation sampler).
# _base_/spark_finetune.py: data, batch 4096, validation intervals, EMA.
_base_ = ['_base_/spark_finetune.py']

max_epochs = 400
warmup_epochs = 20
base_lr = 2e-4

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ConvNeXt', arch='small', drop_path_rate=0.3,
        layer_scale_init_value=1e-6, gap_before_final_norm=True,
        init_cfg=dict(type='spark_mm.CheckedPretrained',
                      checkpoint='work_dirs/convnext_s_pretrain/backbone.pth')),
    # SoftTargetCrossEntropy on the mixup target smoothed by 0.1; the head is
    # initialized as the official ConvNeXt's (trunc normal std 0.02, bias 0)
    head=dict(type='LinearClsHead', num_classes=1000, in_channels=768,
              loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                        mode='original', use_sigmoid=False),
              init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02,
                            bias=0.0),
              topk=(1, 5)),
    # mixup.py BatchMixup(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0,
    # switch_prob=0.5): as the ResNet recipe with mixup alpha 0.8
    train_cfg=dict(augments=dict(type='SparKBatchMixup', mixup_alpha=0.8,
                                 cutmix_alpha=1.0, prob=1.0,
                                 switch_prob=0.5)))

# timm RepeatAugSampler(num_repeats=3) (rep_aug 3)
train_dataloader = dict(
    sampler=dict(type='RepeatAugSampler', num_repeats=3, shuffle=True))

optim_wrapper = dict(
    type='OptimWrapper',
    # timm AdamW: betas (0.9, 0.999), eps 1e-8
    optimizer=dict(type='AdamW', lr=base_lr * 4096 / 256,
                   weight_decay=0.01, betas=(0.9, 0.999), eps=1e-8),
    # mmpretrain's ConvNeXt layer ids are the official ones (12 layers for
    # 27-block stage 3: downsample 0 / 1-3, stages 1, 2, 3 + b // 3, 12, head
    # 13; tests/test_classification.py checks every parameter); no weight
    # decay on 1-D parameters (norms, biases, layer scales 'gamma')
    constructor='LearningRateDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.7, flat_decay_mult=0.0,
                       bias_decay_mult=0.0))

param_scheduler = [
    dict(type='SparKWarmupCosineLR', warmup=warmup_epochs, by_epoch=True,
         begin=0, end=max_epochs, convert_to_iter_based=True)]
train_cfg = dict(max_epochs=max_epochs,
                 dynamic_intervals=[(max_epochs // 3, 1)])
