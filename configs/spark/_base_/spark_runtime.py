# Runtime shared by SparK pretraining configs: mmpretrain's, in our scope.
_base_ = ['mmpretrain::_base_/default_runtime.py']

default_scope = 'spark_mm'  # our SparK first, then everything of mmpretrain
custom_imports = dict(imports=['spark_mm'], allow_failed_imports=False)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='spark_mm.AtomicCheckpointHook', interval=1,
                    max_keep_ckpts=3))
# NanGuardHook: stop at a NaN/inf loss before it reaches a checkpoint;
# StepSeedHook: seeds from (seed, rank, step), so --resume continues exactly.
custom_hooks = [dict(type='ExportBackboneHook'), dict(type='NanGuardHook'),
                dict(type='StepSeedHook')]

randomness = dict(seed=0, diff_rank_seed=True)
