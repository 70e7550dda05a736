"""Object detection transfer with mmdetection (configs/mask_rcnn).

Imported by the Mask R-CNN configs (``custom_imports``), never by
``import spark_mm``, so that the package works without mmdet. Importing it
registers, in mmdet's registries (configs with ``default_scope = 'mmdet'``):

- ``ResNetLayerDecayOptimWrapperConstructor``: SparK's layer-wise lr decay
  for ResNet (:mod:`spark_mm.engine.layer_decay`), one class registered in
  both our registry and mmdet's;
- ``PreciseBNBeforeValHook``: BN statistics re-estimated before each
  evaluation (:mod:`.precise_bn`).
"""
from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMDET_CONSTRUCTORS
from mmdet.utils import register_all_modules

from .. import registry  # noqa: F401  (spark_mm's registries first)
from ..engine.layer_decay import ResNetLayerDecayOptimWrapperConstructor
from .precise_bn import PreciseBNBeforeValHook

# mmdet's components must be in its registries before a config names them.
register_all_modules(init_default_scope=False)
if 'ResNetLayerDecayOptimWrapperConstructor' not in MMDET_CONSTRUCTORS.module_dict:
    MMDET_CONSTRUCTORS.register_module(
        module=ResNetLayerDecayOptimWrapperConstructor)

__all__ = ['PreciseBNBeforeValHook', 'ResNetLayerDecayOptimWrapperConstructor']
