"""Resume after SIGKILL, weights_only loading, atomic checkpoints.

A tools/train.py run is killed hard right after its first checkpoint, resumed
with ``--resume`` and compared with an uninterrupted run of the same seed:
iteration count, lr and loss of every later iteration, optimizer and scheduler
state, and the final weights must be identical (CPU, one thread).
"""
import glob
import json
import os
import pickle

import pytest
import torch
from mmengine.fileio import LocalBackend
from mmengine.runner import Runner

from spark_mm.engine.atomic_checkpoint_hook import partial_name
from spark_mm.checkpoint.loading import (allow_mmengine_checkpoints,
                                               load_checkpoint_safely)
from spark_mm.errors import CheckpointError

from _reliability import (DEMO_CONFIG, ROOT, as_cli,  # noqa: F401
                          assert_same_weights_and_optimizer, demo_data,
                          one_thread, run_straight_and_killed_then_resumed,
                          run_train_tool, tiny_cfg, tiny_options)

EPOCHS, ITERS_PER_EPOCH = 3, 4  # 16 images, batch 4


def _train_args(work_dir, data_root, *extra):
    return (['python', 'tools/train.py', DEMO_CONFIG, '--work-dir', work_dir]
            + list(extra) + as_cli(tiny_options(data_root, epochs=EPOCHS)))


def _scalars(work_dir):
    """iteration -> logged scalars, over all runs in ``work_dir``."""
    logged = {}
    for path in sorted(glob.glob(f'{work_dir}/*/vis_data/scalars.json')):
        with open(path) as file:
            for line in file:
                entry = json.loads(line)
                if 'lr' in entry:
                    logged.setdefault('runs', {}).setdefault(path, []).append(
                        entry['iter'])
                    logged[entry['iter']] = entry
    return logged


@pytest.fixture(scope='module')
def killed_and_resumed(tmp_path_factory, demo_data):  # noqa: F811
    return run_straight_and_killed_then_resumed(
        lambda work_dir, *extra: _train_args(work_dir, demo_data, *extra),
        tmp_path_factory.mktemp('resume'))


@pytest.mark.slow
def test_resume_after_sigkill_continues_exactly(killed_and_resumed):
    runs = killed_and_resumed
    allow_mmengine_checkpoints()
    first = torch.load(runs['killed_at'])  # weights_only=True, torch's default
    resumed_from = first['meta']['iter']
    assert resumed_from % ITERS_PER_EPOCH == 0 and resumed_from > 0

    final = os.path.join(runs['killed'], f'epoch_{EPOCHS}.pth')
    reference = os.path.join(runs['straight'], f'epoch_{EPOCHS}.pth')
    final, reference = torch.load(final), torch.load(reference)
    assert final['meta']['iter'] == reference['meta']['iter'] == EPOCHS * ITERS_PER_EPOCH
    assert final['meta']['epoch'] == EPOCHS
    assert_same_weights_and_optimizer(final, reference)
    assert pickle.dumps(final['param_schedulers']) == pickle.dumps(
        reference['param_schedulers'])

    logged, expected_log = _scalars(runs['killed']), _scalars(runs['straight'])
    resumed_iters = max(logged['runs'].values(), key=lambda iters: iters[-1])
    assert resumed_iters == list(range(resumed_from + 1,
                                       EPOCHS * ITERS_PER_EPOCH + 1))
    for step in resumed_iters:  # lr schedule and losses continue bit-exactly
        assert logged[step]['lr'] == expected_log[step]['lr'], step
        assert logged[step]['loss'] == expected_log[step]['loss'], step


def test_allow_list_keeps_weights_only_protection(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ('echo owned',))

    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {}, 'x': Evil()}, path)
    allow_mmengine_checkpoints()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)
    with pytest.raises(CheckpointError, match='refused for safety'):
        load_checkpoint_safely(path)
    # builtins.getattr resolves only methods of mmengine's HistoryBuffer
    from mmengine.logging import HistoryBuffer

    class Lookup:
        def __init__(self, owner, name):
            self.owner, self.name = owner, name

        def __reduce__(self):
            return (getattr, (self.owner, self.name))

    fine, sneaky = str(tmp_path / 'fine.pth'), str(tmp_path / 'sneaky.pth')
    torch.save({'mean': Lookup(HistoryBuffer, 'mean')}, fine)
    assert torch.load(fine)['mean'] is HistoryBuffer.mean
    from collections import OrderedDict
    for owner, name in ((HistoryBuffer, '__init__'), (OrderedDict, 'fromkeys')):
        torch.save({'x': Lookup(owner, name)}, sneaky)
        with pytest.raises(pickle.UnpicklingError):
            torch.load(sneaky)


def test_crash_while_saving_keeps_last_checkpoint_complete(
        tmp_path, demo_data, one_thread, monkeypatch):  # noqa: F811
    work_dir = str(tmp_path / 'work')
    cfg = tiny_cfg(work_dir, demo_data, **{
        'default_hooks.checkpoint.max_keep_ckpts': 1})
    runner = Runner.from_cfg(cfg)
    real_put = LocalBackend.put
    saves = []

    def crash_in_second_save(self, obj, filepath):
        saves.append(filepath)
        if len(saves) == 2:  # half the bytes reach the disk, then the crash
            with open(filepath, 'wb') as file:
                file.write(obj[:len(obj) // 2])
            raise OSError('simulated crash during saving')
        return real_put(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', crash_in_second_save)
    with pytest.raises(OSError, match='simulated crash'):
        runner.train()
    assert [os.path.basename(path) for path in saves] == [
        partial_name('epoch_1.pth'), partial_name('epoch_2.pth')]
    with open(os.path.join(work_dir, 'last_checkpoint')) as file:
        latest = file.read().strip()
    assert latest == os.path.join(work_dir, 'epoch_1.pth')
    # max_keep_ckpts=1: the old checkpoint goes only after the new one is in
    assert os.path.isfile(latest)
    assert not os.path.exists(os.path.join(work_dir, 'epoch_2.pth'))
    checkpoint = load_checkpoint_safely(latest)
    assert checkpoint['meta']['epoch'] == 1
    with pytest.raises(CheckpointError, match='cannot be read'):
        load_checkpoint_safely(os.path.join(work_dir,
                                            partial_name('epoch_2.pth')))
