"""Put the reliability hooks into any config (SparK or mmdet) that lacks them."""
from mmengine.config import Config

CHECKPOINT_HOOK_TYPES = ('CheckpointHook', 'mmengine.CheckpointHook',
                         'mmpretrain.CheckpointHook', 'mmdet.CheckpointHook')
GUARD_HOOKS = ('NanGuardHook', 'StepSeedHook')


def use_reliability_hooks(cfg: Config) -> None:
    """Atomic checkpoints, the NaN guard and per-step seeds; idempotent."""
    checkpoint = cfg.get('default_hooks', {}).get('checkpoint')
    if checkpoint is not None and checkpoint.get('type') in CHECKPOINT_HOOK_TYPES:
        checkpoint['type'] = 'spark_mm.AtomicCheckpointHook'
    custom_hooks = list(cfg.get('custom_hooks') or [])
    present = {str(hook.get('type', '')).split('.')[-1] for hook in custom_hooks}
    custom_hooks += [dict(type=f'spark_mm.{name}') for name in GUARD_HOOKS
                     if name not in present]
    cfg.custom_hooks = custom_hooks
