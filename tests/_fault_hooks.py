"""A hook the elastic-restart tests import into their training processes."""
import os
import signal

import torch.distributed as dist
from mmengine.hooks import Hook

from spark_mm.registry import HOOKS


@HOOKS.register_module()
class KillAt(Hook):
    """SIGKILL this process when iteration ``at`` (0-based) starts, on rank
    ``rank`` of the group's first start only (torchrun's
    ``TORCHELASTIC_RESTART_COUNT`` is 0): a node dying, at a chosen moment,
    once."""

    def __init__(self, at: int, rank: int = 1):
        self.at, self.rank = at, rank

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        first_start = os.environ.get('TORCHELASTIC_RESTART_COUNT', '0') == '0'
        if first_start and runner.iter == self.at and dist.get_rank() == self.rank:
            os.kill(os.getpid(), signal.SIGKILL)
