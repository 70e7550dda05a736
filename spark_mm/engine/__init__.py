"""Training machinery: hooks, optimizer wrappers and constructors, schedulers,
CPU distributed training."""
from .atomic_checkpoint_hook import AtomicCheckpointHook
from .cpu_sync_bn import CPUSyncBatchNorm, convert_sync_batchnorm_for_cpu
from .distributed import CPUDistributedDataParallel
from .export_hook import ExportBackboneHook
from .layer_decay import ResNetLayerDecayOptimWrapperConstructor
from .nan_guard import NanGuardHook
from .optim_wrappers import AutocastOptimWrapper
from .preemption import PreemptionHook
from .schedulers import (SparKCosineWeightDecay, SparKWarmupCosineLR,
                         spark_param_scheduler)
from .step_seed import StepSeedHook
from .visualization_hook import ReconstructionVisualizationHook

__all__ = ['AtomicCheckpointHook', 'CPUSyncBatchNorm',
           'convert_sync_batchnorm_for_cpu', 'CPUDistributedDataParallel',
           'ExportBackboneHook', 'ResNetLayerDecayOptimWrapperConstructor', 'NanGuardHook',
           'AutocastOptimWrapper', 'PreemptionHook', 'SparKCosineWeightDecay',
           'SparKWarmupCosineLR', 'spark_param_scheduler', 'StepSeedHook',
           'ReconstructionVisualizationHook']
