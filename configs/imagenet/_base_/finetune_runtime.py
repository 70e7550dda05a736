# Runtime shared by the classification transfer configs: mmpretrain's, in our
# scope (spark_mm components first, then everything of mmpretrain).
_base_ = ['mmpretrain::_base_/default_runtime.py']

default_scope = 'spark_mm'
custom_imports = dict(imports=['spark_mm', 'spark_mm.classification'],
                      allow_failed_imports=False)

# The safety hooks every config of ours states (configs/spark/_base_/
# spark_runtime.py says why); a config that sets custom_hooks replaces this
# list and states the two again.
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=100),
    checkpoint=dict(type='spark_mm.AtomicCheckpointHook', interval=1,
                    max_keep_ckpts=3))
# NanGuardHook: stop at the first NaN/inf loss (SparK #27: NaN at batch 2048)
# with one line naming the last good checkpoint; StepSeedHook: exact resume.
custom_hooks = [dict(type='NanGuardHook'), dict(type='StepSeedHook'),
                dict(type='PreemptionHook')]

randomness = dict(seed=0, diff_rank_seed=True)
