"""Configs for one process: SyncBN turned into BN.

Every tool that builds a model outside a distributed launch (training with
``--launcher none``, the benchmark, the reconstruction pictures) reads its
config through here.
"""
from typing import Optional, Union

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


def single_process_config(config: Union[str, Config],
                          cfg_options: Optional[dict] = None) -> Config:
    """``config`` (a path, or a Config that is copied) with ``cfg_options``
    merged and SyncBN turned into BN."""
    cfg = Config.fromfile(config) if isinstance(config, str) else config.copy()
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    revert_sync_bn_in_config(cfg)
    return cfg
