"""Classification transfer of SparK backbones (mmpretrain): ImageNet
fine-tuning pieces mmpretrain lacks (the official layer-wise lr decay for
ResNet-18 and timm's ResNet-200, the official batch mixup, pixel random
erasing) and the kNN vote over mmpretrain's retriever bank.

Configs load it with ``custom_imports=dict(imports=['spark_mm',
'spark_mm.classification'])``. The generated labelled folder of the CPU demos
is in :mod:`spark_mm.datasets.synthetic`.
"""
from .batch_mixup import SparKBatchMixup
from .checks import NumClassesCheckHook
from .knn import KNNClassifier, knn_vote
from .layer_decay import (ResNetClsLayerDecayOptimWrapperConstructor,
                          resnet_cls_layer_ids)
from .transforms import PixelRandomErasing

__all__ = ['KNNClassifier', 'NumClassesCheckHook',
           'PixelRandomErasing', 'ResNetClsLayerDecayOptimWrapperConstructor',
           'SparKBatchMixup', 'knn_vote', 'resnet_cls_layer_ids']
