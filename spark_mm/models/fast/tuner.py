"""Pick the fastest implementation of an operation where it runs, by timing.

Where the fast path has several implementations of one operation (a ResNet
stage on visible rows or on maps, a 3x3 conv as gather + matrix product or as
a dense conv, a matrix product on rows in MKL or in oneDNN, the decoder's
upsample composed or sequential), which is faster
depends on the machine: the CPU's vector units, the thread count, the GPU. As
``torch.backends.cudnn.benchmark`` does, the :class:`Tuner` times each
candidate once for each new shape, on the current device, dtype and thread
count, and keeps the fastest. The plain candidate (the one that computes as
:mod:`spark_mm.models` does) comes first and wins ties, so the choice is never
slower than the plain path as measured.

Timing runs forward and backward on detached copies of the inputs, with the
random number generators and the modules' buffers (batch-norm running
statistics) restored afterwards: tuning changes neither the results nor the
random stream of training. In a distributed run all ranks time together
(SyncBN inside a candidate needs them all) and take rank 0's choice, so every
rank computes the same way. Choices are cached in a JSON file per
machine (CPU model and vector flags, or GPU name), torch version and thread
count (``$SPARK_MM_TUNING_CACHE``, default
``~/.cache/spark_mm/tuning/``), written atomically, so a resumed run takes the
same choices without measuring again.
"""
import json
import os
import platform
import re
import tempfile
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn as nn
from mmengine.logging import print_log

# A candidate runs its implementation once and returns (output, tensors to
# differentiate the output with respect to).
Candidate = Callable[[], Tuple[torch.Tensor, Sequence[torch.Tensor]]]

MODES = ('measure', 'plain', 'fast')


def _cpu_name() -> str:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open('/proc/cpuinfo') as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(':')
                if key.strip() == 'model name':
                    model = value.strip()
                elif key.strip() == 'flags':
                    flags = set(value.split())
                    break
    except OSError:
        pass
    vector = [flag for flag in ('avx512_bf16', 'amx_tile', 'avx512f', 'avx2')
              if flag in flags]
    return ' '.join([model] + vector[:1])


# Variables that cap the instruction set the CPU libraries use (oneDNN's
# convolutions, ATen's kernels, MKL's GEMM): the same processor is then a
# different machine for speed.
ISA_LIMITS = (('ONEDNN_MAX_CPU_ISA', 'onednn'), ('DNNL_MAX_CPU_ISA', 'onednn'),
              ('ATEN_CPU_CAPABILITY', 'aten'), ('MKL_ENABLE_INSTRUCTIONS', 'mkl'))


def _isa_limits() -> List[str]:
    limits = {}
    for variable, library in ISA_LIMITS:
        value = os.environ.get(variable, '').strip()
        if value and library not in limits:
            limits[library] = f'{library}={value.lower()}'
    return list(limits.values())


def device_name(device: torch.device) -> str:
    """The processor ``device`` names: GPU model, or CPU model and its widest
    vector extension (``avx512_bf16``, ``amx_tile``, ``avx512f``, ``avx2``),
    followed by any instruction-set cap set in the environment
    (:data:`ISA_LIMITS`), e.g. ``onednn=avx2``."""
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return ' '.join([_cpu_name()] + _isa_limits())


def default_cache_file(device: torch.device) -> str:
    folder = os.environ.get('SPARK_MM_TUNING_CACHE') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'),
        'spark_mm', 'tuning')
    machine = re.sub(r'[^A-Za-z0-9.]+', '-', device_name(device)).strip('-')
    return os.path.join(folder, f'{machine}-torch{torch.__version__}-'
                                f'threads{torch.get_num_threads()}.json')


def _synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _from_rank_zero(value):
    values = [value]
    dist.broadcast_object_list(values, src=0)
    return values[0]


def _run_once(candidate: Candidate) -> None:
    out, wrt = candidate()
    wrt = [t for t in wrt if t.requires_grad]
    if out.requires_grad and wrt:
        torch.autograd.grad(out, wrt, torch.ones_like(out))


class _RestoredState:
    """Buffers of ``modules`` and the random generators, as they were."""

    def __init__(self, modules: Iterable[nn.Module], device: torch.device):
        self.buffers = [b for m in modules for b in m.buffers()]
        self.device = device

    def __enter__(self):
        self.saved = [b.detach().clone() for b in self.buffers]
        self.cpu_rng = torch.get_rng_state()
        self.cuda_rng = (torch.cuda.get_rng_state(self.device)
                         if self.device.type == 'cuda' else None)

    def __exit__(self, *exc):
        with torch.no_grad():
            for buffer, saved in zip(self.buffers, self.saved):
                buffer.copy_(saved)
        torch.set_rng_state(self.cpu_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state(self.cuda_rng, self.device)


class Tuner:
    """Chooses among implementations of one operation by timing them.

    Args:
        mode: ``'measure'`` times the candidates (cached per machine);
            ``'plain'`` always takes the plain (first) candidate; ``'fast'``
            always the last one (for tests and comparisons).
        cache_file: JSON file of earlier choices; ``None``: the default per
            machine (:func:`default_cache_file`); ``''``: no file.
        timer: seconds now (a fake one in tests).
        repeats: timed runs per candidate after one warm-up; the minimum counts.
        fixed: operation -> candidate name, taken whatever the mode (to pin
            one, e.g. ``{'ResNet stage': 'maps'}``).
        refresh: measure again what the cache file holds, and overwrite it
            (after a change of load, BIOS settings or libraries that the
            cache key does not see).
    """

    def __init__(self, mode: str = 'measure', cache_file: Optional[str] = None,
                 timer: Callable[[], float] = time.perf_counter, repeats: int = 2,
                 fixed: Optional[Dict[str, str]] = None, refresh: bool = False):
        if mode not in MODES:
            raise ValueError(f'tuner mode must be one of {MODES}, not {mode!r}')
        self.mode, self.cache_file, self.timer = mode, cache_file, timer
        self.fixed = dict(fixed or {})
        self.repeats, self.refresh = repeats, refresh
        self.choices: Dict[str, str] = {}   # key -> chosen candidate
        self.timings: Dict[str, Dict[str, float]] = {}  # key -> seconds each
        self.layers: Dict[str, str] = {}    # layer name -> key

    def choose(self, layer: str, op: str, shape_key: tuple,
               candidates: Dict[str, Candidate], device: torch.device,
               modules: Sequence[nn.Module] = ()) -> str:
        """The candidate to use for ``op`` at ``shape_key`` (the first one is
        the plain implementation). ``modules``: whose buffers a candidate
        changes (restored after timing)."""
        names = list(candidates)
        if op in self.fixed:
            if self.fixed[op] not in candidates:
                raise ValueError(f'{self.fixed[op]!r} is not an implementation of '
                                 f'{op!r}; choose one of {names}')
            return self.fixed[op]
        if self.mode == 'plain':
            return names[0]
        if self.mode == 'fast':
            return names[-1]
        key = f'{op} | {shape_key} | {device.type}'
        self.layers[layer] = key
        if key not in self.choices:
            self.choices[key] = self._decide(key, candidates, device, modules)
        return self.choices[key]

    def _decide(self, key, candidates, device, modules) -> str:
        """Rank 0's cached choice, else measured. Ranks call this in the same
        order (the same model on the same shapes), so with several ranks they
        all measure together (SyncBN layers inside a candidate need every
        rank) and take rank 0's result."""
        distributed = (dist.is_available() and dist.is_initialized()
                       and dist.get_world_size() > 1)
        main = not distributed or dist.get_rank() == 0
        cached = (self._read_cache(device).get(key)
                  if main and not self.refresh else None)
        if distributed:
            cached = _from_rank_zero(cached)
        if cached in candidates:
            return cached
        choice = self._measure(key, candidates, device, modules)
        if distributed:
            choice = _from_rank_zero(choice)
        if main:
            self._write_cache(device, key, choice)
        return choice

    def _measure(self, key, candidates, device, modules) -> str:
        times = self._time_each(candidates, device, modules)
        self.timings[key] = times
        plain = next(iter(times))
        best = min(times, key=times.get)  # the first of equals: plain on ties
        return best if times[best] < times[plain] else plain

    def _time_each(self, candidates, device, modules) -> Dict[str, float]:
        """Minimum seconds of each candidate over ``repeats`` runs after a
        warm-up. The candidates take turns run by run, so that a burst of
        load from other processes cannot fall on all runs of one of them."""
        runs = {name: [] for name in candidates}
        with _RestoredState(modules, device):
            for candidate in candidates.values():
                _run_once(candidate)  # warm-up: allocations, kernel selection
            for _ in range(self.repeats):
                for name, candidate in candidates.items():
                    _synchronize(device)
                    start = self.timer()
                    _run_once(candidate)
                    _synchronize(device)
                    runs[name].append(self.timer() - start)
        return {name: min(seconds) for name, seconds in runs.items()}

    # ---- the cache file ---------------------------------------------------
    def _path(self, device) -> Optional[str]:
        if self.cache_file == '':
            return None
        return self.cache_file or default_cache_file(device)

    def _read_cache(self, device) -> Dict[str, str]:
        path = self._path(device)
        if path is None or not os.path.isfile(path):
            return {}
        try:
            with open(path) as f:
                entries = json.load(f)
        except (OSError, ValueError):
            return {}  # unreadable or half-written by an old version: measure
        return entries if isinstance(entries, dict) else {}

    def _write_cache(self, device, key: str, choice: str) -> None:
        path = self._path(device)
        if path is None:
            return
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            entries = self._read_cache(device)
            entries[key] = choice
            handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path),
                                                 suffix='.tmp')
            with os.fdopen(handle, 'w') as f:
                json.dump(entries, f, indent=1, sort_keys=True)
            os.replace(temporary, path)  # atomic: readers see old or new
        except OSError as error:
            print_log(f'fast path: could not write the tuning cache {path} '
                      f'({error}); choices are kept for this run only',
                      logger='current', level=30)

    def report(self) -> List[Tuple[str, str, str]]:
        """(layer, operation key, chosen candidate) for every layer tuned."""
        return [(layer, key, self.choices.get(key, '?'))
                for layer, key in self.layers.items()]


class TunedMixin:
    """Gives a fast-path layer its tuner and its name in the model (set by
    :class:`~.plugin.SparKFastPath`; alone, it takes the fast candidates)."""

    fast_tuner: Tuner = Tuner(mode='fast', cache_file='')
    fast_name: str = ''
