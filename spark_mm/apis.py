"""Build a SparK model from a config, outside a training run.

What the tools that look into a model (tools/visualize_reconstruction.py,
tools/diagnose_mask_vanishing.py, tools/benchmark.py) and one-process tests
share: the config read for one process (SyncBN turned into BN, which needs
no process group) and the model built from it with a checkpoint's weights.
"""
from typing import Optional, Union

from mmengine.config import Config, ConfigDict

from .checkpoint.loading import load_checkpoint_safely, state_dict_of
from .registry import MODELS

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


def build_spark(config: Union[str, Config], checkpoint: Optional[str] = None,
                device: str = 'cpu', cfg_options: Optional[dict] = None):
    """The SparK model of ``config`` with the weights of ``checkpoint``, in eval mode.

    SyncBN in the config becomes BN (:func:`single_process_config`).
    """
    model = MODELS.build(single_process_config(config, cfg_options).model)
    if checkpoint is not None:
        model.load_state_dict(state_dict_of(load_checkpoint_safely(checkpoint)))
    return model.to(device).eval()
