"""Build a SparK model from a config, outside a training run.

What the tools that look into a model (tools/visualize_reconstruction.py,
tools/diagnose_mask_vanishing.py, tools/benchmark.py) and one-process tests
share: the config read for one process (SyncBN turned into BN, which needs
no process group) and the model built from it with a checkpoint's weights.
"""
import os
from typing import Optional, Union

from mmengine.config import Config, ConfigDict

from .checkpoint.loading import load_checkpoint_safely, state_dict_of
from .errors import SparKInputError
from .registry import MODELS

CONFIG_SUFFIXES = ('.py', '.json', '.yml', '.yaml')  # what mmengine reads


def read_config(path: str) -> Config:
    """mmengine's ``Config.fromfile(path)``; a path that is not a config file
    raises a one-line :class:`~spark_mm.errors.SparKInputError`
    (``FileNotFoundError`` where nothing is there)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f'config {path!r} does not exist')
    if os.path.splitext(path)[1] not in CONFIG_SUFFIXES:
        raise SparKInputError(
            f'config {path!r} is not a config file ({"/".join(CONFIG_SUFFIXES)}); '
            'pass one such as configs/spark/r50_pretrain.py')
    try:
        return Config.fromfile(path)
    except SyntaxError as error:
        raise SparKInputError(f'config {path!r} (or a _base_ it reads) is not '
                              f'valid Python: line {error.lineno}: {error.msg}') from error

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
    cfg = read_config(config) if isinstance(config, str) else config.copy()
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
