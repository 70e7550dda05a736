"""The fast path's tuner: picks the implementation its (fake) timer says is
fastest, never one slower than the plain one, caches the choice per machine,
and changes nothing the model computes (buffers, random numbers)."""
import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from spark_mm.models.fast import resnet_rows
from spark_mm.models.fast.tuner import ISA_LIMITS, Tuner, default_cache_file
from spark_mm.registry import MODELS

CPU = torch.device('cpu')


class FakeClock:
    """A timer that only moves when a candidate says it took time."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def candidates(clock, costs, calls=None):
    """Candidates that 'take' ``costs[name]`` seconds on ``clock``."""
    def make(name, cost):
        def run():
            clock.now += cost
            if calls is not None:
                calls.append(name)
            x = torch.ones(2, requires_grad=True)
            return x * 2, [x]
        return run
    return {name: make(name, cost) for name, cost in costs.items()}


@pytest.mark.parametrize('costs,expected', [
    (dict(plain=2.0, rows=1.0), 'rows'),          # faster: taken
    (dict(plain=1.0, rows=2.0), 'plain'),         # slower: never taken
    (dict(plain=1.0, rows=1.0), 'plain'),         # a tie: the plain one
    (dict(plain=3.0, a=2.0, b=1.0), 'b'),
])
def test_choice_is_the_fastest_and_never_slower_than_plain(costs, expected, tmp_path):
    clock = FakeClock()
    tuner = Tuner(cache_file=str(tmp_path / 'cache.json'), timer=clock)
    choice = tuner.choose('layer', 'op', (1, 2), candidates(clock, costs), CPU)
    assert choice == expected
    assert tuner.timings[f'op | (1, 2) | cpu'] == costs
    assert tuner.report() == [('layer', 'op | (1, 2) | cpu', expected)]


def test_a_burst_of_load_does_not_decide(tmp_path):
    """Another process loads the machine for as many runs as there are
    candidates: measured one candidate after the other, that burst would
    cover every run of ``rows`` and make it look slower than ``plain``."""
    clock, calls = FakeClock(), []
    costs = dict(plain=2.0, rows=1.0)
    burst = range(4, 6)  # the 5th and 6th runs (of 6) take 3x as long

    def loaded(name):
        def run():
            start = clock.now
            out = candidates(clock, {name: costs[name]}, calls)[name]()
            if len(calls) - 1 in burst:
                clock.now += 2 * (clock.now - start)
            return out
        return run
    tuner = Tuner(cache_file='', timer=clock, repeats=2)
    assert tuner.choose('a', 'op', (4, ), {n: loaded(n) for n in costs}, CPU) == 'rows'
    assert tuner.timings['op | (4,) | cpu'] == costs


def test_choice_is_measured_once_and_cached_per_machine(tmp_path):
    clock, calls = FakeClock(), []
    path = str(tmp_path / 'cache.json')
    tuner = Tuner(cache_file=path, timer=clock, repeats=2)
    costs = dict(plain=2.0, rows=1.0)
    assert tuner.choose('a', 'op', (4, ), candidates(clock, costs, calls), CPU) == 'rows'
    # A warm-up each, then two timed runs each, taking turns.
    assert calls == ['plain', 'rows'] + ['plain', 'rows'] * 2
    calls.clear()
    assert tuner.choose('b', 'op', (4, ), candidates(clock, costs, calls), CPU) == 'rows'
    assert calls == []  # the same shape: no new measurement
    with open(path) as f:
        assert json.load(f) == {'op | (4,) | cpu': 'rows'}
    # A new run (a resumed one) takes the cached choice without measuring,
    # even if the timings would now say otherwise.
    fresh = Tuner(cache_file=path, timer=clock)
    flipped = dict(plain=1.0, rows=2.0)
    assert fresh.choose('a', 'op', (4, ), candidates(clock, flipped, calls), CPU) == 'rows'
    assert calls == []
    # refresh=True measures again and overwrites the cached choice.
    refreshed = Tuner(cache_file=path, timer=clock, refresh=True)
    assert refreshed.choose('a', 'op', (4, ), candidates(clock, flipped, calls), CPU) == 'plain'
    assert calls and set(calls) == {'plain', 'rows'}
    calls.clear()
    with open(path) as f:
        assert json.load(f) == {'op | (4,) | cpu': 'plain'}
    # A corrupt file is measured again and rewritten.
    with open(path, 'w') as f:
        f.write('{not json')
    third = Tuner(cache_file=path, timer=clock)
    assert third.choose('a', 'op', (4, ), candidates(clock, flipped, calls), CPU) == 'plain'
    with open(path) as f:
        assert json.load(f) == {'op | (4,) | cpu': 'plain'}
    assert not [n for n in os.listdir(tmp_path) if n.endswith('.tmp')]


def test_default_cache_file_names_the_machine(tmp_path, monkeypatch):
    monkeypatch.setenv('SPARK_MM_TUNING_CACHE', str(tmp_path))
    path = default_cache_file(CPU)
    assert os.path.dirname(path) == str(tmp_path)
    name = os.path.basename(path)
    assert f'torch{torch.__version__}' in name
    assert f'threads{torch.get_num_threads()}' in name
    with open('/proc/cpuinfo') as f:
        flags = next(line for line in f if line.startswith('flags')).split()
    if 'avx512f' in flags:
        assert 'avx512' in name or 'amx' in name
    elif 'avx2' in flags:
        assert 'avx2' in name


def test_unwritable_cache_keeps_the_choice_for_the_run(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('')
    clock = FakeClock()
    tuner = Tuner(cache_file=str(blocker / 'cache.json'), timer=clock)  # parent is a file
    costs = dict(plain=2.0, rows=1.0)
    assert tuner.choose('a', 'op', (1, ), candidates(clock, costs), CPU) == 'rows'
    assert tuner.choose('a', 'op', (1, ), candidates(clock, costs), CPU) == 'rows'


def test_modes_and_pinned_choices():
    clock, calls = FakeClock(), []
    costs = dict(plain=2.0, rows=1.0)
    assert Tuner('plain', '').choose('a', 'op', (), candidates(clock, costs, calls), CPU) == 'plain'
    assert Tuner('fast', '').choose('a', 'op', (), candidates(clock, costs, calls), CPU) == 'rows'
    pinned = Tuner('measure', '', fixed={'op': 'plain'})
    assert pinned.choose('a', 'op', (), candidates(clock, costs, calls), CPU) == 'plain'
    assert calls == []
    with pytest.raises(ValueError, match="'maps' is not an implementation of 'op'"):
        Tuner('measure', '', fixed={'op': 'maps'}).choose(
            'a', 'op', (), candidates(clock, costs), CPU)
    with pytest.raises(ValueError, match='tuner mode'):
        Tuner('fastest')


def test_measuring_restores_buffers_and_random_numbers():
    bn = nn.BatchNorm1d(3)
    before = {k: v.clone() for k, v in bn.state_dict().items()}

    def noisy():
        x = torch.randn(8, 3, requires_grad=True)  # draws, and moves the stats
        return bn(x), [x]
    torch.manual_seed(0)
    expected_next = torch.rand(3)
    torch.manual_seed(0)
    clock = FakeClock()
    Tuner(cache_file='', timer=clock).choose(
        'bn', 'op', (), {'plain': noisy, 'other': noisy}, CPU, modules=[bn])
    assert torch.equal(torch.rand(3), expected_next)
    for key, value in bn.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in bn.parameters())  # no gradient accumulated


# ---- in a model ------------------------------------------------------------------
def tiny_spark(tuner):
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='SparK', backbone=dict(type='ResNet', depth=50, base_channels=8,
                                    stem_channels=8, out_indices=(0, 1, 2, 3)),
        neck=dict(type='LightUNetDecoder', width=32), input_size=64,
        fast_path=dict(type='SparKFastPath', tuner=tuner))).train()


@pytest.mark.slow
@pytest.mark.parametrize('slow', ['rows', 'maps'])
def test_model_takes_what_the_timer_measured(slow, monkeypatch):
    """Each ResNet stage runs on rows or maps as the (fake) timing says, and
    the benchmark's report lists what each layer took."""
    clock = FakeClock()
    if slow == 'rows':
        original = resnet_rows.SparseBottleneckRowsMixin.forward_rows

        def slow_rows(self, *args, **kwargs):
            clock.now += 1.0
            return original(self, *args, **kwargs)
        monkeypatch.setattr(resnet_rows.SparseBottleneckRowsMixin, 'forward_rows', slow_rows)
    else:
        original = resnet_rows.SparseBottleneckRowsMixin.maps_forward

        def slow_maps(self, x):
            clock.now += 1.0
            return original(self, x)
        monkeypatch.setattr(resnet_rows.SparseBottleneckRowsMixin, 'maps_forward', slow_maps)
    model = tiny_spark(dict(cache_file='', timer=clock))
    images = torch.randn(2, 3, 64, 64)
    model.loss(images, [])['loss'].backward()
    choices = {layer: choice for layer, _, choice in model.fast_path.tuner.report()}
    stages = [f'backbone.layer{i}' for i in range(1, 5)]
    assert {choices[s] for s in stages} == {'maps' if slow == 'rows' else 'rows'}
    assert 'backbone.stem' in choices
    assert any(layer.endswith('upsample+conv1') for layer in choices)


def _broadcast_worker(rank, folder):
    dist.init_process_group('gloo', init_method=f'file://{folder}/rendezvous',
                            rank=rank, world_size=2)
    clock = FakeClock()
    # Each rank's timer says something else: rank 0's choice must hold on both.
    costs = dict(plain=1.0, rows=2.0) if rank == 0 else dict(plain=2.0, rows=1.0)
    choice = Tuner(cache_file=os.path.join(folder, 'cache.json'), timer=clock).choose(
        'a', 'op', (1, ), candidates(clock, costs), CPU)
    with open(os.path.join(folder, f'rank{rank}'), 'w') as f:
        f.write(choice)
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.dist
def test_rank_zero_decides_for_every_rank(tmp_path):
    mp.start_processes(_broadcast_worker, args=(str(tmp_path),), nprocs=2,
                       start_method='spawn', join=True)
    assert [(tmp_path / f'rank{r}').read_text() for r in range(2)] == ['plain', 'plain']
    assert json.loads((tmp_path / 'cache.json').read_text()) == {
        'op | (1,) | cpu': 'plain'}


def _sync_bn_worker(rank, folder):
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{folder}/rendezvous',
                            rank=rank, world_size=2)
    import spark_mm  # noqa: F401  (registers everything in the spawned process)
    from spark_mm.engine.cpu_sync_bn import convert_sync_batchnorm_for_cpu
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='SparK', backbone=dict(type='ResNet', depth=50, base_channels=8,
                                    stem_channels=8, out_indices=(0, 1, 2, 3),
                                    norm_cfg=dict(type='SyncBN')),
        neck=dict(type='LightUNetDecoder', width=32, norm_cfg=dict(type='SyncBN')),
        input_size=64, fast_path=dict(type='SparKFastPath', tuner=dict(
            cache_file=os.path.join(folder, 'cache.json'))))).train()
    convert_sync_batchnorm_for_cpu(model)
    torch.manual_seed(rank)
    loss = model.loss(torch.randn(2, 3, 64, 64), [])['loss']
    loss.backward()
    torch.save(dict(loss=loss.item(), choices=model.fast_path.tuner.choices),
               os.path.join(folder, f'rank{rank}.pt'))
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.dist
def test_ranks_measure_together_through_sync_bn(tmp_path):
    """SyncBN layers inside the timed candidates need every rank: all ranks
    time in step (no hang) and take rank 0's choices."""
    mp.start_processes(_sync_bn_worker, args=(str(tmp_path),), nprocs=2,
                       start_method='spawn', join=True)
    ranks = [torch.load(tmp_path / f'rank{r}.pt') for r in range(2)]
    assert ranks[0]['choices'] and ranks[0]['choices'] == ranks[1]['choices']
    assert any(key.startswith('ResNet stage') for key in ranks[0]['choices'])
    assert all(torch.isfinite(torch.tensor(r['loss'])) for r in ranks)


def test_cache_file_differs_under_an_instruction_set_cap(tmp_path, monkeypatch):
    # oneDNN / ATen / MKL capped to AVX2 on an AVX-512 CPU run other kernels:
    # choices measured there must not be taken uncapped, nor the reverse.
    monkeypatch.setenv('SPARK_MM_TUNING_CACHE', str(tmp_path))
    for variable, _ in ISA_LIMITS:
        monkeypatch.delenv(variable, raising=False)
    uncapped = default_cache_file(CPU)
    monkeypatch.setenv('ONEDNN_MAX_CPU_ISA', 'AVX2')
    onednn_capped = default_cache_file(CPU)
    monkeypatch.setenv('ATEN_CPU_CAPABILITY', 'avx2')
    both_capped = default_cache_file(CPU)
    assert len({uncapped, onednn_capped, both_capped}) == 3
    assert 'onednn-avx2' in os.path.basename(onednn_capped)
