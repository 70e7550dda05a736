# Runtime shared by SparK pretraining configs: mmpretrain's, in our scope.
_base_ = ['mmpretrain::_base_/default_runtime.py']

default_scope = 'spark_mm'  # our SparK first, then everything of mmpretrain
custom_imports = dict(imports=['spark_mm'], allow_failed_imports=False)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3))
custom_hooks = [dict(type='ExportBackboneHook')]

randomness = dict(seed=0, diff_rank_seed=True)
