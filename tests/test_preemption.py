"""Preemption (issue 23, item 1): SIGTERM / SIGUSR1 during training.

A tools/train.py run gets the signal while a random iteration runs (from a
test hook that signals its own process, so the moment is known), must finish
that iteration, save exactly it (mid-epoch too), exit with status 75, and
``--resume`` must end with the weights, optimizer and scheduler state of an
uninterrupted run of the same seed, logging the same lr and losses at every
later iteration. SparK's demo (epoch-based loop) and Mask R-CNN's demo
(iteration-based loop), 1 process and 2 gloo ranks under torchrun, where only
rank 1 gets the signal and both must stop at the same iteration.

Item 3: with data workers (2, persistent or not) the resumed run still ends
as an uninterrupted run without workers, for epoch loops (SparK's demo) and
iteration loops (SparK's demo in an IterBasedTrainLoop, tests/_tiny_demo_iter.py,
and the Mask R-CNN demo): each sample is seeded from its place in the data
order (spark_mm/engine/sample_seed.py).
"""
import glob
import os
import pickle
import random
import subprocess

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from spark_mm.checkpoint.loading import allow_mmengine_checkpoints
from spark_mm.engine.preemption import REQUEUE_EXIT_STATUS
from spark_mm.engine.step_seed import StepSeedHook

from _reliability import (DEMO_CONFIG, ROOT, as_cli,  # noqa: F401
                          assert_same_weights_and_optimizer, demo_data,
                          free_port, logged_runs, tiny_options)
from _tiny_mask_rcnn import make_tiny_coco, write_tiny_mask_rcnn

TESTS = os.path.dirname(os.path.abspath(__file__))
SPARK_ITER_CONFIG = os.path.join(TESTS, '_tiny_demo_iter.py')
SPARK_ITERS = 12  # _tiny_demo_iter.py's max_iters
SPARK_EPOCHS, SPARK_IMAGES = 3, 16
DETECTION_ITERS = 8

SIGNALLED = '''
_base_ = [{base!r}]
custom_imports = dict(imports={imports!r}, allow_failed_imports=False)
custom_hooks = {hooks!r} + [
    dict(type='spark_mm.SignalAt', at={at}, rank={rank}, signal={signal!r})]
'''

def _env():
    return dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
                PYTHONWARNINGS='ignore', PYTHONPATH=TESTS, PORT=free_port())


def _launch(config, work_dir, ranks, options=(), *extra):
    if ranks == 1:
        command = ['python', 'tools/train.py', config]
    else:
        command = ['bash', 'tools/dist_train.sh', config, str(ranks)]
    return command + ['--work-dir', work_dir, *extra, *options]



def preempted_then_resumed(base, config, ranks, at, signal_rank, signal,
                           options=(), workers=0, persistent=True):
    """An uninterrupted run beside one signalled during iteration ``at``
    (0-based) on rank ``signal_rank``, then ``--resume``d. The uninterrupted
    run loads data in the main process; the other with ``workers`` data
    workers (``persistent`` or not)."""
    straight_options = list(options)
    if workers:
        options = (list(options) or ['--cfg-options']) + [
            f'train_dataloader.num_workers={workers}',
            f'train_dataloader.persistent_workers={persistent}']
    signalled = os.path.join(base, 'signalled.py')
    stated = Config.fromfile(config).to_dict()
    imports = stated.get('custom_imports', {}).get('imports', ['spark_mm'])
    with open(signalled, 'w') as file:
        file.write(SIGNALLED.format(
            base=config, at=at, rank=signal_rank, signal=signal,
            imports=list(imports) + ['_signal_hooks'],
            hooks=stated['custom_hooks']))
    straight, preempted = str(base / 'straight'), str(base / 'preempted')
    uninterrupted = subprocess.Popen(
        _launch(config, straight, ranks, straight_options), cwd=ROOT,
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    stopped = subprocess.run(_launch(signalled, preempted, ranks, options),
                             cwd=ROOT, env=_env(), capture_output=True,
                             text=True, timeout=600)
    pointer_file = os.path.join(preempted, 'last_checkpoint')
    assert os.path.isfile(pointer_file), (stopped.stdout + stopped.stderr)[-3000:]
    with open(pointer_file) as file:
        pointer = file.read().strip()
    resumed = subprocess.run(
        _launch(signalled, preempted, ranks, options, '--resume'), cwd=ROOT,
        env=_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert uninterrupted.wait(timeout=600) == 0, \
        uninterrupted.stderr.read()[-3000:]
    return dict(straight=straight, preempted=preempted, stopped=stopped,
                pointer=pointer, resumed=resumed)


def assert_stopped_at(runs, at, ranks):
    stopped = runs['stopped']
    output = stopped.stdout + stopped.stderr
    # torchrun reports its ranks' non-zero exit as a failure of its own
    expected = REQUEUE_EXIT_STATUS if ranks == 1 else 1
    assert stopped.returncode == expected, output[-3000:]
    checkpoint = os.path.join(runs['preempted'], f'preempted_iter_{at + 1}.pth')
    lines = [line for line in output.splitlines() if line.startswith('preempted: ')]
    assert len(lines) == 1, output[-3000:]  # rank 0 says it, once
    assert f'stopped after iteration {at + 1}, saved {checkpoint};' in lines[0]
    assert runs['pointer'] == checkpoint
    allow_mmengine_checkpoints()
    return torch.load(checkpoint)


def assert_same_run(runs, final_name, at):
    """Final checkpoints identical; every iteration logged after the resume
    has the uninterrupted run's lr and losses."""
    final = torch.load(os.path.join(runs['preempted'], final_name))
    reference = torch.load(os.path.join(runs['straight'], final_name))
    assert final['meta']['iter'] == reference['meta']['iter']
    assert final['meta']['epoch'] == reference['meta']['epoch']
    assert_same_weights_and_optimizer(final, reference)
    assert pickle.dumps(final['param_schedulers']) == pickle.dumps(
        reference['param_schedulers'])
    reference_log, = logged_runs(runs['straight'])
    before, after = logged_runs(runs['preempted'])
    assert sorted(before) == list(range(1, at + 2))
    assert sorted(after) == list(range(at + 2, max(reference_log) + 1))
    for step, entry in list(before.items()) + list(after.items()):
        for key, value in entry.items():
            if key == 'lr' or key.startswith('loss'):
                assert value == reference_log[step][key], (step, key)


def _spark_options(data_root, batch):
    options = tiny_options(data_root, epochs=SPARK_EPOCHS, images=SPARK_IMAGES,
                           batch=batch)
    options['default_hooks.checkpoint.interval'] = SPARK_EPOCHS
    return as_cli(options)


@pytest.mark.slow
def test_spark_demo_sigterm_mid_epoch_resumes_bit_exactly(tmp_path, demo_data):  # noqa: F811
    iters_per_epoch = SPARK_IMAGES // 4
    at = random.randrange(SPARK_EPOCHS * iters_per_epoch - 1)
    runs = preempted_then_resumed(tmp_path, DEMO_CONFIG, 1, at, 0, 'SIGTERM',
                                  _spark_options(demo_data, 4))
    saved = assert_stopped_at(runs, at, 1)
    assert saved['meta']['epoch'] == at // iters_per_epoch, at
    assert saved['meta']['batches_done_in_epoch'] == at % iters_per_epoch + 1
    assert 'SIGTERM received' in runs['stopped'].stderr
    assert_same_run(runs, f'epoch_{SPARK_EPOCHS}.pth', at)


@pytest.mark.slow
@pytest.mark.dist
def test_spark_demo_two_ranks_sigusr1_on_one_rank_stops_both(tmp_path, demo_data):  # noqa: F811
    """Rank 1 alone gets SIGUSR1 mid-epoch: both ranks stop after the same
    iteration, and the 2-rank resume equals the uninterrupted 2-rank run."""
    iters_per_epoch = SPARK_IMAGES // (2 * 2)
    at = random.randrange(SPARK_EPOCHS * iters_per_epoch - 1)
    runs = preempted_then_resumed(tmp_path, DEMO_CONFIG, 2, at, 1, 'SIGUSR1',
                                  _spark_options(demo_data, 2))
    saved = assert_stopped_at(runs, at, 2)
    assert saved['meta']['batches_done_in_epoch'] == at % iters_per_epoch + 1
    assert 'SIGUSR1 received' in runs['stopped'].stderr
    assert_same_run(runs, f'epoch_{SPARK_EPOCHS}.pth', at)


@pytest.fixture(scope='module')
def tiny_mask_rcnn(tmp_path_factory):
    base = tmp_path_factory.mktemp('preempt_mask_rcnn')
    return write_tiny_mask_rcnn(base / 'tiny_mask_rcnn.py',
                                make_tiny_coco(base), DETECTION_ITERS)


@pytest.mark.slow
@pytest.mark.parametrize('ranks', [1, pytest.param(2, marks=pytest.mark.dist)])
def test_mask_rcnn_demo_preempted_resumes_bit_exactly(tmp_path, tiny_mask_rcnn,
                                                      ranks):
    # 1 rank: an iteration validation (with precise BN) follows, so the run
    # stops after the validation; 2 ranks: any iteration
    at = random.choice([2, 5] if ranks == 1 else range(DETECTION_ITERS - 1))
    runs = preempted_then_resumed(tmp_path, tiny_mask_rcnn, ranks, at,
                                  ranks - 1, 'SIGTERM')
    saved = assert_stopped_at(runs, at, ranks)
    assert saved['meta']['iter'] == at + 1
    if ranks == 1:  # the validation after the signalled iteration ran first
        stopped_run = sorted(glob.glob(
            f"{runs['preempted']}/*/vis_data/scalars.json"))[0]
        with open(stopped_run) as file:
            validations = sum('coco/bbox_mAP' in line for line in file)
        assert validations == (at + 1) // 3, validations  # val_interval=3
    assert f'Advance dataloader {at + 1} steps' in (
        runs['resumed'].stdout + runs['resumed'].stderr)
    assert_same_run(runs, f'iter_{DETECTION_ITERS}.pth', at)


# ---- item 3: per-sample seeds, whatever the workers ----------------------
def _demo_loader(data_root, workers, persistent):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner
    cfg = Config.fromfile(DEMO_CONFIG)
    loader = cfg.train_dataloader
    loader.update(batch_size=4, num_workers=workers,
                  persistent_workers=persistent)
    loader.dataset.update(data_root=data_root, num_images=SPARK_IMAGES)
    loader.dataset.pipeline[1].scale = 64
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return Runner.build_dataloader(loader, seed=0)


@pytest.mark.parametrize('workers, persistent', [(2, False), (2, True)])
def test_each_sample_gets_the_same_augmentation_whatever_the_workers(
        demo_data, workers, persistent):  # noqa: F811
    """Two epochs of the demo's random crops and flips: with 0 workers and
    with 2 (persistent or not), every image of every epoch is the same
    tensor; and the epochs differ (the pass is part of the seed)."""
    from spark_mm.engine.sample_seed import seed_each_sample

    def epochs(loader):
        loader = seed_each_sample(loader, seed=5)
        images = []
        for epoch in range(2):
            loader.batch_sampler.sampler.set_epoch(epoch)
            images.append({sample.img_path: inputs for batch in loader
                           for inputs, sample in zip(batch['inputs'],
                                                     batch['data_samples'])})
        return images

    reference = epochs(_demo_loader(demo_data, 0, False))
    got = epochs(_demo_loader(demo_data, workers, persistent))
    for expected, found in zip(reference, got):
        assert expected.keys() == found.keys()
        for path, image in expected.items():
            assert torch.equal(found[path], image), path
    assert any(not torch.equal(reference[0][path], reference[1][path])
               for path in reference[0])


@pytest.mark.slow
def test_spark_preempted_with_two_workers_resumes_to_the_run_without_workers(
        tmp_path, demo_data):  # noqa: F811
    """The uninterrupted run loads in the main process; the preempted one,
    and its resume, with 2 persistent workers: same weights, optimizer,
    schedulers and losses (epoch-based loop)."""
    at = random.randrange(SPARK_EPOCHS * SPARK_IMAGES // 4 - 1)
    runs = preempted_then_resumed(tmp_path, DEMO_CONFIG, 1, at, 0, 'SIGTERM',
                                  _spark_options(demo_data, 4), workers=2)
    assert_stopped_at(runs, at, 1)
    assert_same_run(runs, f'epoch_{SPARK_EPOCHS}.pth', at)


def _stream_samples(config, work_dir, workers, persistent, batches):
    """The first ``batches`` batches of the tiny Mask R-CNN's training
    stream after StepSeedHook.before_train, as (position, image) -> tensor.
    The loop is built first, so workers (if any) are already prefetching."""
    cfg = Config.fromfile(config)
    cfg.work_dir = str(work_dir)
    cfg.train_dataloader.update(num_workers=workers,
                                persistent_workers=persistent)
    runner = Runner.from_cfg(cfg)
    loop = runner.train_loop
    hook, = [h for h in runner.hooks if isinstance(h, StepSeedHook)]
    hook.before_train(runner)
    samples = {}
    for position in range(batches):
        batch = next(loop.dataloader_iterator)
        for image, sample in zip(batch['inputs'], batch['data_samples']):
            samples[position, sample.img_path] = image
    return samples


@pytest.mark.slow
@pytest.mark.parametrize('persistent', [False, True])
def test_iteration_stream_samples_are_the_same_whatever_the_workers(
        tmp_path, tiny_mask_rcnn, persistent):
    """Two passes over the tiny COCO split through an iteration loop's one
    data iterator (InfiniteSampler, AspectRatioBatchSampler): every batch
    holds the same images, resized and flipped alike, with 0 and 2 workers;
    and an image's two passes differ (the position is part of the seed)."""
    batches = 2 * 8 // 2  # two passes over 8 images, 2 an iteration
    reference = _stream_samples(tiny_mask_rcnn, tmp_path / 'w0', 0, False,
                                batches)
    got = _stream_samples(tiny_mask_rcnn, tmp_path / 'w2', 2, persistent,
                          batches)
    assert reference.keys() == got.keys()
    for key, image in reference.items():
        assert torch.equal(got[key], image), key
    by_image = {}
    for (_, path), image in reference.items():
        by_image.setdefault(path, []).append(image)
    assert any(len(images) == 2 and not torch.equal(*images)
               for images in by_image.values())


@pytest.mark.slow
@pytest.mark.parametrize('persistent', [False, True])
def test_spark_iteration_loop_preempted_with_two_workers_resumes_to_the_run_without_workers(
        tmp_path, demo_data, persistent):  # noqa: F811
    """SparK's demo in an iteration loop (InfiniteSampler): preempted and
    resumed with 2 workers, it ends as the uninterrupted run without workers
    (weights, optimizer, schedulers, every lr and loss)."""
    options = tiny_options(demo_data, images=SPARK_IMAGES, batch=4)
    del options['train_cfg.max_epochs']
    options['default_hooks.checkpoint.interval'] = SPARK_ITERS
    at = random.randrange(SPARK_ITERS - 1)
    runs = preempted_then_resumed(tmp_path, SPARK_ITER_CONFIG, 1, at, 0,
                                  'SIGTERM', as_cli(options), workers=2,
                                  persistent=persistent)
    assert_stopped_at(runs, at, 1)
    assert f'Advance dataloader {at + 1} steps' in (
        runs['resumed'].stdout + runs['resumed'].stderr)
    assert_same_run(runs, f'iter_{SPARK_ITERS}.pth', at)


@pytest.mark.slow
def test_mask_rcnn_preempted_with_two_workers_resumes_to_the_run_without_workers(
        tmp_path, tiny_mask_rcnn):
    """As above for the Mask R-CNN demo (InfiniteSampler and mmdet's
    AspectRatioBatchSampler, precise BN drawing from the same stream before
    each validation), 2 persistent workers."""
    at = random.choice([2, 5])  # a validation follows: stop after it
    runs = preempted_then_resumed(tmp_path, tiny_mask_rcnn, 1, at, 0,
                                  'SIGTERM', workers=2)
    assert_stopped_at(runs, at, 1)
    assert_same_run(runs, f'iter_{DETECTION_ITERS}.pth', at)
