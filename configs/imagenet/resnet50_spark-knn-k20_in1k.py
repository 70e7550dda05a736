# kNN evaluation of a SparK ResNet-50 on ImageNet-1k (no training): the frozen
# backbone's global-average-pooled features, L2-normalized; the 20 most
# similar training images vote with weight exp(cos / 0.07) (the weighted kNN
# of Wu et al. 2018, as in DINO). mmpretrain's Accuracy scores the votes.
#   python tools/test.py configs/imagenet/resnet50_spark-knn-k20_in1k.py work_dirs/r50_pretrain/backbone.pth
# (a SparK pretraining checkpoint works too: its backbone.* weights are used)
# The bank of ImageNet-1k train holds 1.28M x 2048 floats (10 GB); to try it
# on a subset, give the bank dataset indices=N.
_base_ = ['_base_/finetune_runtime.py', '_base_/imagenet_finetune.py']

knn_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
test_dataloader = dict(
    batch_size=128, num_workers=8, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ImageNet', data_root='data/imagenet', split='val',
                 pipeline=knn_pipeline))
test_evaluator = dict(type='Accuracy', topk=(1, 5))
# The bank (mmpretrain's retriever prototype): ImageNet-1k train with the test
# pipeline, collected over all ranks before the first test batch; round_up=False
# so that no image is counted twice.
model = dict(
    type='KNNClassifier',
    backbone=dict(type='ResNet', depth=50, out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    num_classes=1000, k=20, temperature=0.07,
    prototype=dict(
        batch_size=128, num_workers=8,
        sampler=dict(type='DefaultSampler', shuffle=False, round_up=False),
        dataset=dict(type='ImageNet', data_root='data/imagenet', split='train',
                     pipeline=knn_pipeline)))
# nothing to train or validate
train_dataloader = None
train_cfg = None
val_dataloader = None
val_cfg = None
val_evaluator = None
optim_wrapper = None
