"""Classification transfer of SparK backbones (mmpretrain): ImageNet
fine-tuning pieces mmpretrain lacks, kNN evaluation, and generated labelled
folders for the CPU demos.

Configs load it with ``custom_imports=dict(imports=['spark_mm',
'spark_mm.classification'])``; the ResNet layer-wise lr decay of the
fine-tuning recipe lives with the detection one in
:mod:`spark_mm.engine.layer_decay`.
"""
from .batch_mixup import SparKBatchMixup
from .checks import NumClassesCheckHook
from .knn import KNNBankHook, KNNClassifier
from .labelled_folder import SparkDemoLabelledImages, make_labelled_folder
from .transforms import PixelRandomErasing

__all__ = ['KNNBankHook', 'KNNClassifier', 'NumClassesCheckHook',
           'PixelRandomErasing', 'SparKBatchMixup', 'SparkDemoLabelledImages',
           'make_labelled_folder']
