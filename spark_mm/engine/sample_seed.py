"""Each training sample's augmentation seeded from (seed, epoch, sample index).

Data workers draw crops and flips from their own generators, seeded once
when the worker starts. Which draws a sample gets then depends on the worker
count, on which worker loads it, and (persistent workers) on every sample the
worker loaded before, in earlier epochs too; a resumed run restarts the
workers, so its augmentations differ from the uninterrupted run's.
:func:`seed_each_sample` rebuilds an epoch-based loop's data loader so that
every index the batch sampler hands out carries its epoch, and the dataset
seeds python, numpy and torch from (seed, epoch, index) just before it loads
that sample, in whichever process that is. The same image then gets the
same augmentation in the same epoch whatever the worker count, persistent or
not, and whether or not the run was interrupted.
"""
import random

import numpy as np
import torch
from torch.utils.data import DataLoader

_SAMPLE = 3  # a stage of its own, apart from step_seed's epoch/iter/batch


def seed_for_sample(seed: int, epoch: int, index: int) -> None:
    words = np.random.SeedSequence(
        [int(seed) % 2**32, _SAMPLE, epoch, index]).generate_state(2)
    random.seed(int(words[0]))
    np.random.seed(int(words[0]))
    torch.manual_seed(int(words[0]) << 32 | int(words[1]))


class SeededSamples(torch.utils.data.Dataset):
    """``dataset`` indexed by (epoch, index): seeds, then loads ``index``."""

    def __init__(self, dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __getitem__(self, tagged):
        epoch, index = tagged
        seed_for_sample(self.seed, epoch, index)
        return self.dataset[index]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name):
        if name in ('dataset', 'seed'):  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)


class EpochTaggedBatches:
    """A batch sampler whose indices come as (epoch, index) pairs; the epoch
    is the sampler's (``DefaultSampler.set_epoch``, before each epoch)."""

    def __init__(self, batch_sampler) -> None:
        self.batch_sampler = batch_sampler
        self.sampler = batch_sampler.sampler  # set_epoch reaches it here

    def __iter__(self):
        epoch = self.sampler.epoch
        for batch in self.batch_sampler:
            yield [(epoch, index) for index in batch]

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __getattr__(self, name):
        if name == 'batch_sampler':
            raise AttributeError(name)
        return getattr(self.batch_sampler, name)


def seed_each_sample(loader: DataLoader, seed: int) -> DataLoader:
    """The same data loader (same workers, collate, batches), its samples
    seeded by :class:`SeededSamples` through :class:`EpochTaggedBatches`;
    ``loader`` itself if its sampler has no epoch to tag with."""
    if not hasattr(getattr(loader.batch_sampler, 'sampler', None), 'epoch'):
        return loader
    workers = loader.num_workers
    return DataLoader(
        SeededSamples(loader.dataset, seed),
        batch_sampler=EpochTaggedBatches(loader.batch_sampler),
        num_workers=workers, collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory, timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        generator=loader.generator,
        prefetch_factor=loader.prefetch_factor if workers else None,
        persistent_workers=loader.persistent_workers and workers > 0,
        pin_memory_device=loader.pin_memory_device)
