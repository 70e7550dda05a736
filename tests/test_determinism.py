"""Same seed and config, one CPU process: bit-identical losses and masks.

Different seeds: different masks. Runs the real Runner in-process (data
pipeline with random crops, mask sampling, drop path off) for 3 iterations.
"""
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

from _reliability import demo_data, one_thread, tiny_cfg  # noqa: F401

ITERS = 3


class Record(Hook):
    def __init__(self):
        self.losses = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.losses.append(outputs['loss'].item())


class RecordingMasker:
    """Wraps the model's mask generator and keeps every mask it draws."""

    def __init__(self, masker):
        self.masker, self.masks = masker, []

    def __getattr__(self, name):
        return getattr(self.masker, name)

    def __call__(self, *args, **kwargs):
        mask = self.masker(*args, **kwargs)
        self.masks.append(mask.clone())
        return mask


def run(work_dir, data_root, seed):
    cfg = tiny_cfg(work_dir, data_root, **{
        'randomness.seed': seed,
        'default_hooks.checkpoint.interval': 1000,
        'default_hooks.checkpoint.by_epoch': False})
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=ITERS)
    cfg.param_scheduler = []
    runner = Runner.from_cfg(cfg)
    record = Record()
    runner.register_hook(record)
    runner.model.mask_generator = RecordingMasker(runner.model.mask_generator)
    runner.train()
    return record.losses, runner.model.mask_generator.masks


def test_same_seed_bit_identical_and_other_seed_other_masks(
        tmp_path, demo_data, one_thread):  # noqa: F811
    losses_a, masks_a = run(str(tmp_path / 'a'), demo_data, seed=0)
    losses_b, masks_b = run(str(tmp_path / 'b'), demo_data, seed=0)
    losses_c, masks_c = run(str(tmp_path / 'c'), demo_data, seed=1)
    assert len(losses_a) == len(masks_a) == ITERS
    assert losses_a == losses_b  # bit-identical floats
    assert all(torch.equal(a, b) for a, b in zip(masks_a, masks_b))
    assert not any(torch.equal(a, c) for a, c in zip(masks_a, masks_c))
    assert losses_a != losses_c
    # masks vary from step to step within a run, too
    assert not torch.equal(masks_a[0], masks_a[1])
