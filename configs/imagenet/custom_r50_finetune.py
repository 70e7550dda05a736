# Fine-tune a SparK ResNet-50 on your own labelled images, one class per
# sub-folder (mmpretrain CustomDataset):
#   data/custom/train/<class>/*.jpg   data/custom/val/<class>/*.jpg
#   python tools/train.py configs/imagenet/custom_r50_finetune.py \
#       --data-root /path/to/folder --cfg-options model.head.num_classes=5 \
#       data_preprocessor.num_classes=5 model.head.loss.loss_weight=0.2
# Weights: the export of configs/spark/custom_r50.py (SparK on your own
# unlabelled images); the ImageNet one instead:
#   --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/r50_pretrain/backbone.pth
# (or a SparK pretraining checkpoint with model.backbone.init_cfg.prefix=backbone.)
# The official ImageNet recipe (augmentation, LAMB, layer-wise lr decay 0.7,
# mixup/cutmix, label smoothing, EMA) at one GPU's batch of 64, 100 epochs,
# lr = 0.002 x 64 / 256.
_base_ = ['resnet50_spark-ft_8xb512-lamb-coslr-300e_in1k.py']

data_root = 'data/custom'
num_classes = 10  # the number of class sub-folders
batch_size = 64
max_epochs = 100
warmup_epochs = 5

data_preprocessor = dict(num_classes=num_classes)
# loss_weight: the official BCE is a mean over classes too (see the R50 config)
model = dict(
    backbone=dict(init_cfg=dict(checkpoint='work_dirs/custom_r50/backbone.pth')),
    head=dict(num_classes=num_classes, topk=(1, ),
              loss=dict(loss_weight=1.0 / num_classes)))
train_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root,
                 data_prefix='train', with_label=True,
                 pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root,
                 data_prefix='val', with_label=True,
                 pipeline={{_base_.val_pipeline}}))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=0.002 * batch_size / 256))
param_scheduler = [
    dict(type='SparKWarmupCosineLR', warmup=warmup_epochs, by_epoch=True,
         begin=0, end=max_epochs, convert_to_iter_based=True)]
train_cfg = dict(max_epochs=max_epochs,
                 dynamic_intervals=[(max_epochs // 3, 1)])
auto_scale_lr = dict(base_batch_size=batch_size)
# NumClassesCheckHook: a folder whose class count differs from num_classes
# stops at once with one line saying what to set
custom_hooks = [
    dict(type='NanGuardHook'), dict(type='StepSeedHook'),
    dict(type='PreemptionHook'),
    dict(type='NumClassesCheckHook'),
    dict(type='EMAHook', momentum=1 - 0.9999, update_buffers=True,
         priority='ABOVE_NORMAL')]
