"""Random numbers of each training step as a function of (seed, rank, step).

mmengine checkpoints hold no random generator state, so a resumed run would
draw other masks, crops and drop-path samples than the run it continues.
Re-seeding python, numpy and torch before each epoch (data order, crops of
the first batch) and each iteration (masks, drop path, the next batch) from
the run's seed, the rank and the step makes a resumed run draw exactly what
the uninterrupted run drew, on every rank, with nothing to save.

An iteration-based loop resumed at iteration k first fetches (and discards)
k batches, with no hook in between, then trains on batch k. With
``num_workers=0`` the data pipeline (random flips, resizes, crops) runs in
the main process and draws from the same generators, which the skipped
batches have left in another state than the uninterrupted run had when it
fetched batch k. So the loop's batch iterator is also re-seeded before each
batch, from (seed, rank, batch count): batch k is drawn alike either way.
(With workers, mmengine seeds each worker from (seed, rank, worker), and the
skip replays their draws anyway.) An epoch-based loop resumed mid-epoch
(after a preemption, :mod:`.preemption`) skips batches the same way, so its
loader is re-seeded before each batch too, from the iteration that batch will
train: (seed, rank, iteration).

In an epoch-based loop the data pipeline itself (in the workers, if any) is
seeded per sample from (seed, epoch, sample index), see :mod:`.sample_seed`:
the same image gets the same crop and flip whatever the worker count,
persistent or not, and whether the run was interrupted or not.
"""
import random

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from torch.utils.data import DataLoader

from ..registry import HOOKS
from .sample_seed import seed_each_sample

_EPOCH, _ITER, _BATCH = 0, 1, 2


def seed_everything_for(seed: int, rank: int, stage: int, step: int) -> None:
    words = np.random.SeedSequence(
        [int(seed) % 2**32, rank, stage, step]).generate_state(2)
    random.seed(int(words[0]))
    np.random.seed(int(words[0]))
    torch.manual_seed(int(words[0]) << 32 | int(words[1]))


class _SeededBatches:
    """An iteration-based loop's batch iterator, re-seeded before each batch."""

    def __init__(self, batches, seed: int, rank: int) -> None:
        self.batches, self.seed, self.rank = batches, seed, rank
        self.fetched = 0

    def __iter__(self):
        return self

    def __next__(self):
        seed_everything_for(self.seed, self.rank, _BATCH, self.fetched)
        self.fetched += 1
        return next(self.batches)

    def __getattr__(self, name):
        return getattr(self.batches, name)


class _SeededEpochLoader:
    """An epoch-based loop's data loader, re-seeded before each batch from
    the iteration the batch will train (``loop.iter`` when it is fetched)."""

    def __init__(self, loader, seed: int, rank: int, loop) -> None:
        self.loader, self.seed, self.rank, self.loop = loader, seed, rank, loop

    def __iter__(self):
        batches = iter(self.loader)
        while True:
            seed_everything_for(self.seed, self.rank, _BATCH, self.loop.iter)
            try:
                batch = next(batches)
            except StopIteration:
                return
            yield batch

    def __len__(self):
        return len(self.loader)

    def __getattr__(self, name):
        return getattr(self.loader, name)


@HOOKS.register_module()
class StepSeedHook(Hook):
    """Re-seed all generators before each epoch, iteration and (iteration-based
    loops) batch; see the module doc."""

    priority = 'VERY_HIGH'

    def before_train(self, runner):
        loop = runner.train_loop
        batches = getattr(loop, 'dataloader_iterator', None)
        if batches is not None:  # an iteration loop: one iterator, whose
            # workers replay the same draws when a resume skips batches
            if not isinstance(batches, _SeededBatches):
                loop.dataloader_iterator = _SeededBatches(
                    batches, runner.seed, get_rank())
        elif not isinstance(loop.dataloader, _SeededEpochLoader):
            loader = loop.dataloader
            if isinstance(loader, DataLoader):
                loader = seed_each_sample(loader, runner.seed)
            loop.dataloader = _SeededEpochLoader(loader, runner.seed,
                                                 get_rank(), loop)

    def before_train_epoch(self, runner):
        seed_everything_for(runner.seed, get_rank(), _EPOCH, runner.epoch)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        seed_everything_for(runner.seed, get_rank(), _ITER, runner.iter)
