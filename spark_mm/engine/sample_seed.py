"""Each training sample's augmentation seeded from (seed, pass, sample index).

Data workers draw crops and flips from their own generators, seeded once
when the worker starts. Which draws a sample gets then depends on the worker
count, on which worker loads it, and (persistent workers) on every sample the
worker loaded before, in earlier epochs too; a resumed run restarts the
workers, so its augmentations differ from the uninterrupted run's.
The training data loader is therefore rebuilt so that every index the batch
sampler hands out carries a tag, and the dataset seeds python, numpy and
torch from (seed, tag, index) just before it loads that sample, in whichever
process that is:

* epoch-based loops (:func:`seed_each_sample`): the tag is the epoch;
* iteration-based loops (:func:`seed_each_sample_of_stream`): one iterator
  streams batches for the whole run (mmengine's ``InfiniteSampler``), so the
  tag is (the sampler's epoch, 0 if it has none; the position of the batch in
  that stream). A resume fetches and drops the batches already trained, so
  batch k of the resumed stream is batch k of the uninterrupted one, with the
  same tag.

The same image then gets the same augmentation at the same point of
training whatever the worker count, persistent or not, and whether or not
the run was interrupted.
"""
import random

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader

_SAMPLE = 3  # a stage of its own, apart from step_seed's epoch/iter/batch


def seed_for_sample(seed: int, *tag_and_index: int) -> None:
    words = np.random.SeedSequence(
        [int(seed) % 2**32, _SAMPLE, *tag_and_index]).generate_state(2)
    random.seed(int(words[0]))
    np.random.seed(int(words[0]))
    torch.manual_seed(int(words[0]) << 32 | int(words[1]))


class SeededSamples(torch.utils.data.Dataset):
    """``dataset`` indexed by (*tag, index): seeds, then loads ``index``."""

    def __init__(self, dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __getitem__(self, tagged):
        seed_for_sample(self.seed, *tagged)
        return self.dataset[tagged[-1]]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name):
        if name in ('dataset', 'seed'):  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)


class _TaggedBatches:
    """A batch sampler whose indices come with a tag (subclasses say which).
    ``sampler`` is the wrapped one's, so that ``set_epoch`` reaches it."""

    def __init__(self, batch_sampler) -> None:
        self.batch_sampler = batch_sampler
        self.sampler = batch_sampler.sampler

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __getattr__(self, name):
        if name == 'batch_sampler':
            raise AttributeError(name)
        return getattr(self.batch_sampler, name)


class EpochTaggedBatches(_TaggedBatches):
    """Indices as (epoch, index); the epoch is the sampler's
    (``DefaultSampler.set_epoch``, before each epoch)."""

    def __iter__(self):
        epoch = self.sampler.epoch
        for batch in self.batch_sampler:
            yield [(epoch, index) for index in batch]


class StreamTaggedBatches(_TaggedBatches):
    """Indices as (pass, batch, index): the sampler's epoch (0 without one:
    ``InfiniteSampler`` is one endless pass) and the batch's position in it.
    The position is counted per iterator, in the main process, in the order
    batches are handed out, so prefetching workers do not change it."""

    def __iter__(self):
        data_pass = getattr(self.sampler, 'epoch', 0)
        for position, batch in enumerate(self.batch_sampler):
            yield [(data_pass, position, index) for index in batch]


def _loader_like(loader: DataLoader, dataset, batch_sampler) -> DataLoader:
    """A data loader with ``loader``'s workers and collate function."""
    workers = loader.num_workers
    return DataLoader(
        dataset, batch_sampler=batch_sampler,
        num_workers=workers, collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory, timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        generator=loader.generator,
        prefetch_factor=loader.prefetch_factor if workers else None,
        persistent_workers=loader.persistent_workers and workers > 0,
        pin_memory_device=loader.pin_memory_device)


def seed_each_sample(loader: DataLoader, seed: int) -> DataLoader:
    """The same data loader (same workers, collate, batches), its samples
    seeded by :class:`SeededSamples` through :class:`EpochTaggedBatches`;
    ``loader`` itself if its sampler has no epoch to tag with."""
    if not hasattr(getattr(loader.batch_sampler, 'sampler', None), 'epoch'):
        return loader
    return _loader_like(loader, SeededSamples(loader.dataset, seed),
                        EpochTaggedBatches(loader.batch_sampler))


def seed_each_sample_of_stream(loader: DataLoader, sampler, batch_sampler,
                               seed: int) -> DataLoader:
    """``loader`` drawing from ``sampler`` and ``batch_sampler`` (which must
    not have handed out anything yet; ``None``: torch's BatchSampler with the
    loader's batch size), its samples seeded by :class:`SeededSamples`
    through :class:`StreamTaggedBatches`."""
    if batch_sampler is None:
        batch_sampler = BatchSampler(sampler, loader.batch_size,
                                     loader.drop_last)
    return _loader_like(loader, SeededSamples(loader.dataset, seed),
                        StreamTaggedBatches(batch_sampler))
