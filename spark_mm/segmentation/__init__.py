"""Semantic segmentation transfer with mmsegmentation (configs/upernet).

Imported by the UperNet configs (``custom_imports``); importing it registers:

- ``ResNetLayerDecayOptimWrapperConstructor`` (SparK's layer-wise lr decay for
  ResNet, :mod:`spark_mm.engine.layer_decay`) in mmseg's registry too, so
  ``constructor='ResNetLayerDecayOptimWrapperConstructor'`` works in a config
  with ``default_scope = 'mmseg'``; one class, registered in both;
- ``spark_mm.CheckedPretrained`` (:mod:`spark_mm.checkpoint.checked_pretrained`)
  is re-exported here: backbone weights that must fit (no missing keys).
"""
from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMSEG_CONSTRUCTORS
from mmseg.utils import register_all_modules

from ..checkpoint.checked_pretrained import CheckedPretrained, backbone_weights
from ..engine.layer_decay import ResNetLayerDecayOptimWrapperConstructor

# mmseg's components must be in its registries before a config names them.
register_all_modules(init_default_scope=False)
if 'ResNetLayerDecayOptimWrapperConstructor' not in MMSEG_CONSTRUCTORS.module_dict:
    MMSEG_CONSTRUCTORS.register_module(
        module=ResNetLayerDecayOptimWrapperConstructor)

__all__ = ['CheckedPretrained', 'backbone_weights',
           'ResNetLayerDecayOptimWrapperConstructor']
