# Runtime shared by SparK pretraining configs: mmpretrain's, in our scope.
_base_ = ['mmpretrain::_base_/default_runtime.py']

default_scope = 'spark_mm'  # our SparK first, then everything of mmpretrain
custom_imports = dict(imports=['spark_mm'], allow_failed_imports=False)

# The safety hooks, stated by every config of ours (tools/train.py adds none;
# tests/test_configs_runtime.py checks them all): AtomicCheckpointHook writes
# <name>.partial and renames it, so a kill never leaves a torn checkpoint;
# NanGuardHook: stop at a NaN/inf loss before it reaches a checkpoint;
# StepSeedHook: seeds from (seed, rank, step), so --resume continues exactly;
# PreemptionHook: on SIGTERM/SIGUSR1, save the current iteration and exit 75.
# A config that sets custom_hooks replaces this whole list: it states the
# three again.
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='spark_mm.AtomicCheckpointHook', interval=1,
                    max_keep_ckpts=3))
custom_hooks = [dict(type='ExportBackboneHook'), dict(type='NanGuardHook'),
                dict(type='StepSeedHook'), dict(type='PreemptionHook')]

randomness = dict(seed=0, diff_rank_seed=True)
