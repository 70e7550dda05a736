from .atomic_checkpoint import AtomicCheckpointHook
from .checkpoint_safety import allow_mmengine_checkpoints
from .distributed import CPUDistributedDataParallel
from .export_hook import ExportBackboneHook
from .layer_decay import (ResNetClsLayerDecayOptimWrapperConstructor,
                          ResNetLayerDecayOptimWrapperConstructor)
from .nan_guard import NanGuardHook, NonFiniteLossError
from .optim_wrappers import AutocastOptimWrapper
from .precise_bn import PreciseBNBeforeValHook
from .schedulers import SparKCosineWeightDecay, SparKWarmupCosineLR
from .step_seed import StepSeedHook
from .visualization_hook import ReconstructionVisualizationHook

__all__ = ['ExportBackboneHook', 'AutocastOptimWrapper', 'AtomicCheckpointHook',
           'NanGuardHook', 'NonFiniteLossError', 'StepSeedHook',
           'CPUDistributedDataParallel', 'allow_mmengine_checkpoints',
           'ReconstructionVisualizationHook', 'PreciseBNBeforeValHook',
           'ResNetLayerDecayOptimWrapperConstructor',
           'ResNetClsLayerDecayOptimWrapperConstructor', 'SparKWarmupCosineLR',
           'SparKCosineWeightDecay']
