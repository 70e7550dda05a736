"""Random numbers of each training step as a function of (seed, rank, step).

mmengine checkpoints hold no random generator state, so a resumed run would
draw other masks, crops and drop-path samples than the run it continues.
Re-seeding python, numpy and torch before each epoch (data order, crops of
the first batch) and each iteration (masks, drop path, the next batch) from
the run's seed, the rank and the step makes a resumed run draw exactly what
the uninterrupted run drew, on every rank, with nothing to save.
"""
import random

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook

from ..registry import HOOKS

_EPOCH, _ITER = 0, 1


def seed_everything_for(seed: int, rank: int, stage: int, step: int) -> None:
    words = np.random.SeedSequence(
        [int(seed) % 2**32, rank, stage, step]).generate_state(2)
    random.seed(int(words[0]))
    np.random.seed(int(words[0]))
    torch.manual_seed(int(words[0]) << 32 | int(words[1]))


@HOOKS.register_module()
class StepSeedHook(Hook):
    """Re-seed all generators before each epoch and iteration (see module doc)."""

    priority = 'VERY_HIGH'

    def before_train_epoch(self, runner):
        seed_everything_for(runner.seed, get_rank(), _EPOCH, runner.epoch)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        seed_everything_for(runner.seed, get_rank(), _ITER, runner.iter)
