# CPU demo of the kNN evaluation (resnet50_spark-knn-k20_in1k.py) on the
# generated 4-class folder (data/spark_cls_demo, written on first use): bank =
# its train split, queries = its val split.
#   python tools/test.py configs/imagenet/demo_r18_knn.py work_dirs/demo_r18/backbone.pth
_base_ = ['resnet50_spark-knn-k20_in1k.py']

data_root = 'data/spark_cls_demo'
demo_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=73, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=64),
    dict(type='PackInputs'),
]
test_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='SparKDemoLabelledImages', root=data_root,
                 split='val', pipeline=demo_pipeline))
test_evaluator = dict(type='Accuracy', topk=(1, ))
model = dict(
    backbone=dict(depth=18), num_classes=4, k=10,
    prototype=dict(
        batch_size=16, num_workers=0,
        dataset=dict(_delete_=True, type='SparKDemoLabelledImages',
                     root=data_root, split='train', pipeline=demo_pipeline)))
