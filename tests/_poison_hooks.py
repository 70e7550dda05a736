"""A hook the distributed NaN test imports into its training processes."""
import torch.distributed as dist
from mmengine.hooks import Hook

from spark_mm.registry import HOOKS


@HOOKS.register_module()
class PoisonOneRank(Hook):
    """From iteration ``at`` on, rank ``rank``'s decoder outputs NaN."""

    def __init__(self, at: int = 1, rank: int = 1):
        self.at, self.rank = at, rank

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == self.at and dist.get_rank() == self.rank:
            model = getattr(runner.model, 'module', runner.model)
            model.neck.register_forward_hook(lambda m, a, out: out * float('nan'))
