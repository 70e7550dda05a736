"""A hook the preemption tests import into their training processes."""
import os
import signal

import torch.distributed as dist
from mmengine.hooks import Hook

from spark_mm.registry import HOOKS


@HOOKS.register_module()
class SignalAt(Hook):
    """Send ``signal`` to this process while iteration ``at`` (0-based) runs,
    on rank ``rank`` only: what a scheduler does, at a chosen moment."""

    def __init__(self, at: int, rank: int = 0, signal: str = 'SIGTERM'):
        self.at, self.rank, self.signal = at, rank, signal

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        rank = dist.get_rank() if dist.is_initialized() else 0
        if runner.iter == self.at and rank == self.rank:
            os.kill(os.getpid(), getattr(signal, self.signal))
