# kNN evaluation of a SparK ConvNeXt-S on ImageNet-1k: as resnet50_spark-knn-
# k20_in1k.py, with ConvNeXt's own pooled and normalized output (global
# average pooling, then its final LayerNorm).
#   python tools/test.py configs/imagenet/convnext-s_spark-knn-k20_in1k.py work_dirs/convnext_s_pretrain/backbone.pth
_base_ = ['resnet50_spark-knn-k20_in1k.py']

model = dict(
    backbone=dict(_delete_=True, type='ConvNeXt', arch='small',
                  gap_before_final_norm=True),
    neck=None)
