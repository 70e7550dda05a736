"""Tiny SparK runs for the reliability tests: seconds each on 2 CPU cores.

One thread per process: on a shared 2-core machine OpenMP's spinning threads
make a small model tens of times slower than a single thread.
"""
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest
import torch
from mmengine.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# demo_r18.py with the safety hooks only (no pictures)
DEMO_CONFIG = os.path.join(ROOT, 'tests', '_tiny_demo.py')


def tiny_options(data_root: str, epochs: int = 2, images: int = 16,
                 batch: int = 4) -> dict:
    """``--cfg-options`` that shrink the demo to a few 64 px iterations."""
    return {
        'train_cfg.max_epochs': epochs,
        'train_dataloader.dataset.data_root': data_root,
        'train_dataloader.dataset.num_images': images,
        'train_dataloader.batch_size': batch,
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'train_dataloader.dataset.pipeline.1.scale': 64,
        'model.input_size': 64,
        'model.backbone.base_channels': 8,
        'model.backbone.stem_channels': 8,
        'model.neck.width': 32,
        'default_hooks.logger.interval': 1,
        'default_hooks.checkpoint.interval': 1,
        'default_hooks.checkpoint.max_keep_ckpts': -1,
        'log_level': 'WARNING',
    }


def as_cli(options: dict) -> list:
    def value(v):
        return '[]' if v == [] else str(v)
    return ['--cfg-options'] + [f'{k}={value(v)}' for k, v in options.items()]


def tiny_cfg(work_dir: str, data_root: str, **options) -> Config:
    """The config tools/train.py would run single-process, built in-process."""
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    try:
        import train as train_tool
    finally:
        sys.path.pop(0)
    argv = [DEMO_CONFIG, '--work-dir', work_dir] + as_cli(tiny_options(data_root))
    old_argv = sys.argv
    sys.argv = ['train.py'] + argv
    try:
        cfg = train_tool.build_config(train_tool.parse_args())
    finally:
        sys.argv = old_argv
    cfg.merge_from_dict(options)
    cfg.experiment_name = f'test_{uuid.uuid4().hex[:8]}'  # own MessageHub
    return cfg


def free_port() -> str:
    """A TCP port nothing listens on now (for torchrun's rendezvous)."""
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return str(probe.getsockname()[1])


def run_train_tool(args, timeout=300, env=None, **popen_kwargs):
    """tools/train.py (or a launcher script) as a subprocess, one thread each;
    ``env`` adds variables. Launchers get a free PORT unless ``env`` names one,
    so that parallel runs on one machine do not collide on torchrun's 29500."""
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
               PYTHONWARNINGS='ignore', **(env or {}))
    env.setdefault('PORT', free_port())
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, **popen_kwargs)


@pytest.fixture(scope='session')
def demo_data(tmp_path_factory):
    from spark_mm.datasets import make_demo_images
    root = str(tmp_path_factory.mktemp('reliability_data') / 'images')
    make_demo_images(root, num_images=16, image_size=(80, 80), seed=0)
    return root


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_straight_and_killed_then_resumed(train_args, base) -> dict:
    """Two runs of the same training, side by side: one uninterrupted, one
    SIGKILLed as soon as its first checkpoint exists and then resumed with
    ``--resume``. ``train_args(work_dir, *extra)`` gives the command line.
    Returns the two work dirs, the checkpoint the kill left and the resumed
    run's output."""
    straight, killed = str(base / 'straight'), str(base / 'killed')
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
               PYTHONWARNINGS='ignore')
    uninterrupted = subprocess.Popen(
        train_args(straight), cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    victim = subprocess.Popen(
        train_args(killed), cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pointer = os.path.join(killed, 'last_checkpoint')
    deadline = time.time() + 300
    while not os.path.exists(pointer) and victim.poll() is None:
        assert time.time() < deadline, 'no checkpoint within 300 s'
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL, 'the run ended before the kill'
    with open(pointer) as file:
        killed_at = file.read().strip()
    resumed = run_train_tool(train_args(killed, '--resume'))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert uninterrupted.wait(timeout=300) == 0, \
        uninterrupted.stderr.read()[-3000:]
    return dict(straight=straight, killed=killed, killed_at=killed_at,
                resume_log=resumed.stdout + resumed.stderr)


def assert_same_weights_and_optimizer(final: dict, reference: dict) -> None:
    """Two mmengine checkpoints hold bit-identical weights and optimizer state."""
    assert final['state_dict'].keys() == reference['state_dict'].keys()
    for key, value in reference['state_dict'].items():
        assert torch.equal(final['state_dict'][key], value), key
    optimizer, expected = final['optimizer'], reference['optimizer']
    assert optimizer['param_groups'] == expected['param_groups']
    for index, state in expected['state'].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(optimizer['state'][index][name]),
                               torch.as_tensor(value)), (index, name)


def hold_work_dir_lock(work_dir: str, seconds: float) -> subprocess.Popen:
    """Another process that claims ``work_dir`` (as a training run does) and
    holds it ``seconds``; returns once it holds the lock."""
    holder = subprocess.Popen(
        [sys.executable, '-c',
         'import sys, time\n'
         'from spark_mm.engine.work_dir import claim_work_dir\n'
         'lock = claim_work_dir(sys.argv[1])\n'
         'print("locked", flush=True)\n'
         'time.sleep(float(sys.argv[2]))\n', work_dir, str(seconds)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=ROOT, PYTHONWARNINGS='ignore'))
    if holder.stdout.readline().strip() != 'locked':
        holder.kill()
        raise RuntimeError(f'the lock holder for {work_dir} did not start')
    return holder


def logged_runs(work_dir: str) -> list:
    """Per run of ``work_dir`` (its timestamped folders, in order): iteration
    -> the scalars logged there (``vis_data/scalars.json``, loss lines)."""
    runs = []
    for path in sorted(glob.glob(f'{work_dir}/*/vis_data/scalars.json')):
        with open(path) as file:
            entries = [json.loads(line) for line in file]
        runs.append({e['iter']: e for e in entries if 'loss' in e})
    return runs
