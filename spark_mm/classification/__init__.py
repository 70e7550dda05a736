"""Classification transfer of SparK backbones (mmpretrain): ImageNet
fine-tuning pieces mmpretrain lacks (the official ResNet layer-wise lr decay,
batch mixup, pixel random erasing) and kNN evaluation.

Configs load it with ``custom_imports=dict(imports=['spark_mm',
'spark_mm.classification'])``. The generated labelled folder of the CPU demos
is in :mod:`spark_mm.datasets.synthetic`.
"""
from .batch_mixup import SparKBatchMixup
from .checks import NumClassesCheckHook
from .knn import KNNBankHook, KNNClassifier
from .layer_decay import (ResNetClsLayerDecayOptimWrapperConstructor,
                          resnet_cls_layer_ids)
from .transforms import PixelRandomErasing

__all__ = ['KNNBankHook', 'KNNClassifier', 'NumClassesCheckHook',
           'PixelRandomErasing', 'ResNetClsLayerDecayOptimWrapperConstructor',
           'SparKBatchMixup', 'resnet_cls_layer_ids']
