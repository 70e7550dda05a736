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
fetched batch k. So the loop's batch iterator is also re-seeded before and
after each batch, from (seed, rank, batch count): batch k is drawn alike
either way, and what runs between the fetch and the next iteration (precise
BN) draws alike whether the batch was loaded here or in a worker. An
epoch-based loop resumed mid-epoch
(after a preemption, :mod:`.preemption`) skips batches the same way, so its
loader is re-seeded before each batch too, from the iteration that batch will
train: (seed, rank, iteration).

The data pipeline itself (in the workers, if any) is seeded per sample,
see :mod:`.sample_seed`: from (seed, epoch, sample index) in an epoch-based
loop, from (seed, pass, batch position, sample index) in an iteration-based
one. The same image gets the same crop and flip whatever the worker count,
persistent or not, and whether the run was interrupted or not.

An iteration-based loop's data iterator is made when the loop is built,
and with workers it starts prefetching then, taking batches from the
samplers. A loader rebuilt on those samplers would start after the prefetched
batches, and worse: mmdet's ``AspectRatioBatchSampler`` keeps its buckets on
the object, shared by its iterators, and yields a bucket when its length
equals the batch size; the first iterator, suspended after yielding a full
bucket, leaves it full, the second one overfills it and then loops forever on
the endless ``InfiniteSampler`` (and ``InfiniteSampler``'s one index
generator is closed for good when the first iterator is collected). So the
seeded loader of an iteration loop draws from samplers built again from the
config.
"""
import copy
import random

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import DATA_SAMPLERS
from torch.utils.data import DataLoader

from ..registry import HOOKS
from .sample_seed import seed_each_sample, seed_each_sample_of_stream

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
        batch = next(self.batches)
        seed_everything_for(self.seed, self.rank, _BATCH, self.fetched)
        self.fetched += 1
        return batch

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


def _fresh_samplers(runner, loader):
    """The training loader's sampler and batch sampler built again from the
    config, with the seed the first build gave the sampler; ``None`` where
    the config does not say how (a runner built from objects)."""
    stated = runner.cfg.get('train_dataloader')
    if not isinstance(stated, dict) or not isinstance(
            stated.get('sampler'), dict):
        return None
    old_sampler = loader.batch_sampler.sampler
    sampler = DATA_SAMPLERS.build(
        copy.deepcopy(stated['sampler']),
        default_args=dict(dataset=loader.dataset,
                          seed=getattr(old_sampler, 'seed', None)))
    batch_cfg = stated.get('batch_sampler')
    if batch_cfg is None:
        return sampler, None
    batch_sampler = DATA_SAMPLERS.build(
        copy.deepcopy(batch_cfg),
        default_args=dict(sampler=sampler, batch_size=stated['batch_size']))
    return sampler, batch_sampler


def _seed_samples_of_stream(runner, loop) -> None:
    """Give an iteration loop a data iterator whose samples are seeded by
    :func:`seed_each_sample_of_stream`, on samplers nothing drew from."""
    loader = loop.dataloader
    samplers = _fresh_samplers(runner, loader) if isinstance(
        loader, DataLoader) else None
    if samplers is None:
        print_log('StepSeedHook: the training data loader is not built from '
                  'a config, so its samples are not seeded one by one (data '
                  'workers may then change the augmentations)',
                  logger='current')
        return
    loop.dataloader = seed_each_sample_of_stream(loader, *samplers,
                                                 runner.seed)
    # the old iterator (and its workers) goes: nothing else refers to it
    loop.dataloader_iterator = type(loop.dataloader_iterator)(loop.dataloader)


@HOOKS.register_module()
class StepSeedHook(Hook):
    """Re-seed all generators before each epoch, iteration and (iteration-based
    loops) batch; see the module doc."""

    priority = 'VERY_HIGH'

    def before_train(self, runner):
        loop = runner.train_loop
        batches = getattr(loop, 'dataloader_iterator', None)
        if batches is not None:  # an iteration loop: one iterator
            if not isinstance(batches, _SeededBatches):
                _seed_samples_of_stream(runner, loop)
                loop.dataloader_iterator = _SeededBatches(
                    loop.dataloader_iterator, runner.seed, get_rank())
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
