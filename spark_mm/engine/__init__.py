from .export_hook import ExportBackboneHook
from .optim_wrappers import AutocastOptimWrapper
from .visualization_hook import ReconstructionVisualizationHook

__all__ = ['ExportBackboneHook', 'AutocastOptimWrapper',
           'ReconstructionVisualizationHook']
