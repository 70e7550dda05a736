from .export_hook import ExportBackboneHook
from .optim_wrappers import AutocastOptimWrapper

__all__ = ['ExportBackboneHook', 'AutocastOptimWrapper']
