"""Elastic restarts and multi-node rendezvous (issue 23, item 2).

A rank of a 2-rank SparK demo run under ``torchrun --max-restarts 1``
(tools/dist_train.sh with MAX_RESTARTS=1) SIGKILLs itself in the middle of
the second epoch; torchrun restarts the group, which resumes from the last
checkpoint this launch wrote, and the final weights and optimizer state must
be those of an uninterrupted 2-rank run, bit for bit. Two torchrun agents of
one process each, meeting through a rendezvous on localhost (2 "nodes"), must
train to the same weights as one agent with two processes.
"""
import contextlib
import glob
import json
import os
import pickle
import subprocess
import sys
import time

import pytest
import torch

from spark_mm.checkpoint.loading import allow_mmengine_checkpoints
from spark_mm.engine.work_dir import claim_work_dir
from spark_mm.errors import SparKInputError

from _launch import launched, run_to_end
from _reliability import (DEMO_CONFIG, ROOT, as_cli,  # noqa: F401
                          assert_same_weights_and_optimizer, demo_data,
                          free_port, hold_work_dir_lock, tiny_options)

TESTS = os.path.dirname(os.path.abspath(__file__))
EPOCHS, IMAGES, BATCH = 3, 16, 2  # 2 ranks: 4 iterations per epoch
FINAL = f'epoch_{EPOCHS}.pth'
KILLED_AT = 6  # 0-based: the third iteration of the second epoch
TIMEOUT = 300

KILLED = '''
_base_ = [{base!r}]
custom_imports = dict(imports=['spark_mm', '_fault_hooks'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='NanGuardHook'), dict(type='StepSeedHook'),
                dict(type='PreemptionHook'),
                dict(type='KillAt', at={at}, rank=1)]
'''


def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
               PYTHONWARNINGS='ignore', PYTHONPATH=TESTS)
    env.update(extra)
    return env


def _options(data_root):
    return as_cli(tiny_options(data_root, epochs=EPOCHS, images=IMAGES,
                               batch=BATCH))


def _dist_train(config, ranks, work_dir, data_root):
    return ['bash', 'tools/dist_train.sh', config, str(ranks),
            '--work-dir', work_dir] + _options(data_root)


def _load(path):
    allow_mmengine_checkpoints()
    return torch.load(path)


def assert_same_final_state(work_dir, reference_dir):
    final = _load(os.path.join(work_dir, FINAL))
    reference = _load(os.path.join(reference_dir, FINAL))
    assert final['meta']['iter'] == reference['meta']['iter'] == 4 * EPOCHS
    assert_same_weights_and_optimizer(final, reference)
    assert pickle.dumps(final['param_schedulers']) == pickle.dumps(
        reference['param_schedulers'])


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory, demo_data):  # noqa: F811
    """One agent, two processes, no failure: the reference."""
    work_dir = str(tmp_path_factory.mktemp('elastic') / 'uninterrupted')
    status, output = run_to_end(
        _dist_train(DEMO_CONFIG, 2, work_dir, demo_data),
        _env(PORT=free_port()), TIMEOUT, cwd=ROOT)
    assert status == 0, output[-3000:]
    return work_dir


def _logged_iterations(work_dir):
    """Per start of the group, in order: the iterations it logged."""
    starts = []
    for path in sorted(glob.glob(f'{work_dir}/*/vis_data/scalars.json')):
        with open(path) as file:
            starts.append([json.loads(line)['iter'] for line in file
                           if '"loss"' in line])
    return starts


def _killed_config(base):
    path = os.path.join(base, 'killed.py')
    with open(path, 'w') as file:
        file.write(KILLED.format(base=DEMO_CONFIG, at=KILLED_AT))
    return path


@pytest.mark.slow
@pytest.mark.dist
def test_group_restarted_after_a_sigkill_ends_with_the_uninterrupted_weights(
        tmp_path, demo_data, uninterrupted):  # noqa: F811
    work_dir = str(tmp_path / 'restarted')
    status, output = run_to_end(
        _dist_train(_killed_config(tmp_path), 2, work_dir, demo_data),
        _env(PORT=free_port(), MAX_RESTARTS='1'), TIMEOUT, cwd=ROOT)
    assert status == 0, output[-3000:]
    resumed = ('torchrun restarted the group: resuming from '
               f'{work_dir}/epoch_1.pth, the last checkpoint of this launch')
    assert output.count(resumed) == 2, output[-3000:]  # both ranks
    first, restarted = _logged_iterations(work_dir)
    assert first == list(range(1, KILLED_AT + 1))
    assert restarted == list(range(5, 4 * EPOCHS + 1))  # after epoch_1.pth
    assert_same_final_state(work_dir, uninterrupted)


@pytest.mark.slow
@pytest.mark.dist
@pytest.mark.parametrize('rendezvous', ['c10d', 'static'])
def test_two_nodes_of_one_process_train_like_one_node_of_two(
        tmp_path, demo_data, uninterrupted, rendezvous):  # noqa: F811
    """``NNODES=2 NODE_RANK=0/1 bash tools/dist_train.sh CONFIG 1`` twice on
    localhost: torchrun's c10d rendezvous (what MAX_RESTARTS uses) and its
    static one (mmpretrain's dist_train.sh)."""
    work_dir = str(tmp_path / 'two_nodes')
    port = free_port()
    command = _dist_train(DEMO_CONFIG, 1, work_dir, demo_data)
    logs = [tmp_path / f'node{rank}.log' for rank in (0, 1)]
    with contextlib.ExitStack() as stack:
        nodes = [stack.enter_context(launched(
            command, _env(PORT=port, NNODES='2', NODE_RANK=str(rank),
                          RDZV_BACKEND=rendezvous),
            cwd=ROOT, stdout=stack.enter_context(open(log, 'w')),
            stderr=subprocess.STDOUT)) for rank, log in enumerate(logs)]
        statuses = [node.wait(timeout=TIMEOUT) for node in nodes]
    for status, log in zip(statuses, logs):
        assert status == 0, log.read_text()[-3000:]
    assert_same_final_state(work_dir, uninterrupted)


@pytest.mark.slow
@pytest.mark.dist
def test_restart_on_the_static_rendezvous_store_is_refused_in_one_line(
        tmp_path, demo_data):  # noqa: F811
    """Plain torchrun with ``--master-port`` (static rendezvous) restarts the
    group on its first store, where the dead group's addresses still are;
    the restarted workers say so in one line instead of hanging."""
    command = [sys.executable, '-m', 'torch.distributed.run',
               '--nproc_per_node=2', f'--master_port={free_port()}',
               '--max_restarts=1', 'tools/train.py', _killed_config(tmp_path),
               '--launcher', 'pytorch', '--work-dir', str(tmp_path / 'work')
               ] + _options(demo_data)
    status, output = run_to_end(command, _env(PYTHONPATH=f'{ROOT}:{TESTS}'),
                                TIMEOUT, cwd=ROOT)
    assert status != 0
    refusals = [line for line in output.splitlines()
                if line.startswith('error: torchrun restarted this group on '
                                   'the rendezvous store of its first start')]
    assert len(refusals) == 2, output[-3000:]  # each restarted worker
    assert 'MAX_RESTARTS=N' in refusals[0]


# ---- the pieces, without training ----------------------------------------
PROBE = '''
import json, sys, time
from tools.common.elastic_restart import agent_start_time, checkpoint_of_this_launch
print(json.dumps(dict(agent=agent_start_time(), now=time.time(), checkpoints=[
    checkpoint_of_this_launch(work_dir) for work_dir in sys.argv[1:]])))
'''


def _probe(*work_dirs, **env):
    """What a worker started by this process (as torchrun's agent) sees."""
    out = subprocess.run([sys.executable, '-c', PROBE, *work_dirs], cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=ROOT, **env),
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _started_here() -> float:
    """When this process started, in whole seconds (from ps)."""
    elapsed = subprocess.run(['ps', '-o', 'etimes=', '-p', str(os.getpid())],
                             capture_output=True, text=True, check=True)
    return time.time() - int(elapsed.stdout)


def test_agent_start_time_is_when_the_parent_process_started(tmp_path):
    seen = _probe(str(tmp_path))
    assert abs(seen['agent'] - _started_here()) < 2.0, seen
    assert seen['agent'] < seen['now']


def test_only_a_checkpoint_written_after_the_agent_started_is_resumed(tmp_path):
    """This process plays torchrun's agent: its children are the workers."""
    empty, fresh, earlier = (str(tmp_path / name)
                             for name in ('empty', 'fresh', 'earlier'))
    for work_dir in (empty, fresh, earlier):
        os.makedirs(work_dir)
    for work_dir in (fresh, earlier):  # written now: after this process began
        with open(os.path.join(work_dir, 'last_checkpoint'), 'w') as file:
            file.write(f'{work_dir}/epoch_2.pth\n')
    # an earlier run's pointer, from before this process started
    before = _started_here() - 5
    os.utime(os.path.join(earlier, 'last_checkpoint'), (before, before))
    seen = _probe(empty, fresh, earlier, TORCHELASTIC_RUN_ID='x')
    assert seen['checkpoints'] == [None, f'{fresh}/epoch_2.pth', None]
    assert _probe(fresh)['checkpoints'] == [None]  # not under torchrun


def test_work_dir_lock_waits_for_a_holder_that_is_ending(tmp_path):
    work_dir = str(tmp_path / 'work')
    holder = hold_work_dir_lock(work_dir, 1.5)
    try:
        started = time.monotonic()
        with pytest.raises(SparKInputError, match='is in use by process'):
            claim_work_dir(work_dir, wait_s=0.3)
        assert time.monotonic() - started >= 0.3
        claim_work_dir(work_dir, wait_s=60).close()
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize('env, message', [
    (dict(MAX_RESTARTS='three'), 'MAX_RESTARTS=three is not a number'),
    (dict(MAX_RESTARTS='1', RDZV_BACKEND='static'),
     'needs RDZV_BACKEND=c10d'),
    (dict(RDZV_BACKEND='etcd'), 'RDZV_BACKEND=etcd is not supported'),
])
def test_dist_train_refuses_bad_elastic_settings_in_one_line(env, message):
    result = subprocess.run(['bash', 'tools/dist_train.sh', DEMO_CONFIG, '2'],
                            cwd=ROOT, env=dict(os.environ, **env),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count('\n') == 1 and message in result.stderr
