"""Config helpers shared by the tools."""
import torch
from mmengine.config import Config, ConfigDict

SYNC_BN_TYPES = ('SyncBN', 'MMSyncBN', 'nn.SyncBatchNorm', 'TorchSyncBN')


def revert_sync_bn_in_config(cfg: Config) -> int:
    """Replace SyncBN norm types by BN in ``cfg.model``; returns how many."""
    def walk(node) -> int:
        count = 0
        if isinstance(node, (dict, ConfigDict)):
            if node.get('type') in SYNC_BN_TYPES:
                node['type'] = 'BN'
                count += 1
            for value in node.values():
                count += walk(value)
        elif isinstance(node, (list, tuple)):
            count += sum(walk(item) for item in node)
        return count
    return walk(cfg.model)


def enable_amp(cfg: Config):
    """Mixed precision: mmengine's AmpOptimWrapper on GPU, bf16 autocast on CPU."""
    optim_wrapper = cfg.optim_wrapper
    if optim_wrapper.get('type', 'OptimWrapper') not in ('OptimWrapper',
                                                          'AmpOptimWrapper'):
        return
    if torch.cuda.is_available():
        optim_wrapper.type = 'AmpOptimWrapper'
        optim_wrapper.setdefault('loss_scale', 'dynamic')
    else:
        optim_wrapper.type = 'spark_mm.AutocastOptimWrapper'
        optim_wrapper.setdefault('dtype', 'bfloat16')
