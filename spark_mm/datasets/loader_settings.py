"""Data loader settings that cannot work, caught before they fail or mislead.

* ``persistent_workers=True`` with ``num_workers=0`` (e.g. a config's
  default with ``--cfg-options train_dataloader.num_workers=0``): torch's
  DataLoader raises a ValueError. Without workers there is nothing to keep
  alive, so the setting is dropped (one log line).
* A batch larger than the dataset: each epoch is a single short batch, or,
  with ``drop_last``, no batch at all (an iteration-based loop would then
  wait forever). A warning line, or one-line error for ``drop_last``.
"""
import logging

from mmengine.logging import print_log

from ..errors import SparKInputError

LOADER_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def drop_persistent_workers_without_workers(cfg) -> None:
    """Set ``persistent_workers=False`` where a loader has no workers."""
    for key in LOADER_KEYS:
        loader = cfg.get(key)
        if (loader and loader.get('persistent_workers')
                and not loader.get('num_workers', 0)):
            loader['persistent_workers'] = False
            print_log(f'{key}: num_workers=0, so persistent_workers=True is '
                      'dropped (there are no workers to keep)',
                      logger='current')


def check_batch_fits_dataset(dataloader, world_size: int = 1) -> None:
    """Warn (or, with ``drop_last``, raise) when one batch over all processes
    needs more samples than the training set has."""
    batches = getattr(dataloader, 'batch_sampler', None)
    batch_size = dataloader.batch_size or getattr(batches, 'batch_size', None)
    drop_last = dataloader.drop_last or getattr(batches, 'drop_last', False)
    samples = len(dataloader.dataset)
    if batch_size is None or batch_size * world_size <= samples:
        return
    fits = max(1, samples // world_size)
    what = (f'train_dataloader: a batch of {batch_size} per process x '
            f'{world_size} process(es) is more than the {samples} training '
            'samples')
    fix = f'lower train_dataloader.batch_size to {fits} or add data'
    if drop_last:
        raise SparKInputError(f'{what}; with drop_last no batch is ever '
                              f'complete, so nothing would train: {fix}')
    print_log(f'{what}: every epoch is {len(dataloader)} short batch(es); '
              f'{fix}', logger='current', level=logging.WARNING)
