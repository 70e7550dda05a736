# ImageNet-1k fine-tuning of a SparK ResNet-50: the official recipe
# (paper: 80.6 top-1). Every number below is from keyu-tian/SparK
# downstream_imagenet/: arg.py HP_DEFAULT_VALUES['resnet50'] =
#   (bs 4096, ep 300, wp_ep 5, opt 'lamb', base_lr 0.002, lr_scale 0.7,
#    wd 0.02, mixup 0.1, rep_aug 0, drop_path 0.05, ema 0.9999),
#   clip -1 (none), img_size 224, sbn True (SyncBN), lr = base_lr * bs / 256;
# util.py create_model_opt (optimizer, mixup, loss), lr_decay.py (schedule,
# weight-decay groups), models/__init__.py (layer ids), data.py (augmentation,
# see _base_/imagenet_finetune.py).
# Weights: the backbone of a SparK pretraining, exported (backbone.pth) or
# straight from its checkpoint with init_cfg.prefix='backbone.'.
# _base_/spark_finetune.py: data, batch 4096, validation intervals, EMA.
_base_ = ['_base_/spark_finetune.py']

max_epochs = 300
warmup_epochs = 5
base_lr = 0.002

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ResNet', depth=50, out_indices=(3, ),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        # timm ResNet drop_path_rate: linear 0 -> 0.05 over the blocks,
        # as mmpretrain's ResNet
        drop_path_rate=0.05,
        # 'Pretrained', not spark_mm.CheckedPretrained: mmpretrain's ResNet
        # skips its zero_init_residual (last BN of each block to 0) after
        # loading only for that type name
        init_cfg=dict(type='Pretrained',
                      checkpoint='work_dirs/r50_pretrain/backbone.pth')),
    neck=dict(type='GlobalAveragePooling'),
    # timm BinaryCrossEntropy (LAMB runs) on the mixup target smoothed by
    # 0.1: (1 - 0.1) * mixed one-hot + 0.1 / 1000, mean over batch x classes.
    # mmpretrain's ClsHead divides the summed BCE by the batch only, so
    # loss_weight 1 / num_classes gives the official mean.
    # The head keeps mmpretrain's Normal(std=0.01) init (timm's fc: torch
    # default); the backbone comes from the checkpoint either way.
    head=dict(type='LinearClsHead', num_classes=1000, in_channels=2048,
              loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                        mode='original', use_sigmoid=True,
                        loss_weight=1.0 / 1000),
              topk=(1, 5)),
    # mixup.py BatchMixup(mixup_alpha=0.1, cutmix_alpha=1.0, prob=1.0,
    # switch_prob=0.5, mode='batch', correct_lam=True): every batch mixed,
    # half by mixup, half by CutMix, image i with image B-1-i
    # (spark_mm/classification/batch_mixup.py)
    train_cfg=dict(augments=dict(type='SparKBatchMixup', mixup_alpha=0.1,
                                 cutmix_alpha=1.0, prob=1.0,
                                 switch_prob=0.5)))

optim_wrapper = dict(
    type='OptimWrapper',
    # timm Lamb(max_grad_norm=1e7, always_adapt=True, bias_correction=False),
    # default betas (0.9, 0.999), eps 1e-6; no gradient clipping (clip -1)
    optimizer=dict(type='Lamb', lr=base_lr * 4096 / 256,
                   weight_decay=0.02, betas=(0.9, 0.999), eps=1e-6,
                   bias_correction=False, always_adapt=True,
                   max_grad_norm=1e7),
    # lr x 0.7 ** (N + 1 - layer id), N = 6 for R50 (mmpretrain's
    # ResNet.get_layer_depth is the official rule); no weight decay on 1-D
    # parameters and biases
    constructor='LearningRateDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.7, flat_decay_mult=0.0,
                       bias_decay_mult=0.0))

# lr_decay.py lr_wd_annealing, per iteration: 0.005 -> 1 x lr linearly over the
# warm-up, then cosine to 0.001 x lr at the last iteration; weight decay fixed.
param_scheduler = [
    dict(type='SparKWarmupCosineLR', warmup=warmup_epochs, by_epoch=True,
         begin=0, end=max_epochs, convert_to_iter_based=True)]
train_cfg = dict(max_epochs=max_epochs,
                 dynamic_intervals=[(max_epochs // 3, 1)])
