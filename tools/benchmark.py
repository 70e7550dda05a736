"""Benchmark one SparK training step against the dense backbone and mmpretrain's SparK.

    python tools/benchmark.py --config configs/spark/r50_pretrain.py \
        --batch 16 --size 224 --decoder-width 512 [--precision fp32|bf16|fp16] \
        [--channels-last | --fast] [--iters 3 --warmup 1] [--device cpu|cuda]
        [--retune]

All candidates run in this one process, interleaved step by step, so that the
ratios printed at the end compare like with like on a busy machine.

Candidates (all built from one config):
- ``ours``: this project's SparK as the config has it (the fast-path plug-in,
  in the requested precision and layout);
- ``plain``: this project's SparK without the fast path (``fast_path=False``):
  the algorithm as spark_mm/models defines it;
- ``dense``: the same backbone, dense, on the whole image, with a trivial loss;
- ``decoder``: ``ours``'s decoder alone, forward + backward on random maps of
  the shapes the densify step hands it. The decoder is dense in every SparK
  (mmpretrain's and the official one compute the same convolutions), so its
  ratio to mmpretrain's step is a floor under ``ours``'s;
- ``mmpretrain``: mmpretrain's own ``SparK`` (``SparseResNet`` /
  ``SparseConvNeXt`` of the same arch, same decoder width), NCHW (its configs'
  layout), in the baseline precision (fp32 by default);
- ``mmpretrain_nhwc``: the same model and inputs in channels_last.

Ratios are taken against the faster of the mmpretrain candidates in the run
(the peer at its best layout; on CPUs channels_last is often the faster by a
quarter), and printed against each of them.

A step is forward + backward + optimizer step (the config's optimizer and
gradient clipping, through an mmengine optim wrapper). Timing alternates the
candidates step by step (the order rotates every repetition) so that load from
other processes hits all of them alike; medians are reported. The fast
path's tuner times its implementations during the first step (a warm-up
step; its choices are cached per machine), and the table of what each layer
took is printed.

Peak memory. GPU: ``torch.cuda.max_memory_allocated`` over the timed steps,
minus what was allocated before. CPU: each candidate runs again in a fresh
subprocess that runs one step (creating the optimizer state), resets the
kernel's resident-set high-water mark (``/proc/self/clear_refs``), runs more
steps and reads ``VmHWM`` from ``/proc/self/status``: the peak growth of
resident memory during a step (activations, gradients, workspace) over the
model and its optimizer state, as on the GPU. glibc is told to mmap every
allocation of 64 KiB or more so that freed tensors leave the resident set.
"""
import argparse
import copy
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import torch
from mmengine.config import Config, DictAction
from mmengine.optim import build_optim_wrapper


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from spark_mm.apis import single_process_config  # noqa: E402
from spark_mm.engine.optim_wrappers import cpu_has_native_bf16  # noqa: E402
from spark_mm.models.fast.tuner import device_name  # noqa: E402
from tools.common.model_tools import input_errors_exit  # noqa: E402

PRECISIONS = ('fp32', 'bf16', 'fp16')
BASELINES = ('mmpretrain', 'mmpretrain_nhwc')  # mmpretrain's SparK, NCHW / NHWC
_DTYPES = dict(bf16='bfloat16', fp16='float16')


def fast_path(device: str) -> dict:
    """The default fast path on ``device``: channels_last, bf16 where supported."""
    if device == 'cuda':
        bf16 = torch.cuda.is_bf16_supported()
        return dict(channels_last=True, precision='bf16' if bf16 else 'fp16')
    return dict(channels_last=True,
                precision='bf16' if cpu_has_native_bf16() else 'fp32')


@dataclass
class Candidate:
    name: str
    precision: str
    channels_last: bool
    step: Callable[[], None] = None
    model: object = None
    times: List[float] = field(default_factory=list)
    peak_bytes: Optional[int] = None

    @property
    def layout(self) -> str:
        return 'NHWC' if self.channels_last else 'NCHW'


# ---- building -----------------------------------------------------------
def load_config(config: str, decoder_width: Optional[int],
                cfg_options: Optional[dict] = None, retune: bool = False) -> Config:
    cfg = single_process_config(config, cfg_options)  # SyncBN is BN
    if decoder_width:
        cfg.model.neck.width = decoder_width
    if retune and isinstance(cfg.model.get('fast_path'), dict):
        cfg.model.fast_path.tuner = dict(cfg.model.fast_path.get('tuner') or {},
                                         refresh=True)
    return cfg


def build_ours(cfg: Config, channels_last: bool, fast: bool = True):
    from spark_mm.registry import MODELS
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.pop('data_preprocessor', None)
    if not fast:
        model_cfg['fast_path'] = False
    elif isinstance(model_cfg.get('fast_path'), dict):
        model_cfg['fast_path']['channels_last'] = channels_last
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def build_dense_backbone(cfg: Config):
    from spark_mm.registry import MODELS
    backbone = MODELS.build(copy.deepcopy(cfg.model.backbone))
    backbone.init_weights()
    return backbone


def mmpretrain_spark_config(cfg: Config) -> dict:
    """mmpretrain's ``SparK`` with the backbone and decoder width of ``cfg``.

    Follows mmpretrain's own SparK configs (configs/spark/ in its package);
    SyncBN is plain BN, as for every candidate in a single process.
    """
    backbone = cfg.model.backbone
    kind = backbone.type.split('.')[-1]
    if kind == 'ResNet':
        sparse_backbone = dict(
            type='SparseResNet', depth=backbone.depth, out_indices=(0, 1, 2, 3),
            drop_path_rate=backbone.get('drop_path_rate', 0.0),
            norm_cfg=dict(type='SparseBatchNorm2d'))
        widths = {18: 512, 34: 512}.get(backbone.depth, 2048)
        norm_cfg = dict(type='SparseBatchNorm2d')
    elif kind == 'ConvNeXt':
        sparse_backbone = dict(
            type='SparseConvNeXt', arch=backbone.arch, out_indices=(0, 1, 2, 3),
            drop_path_rate=backbone.get('drop_path_rate', 0.0),
            gap_before_output=False)
        arch = backbone.arch
        channels = (arch['channels'] if isinstance(arch, dict) else
                    _convnext_channels(arch))
        widths = channels[-1]
        norm_cfg = dict(type='SparseLN2d', eps=1e-6)
    else:
        raise ValueError(f'no mmpretrain SparK counterpart for {backbone.type}')
    return dict(
        type='mmpretrain.SparK', input_size=cfg.model.get('input_size', 224),
        downsample_raito=32, mask_ratio=cfg.model.get('mask_ratio', 0.6),
        enc_dec_norm_cfg=norm_cfg, enc_dec_norm_dim=widths,
        backbone=sparse_backbone,
        neck=dict(type='SparKLightDecoder', feature_dim=cfg.model.neck.width,
                  upsample_ratio=32, mid_channels=0, last_act=False,
                  norm_cfg=dict(type='BN')),
        head=dict(type='SparKPretrainHead',
                  loss=dict(type='PixelReconstructionLoss', criterion='L2')))


def _convnext_channels(arch: str):
    from mmpretrain.models import ConvNeXt
    return ConvNeXt.arch_settings[arch]['channels']


def build_mmpretrain(cfg: Config, input_size: int):
    from mmpretrain.registry import MODELS
    model_cfg = mmpretrain_spark_config(cfg)
    model_cfg['input_size'] = input_size
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def optim_wrapper_for(model, cfg: Config, precision: str, device: str):
    wrapper_cfg = copy.deepcopy(cfg.optim_wrapper)
    if precision == 'fp32':
        wrapper_cfg.type = 'OptimWrapper'
    elif device == 'cuda':
        wrapper_cfg.type = 'AmpOptimWrapper'
        wrapper_cfg.dtype = _DTYPES[precision]
    elif precision == 'bf16':
        wrapper_cfg.type = 'spark_mm.AutocastOptimWrapper'
        wrapper_cfg.dtype = 'bfloat16'
        wrapper_cfg.device_type = 'cpu'
    else:
        raise ValueError('fp16 needs a GPU; use bf16 on CPU')
    return build_optim_wrapper(model, Config(dict(optim_wrapper=wrapper_cfg)).optim_wrapper)


def make_step(model, loss_fn, optim_wrapper) -> Callable[[], None]:
    model.train()

    def step():
        with optim_wrapper.optim_context(model):
            loss = loss_fn()
        optim_wrapper.update_params(loss)
    return step


def build_candidate(name: str, cfg: Config, args, images) -> Candidate:
    """One candidate, ready to step; ``images`` are shared by all."""
    device = args.device
    if name in ('ours', 'plain'):
        cand = Candidate(name, args.precision, args.channels_last)
        model = build_ours(cfg, args.channels_last, fast=name == 'ours').to(device)
        if name == 'plain' and args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        inputs = _layout(images, args.channels_last)
        cand.model = model

        def loss_fn():
            return model.loss(inputs, None)['loss']
    elif name == 'dense':
        cand = Candidate(name, args.precision, args.channels_last)
        model = build_dense_backbone(cfg).to(device)
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        inputs = _layout(images, args.channels_last)

        def loss_fn():
            feats = model(inputs)
            feats = feats if isinstance(feats, (list, tuple)) else [feats]
            return sum(f.float().mean() for f in feats)
    elif name == 'decoder':
        cand = Candidate(name, args.precision, args.channels_last)
        spark = build_ours(_without_retune(cfg), args.channels_last).to(device)
        model = spark.neck
        dense = [_layout(torch.randn(shape, device=device), args.channels_last)
                 for shape in decoder_input_shapes(spark, images)]

        def loss_fn():
            return model(dense).float().square().mean()
    elif name in BASELINES:
        channels_last = name == 'mmpretrain_nhwc'
        cand = Candidate(name, args.baseline_precision, channels_last)
        model = build_mmpretrain(cfg, args.size).to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        inputs = _layout(images, channels_last)

        def loss_fn():
            return model.loss(inputs, None)['loss']
    else:
        raise ValueError(name)
    wrapper = optim_wrapper_for(model, cfg, cand.precision, device)
    cand.step = make_step(model, loss_fn, wrapper)
    return cand


def _without_retune(cfg: Config) -> Config:
    """``cfg`` taking the choices ``ours`` (which steps first) measured."""
    cfg = copy.deepcopy(cfg)
    tuner = (cfg.model.get('fast_path') or {}).get('tuner') if isinstance(
        cfg.model.get('fast_path'), dict) else None
    if tuner:
        tuner.pop('refresh', None)
    return cfg


def decoder_input_shapes(spark, images) -> List[torch.Size]:
    """Shapes of the maps ``spark``'s densify step hands its decoder."""
    shapes = []
    hook = spark.neck.register_forward_pre_hook(
        lambda module, args: shapes.extend(m.shape for m in args[0] if m is not None))
    try:
        with torch.no_grad():
            spark.reconstruct(images[:1], spark.generate_mask(images[:1]))
    finally:
        hook.remove()
    return [torch.Size((len(images),) + tuple(shape[1:])) for shape in shapes]


def _layout(images, channels_last: bool):
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


# ---- measuring ----------------------------------------------------------
def _sync(device: str):
    if device == 'cuda':
        torch.cuda.synchronize()


def time_interleaved(cands: List[Candidate], warmup: int, iters: int,
                     device: str, log=print):
    for rep in range(warmup + iters):
        shift = rep % len(cands)
        for cand in cands[shift:] + cands[:shift]:
            _sync(device)
            start = time.perf_counter()
            cand.step()
            _sync(device)
            elapsed = time.perf_counter() - start
            if rep >= warmup:
                cand.times.append(elapsed)
            log(f'  rep {rep} ({"warm-up" if rep < warmup else "timed"}) '
                f'{cand.name}: {elapsed:.3f} s')


def _rss_kib(field_name: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field_name + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field_name} not in /proc/self/status')


def cpu_peak_step_memory(cand: Candidate, steps: int) -> int:
    """Peak growth of resident memory (bytes) over ``steps`` steps.

    One step first, so that the optimizer state and oneDNN's caches exist
    already: what is left is activations, gradients and workspace.
    """
    cand.step()
    before = _rss_kib('VmRSS')
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset VmHWM to the current RSS
    for _ in range(steps):
        cand.step()
    return (_rss_kib('VmHWM') - before) * 1024


def start_memory_probe(name: str, args) -> subprocess.Popen:
    """Start :func:`cpu_peak_step_memory` for one candidate in a fresh process."""
    cmd = [sys.executable, os.path.abspath(__file__), '--memory-probe', name,
           '--config', args.config, '--batch', str(args.batch),
           '--size', str(args.size), '--precision', args.precision,
           '--baseline-precision', args.baseline_precision,
           '--device', 'cpu', '--memory-steps', str(args.memory_steps)]
    if args.threads:
        cmd += ['--threads', str(args.threads)]
    if args.channels_last:
        cmd.append('--channels-last')
    if args.decoder_width:
        cmd += ['--decoder-width', str(args.decoder_width)]
    if args.cfg_options:
        cmd += ['--cfg-options'] + [f'{key}={value}'
                                    for key, value in args.cfg_options.items()]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536')
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env['PYTHONPATH'] = root + os.pathsep + env.get('PYTHONPATH', '')
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def finish_memory_probe(name: str, probe: subprocess.Popen) -> Optional[int]:
    stdout, stderr = probe.communicate()
    for line in stdout.splitlines():
        if line.startswith('PEAK_BYTES '):
            return int(line.split()[1])
    sys.stderr.write(f'memory probe of {name} failed:\n{stderr[-2000:]}\n')
    return None


# ---- reporting ----------------------------------------------------------
def median(values: List[float]) -> float:
    return statistics.median(values) if values else float('nan')


def fastest_baseline(cands: Dict[str, Candidate]) -> Optional[Candidate]:
    """The mmpretrain candidate with the shortest median step: the peer at
    its best layout."""
    baselines = [cands[name] for name in BASELINES if name in cands]
    return min(baselines, key=lambda c: median(c.times)) if baselines else None


def report(cands: Dict[str, Candidate], batch: int, log=print):
    base = fastest_baseline(cands)
    width = max(map(len, cands)) + 2
    log(f'{"candidate":<{width}}{"precision":<11}{"layout":<8}{"s/step":>9}'
        f'{"img/s":>9}{"x base":>9}{"peak MiB":>10}{"x base":>9}')
    for cand in cands.values():
        t = median(cand.times)
        ratio = f'{t / median(base.times):.3f}' if base else '-'
        mem = f'{cand.peak_bytes / 2**20:.0f}' if cand.peak_bytes else '-'
        mem_ratio = (f'{cand.peak_bytes / base.peak_bytes:.3f}'
                     if base and cand.peak_bytes and base.peak_bytes else '-')
        log(f'{cand.name:<{width}}{cand.precision:<11}{cand.layout:<8}{t:>9.3f}'
            f'{batch / t:>9.2f}{ratio:>9}{mem:>10}{mem_ratio:>9}')
    if base:
        log(f'base: {base.name} ({base.layout}), the faster layout of '
            "mmpretrain's SparK in this run")
    ours = cands['ours']
    for other in BASELINES + ('plain', 'dense'):
        if other in cands:
            # Steps of one repetition ran back to back: their ratio is the
            # least disturbed by load changing over the run.
            paired = median([a / b for a, b in zip(ours.times, cands[other].times)])
            log(f'ratio step time ours/{other}: {paired:.3f} (median of '
                'per-repetition ratios; ratio of medians '
                f'{median(ours.times) / median(cands[other].times):.3f})')
    for other in BASELINES:
        if other in cands and ours.peak_bytes and cands[other].peak_bytes:
            log(f'ratio peak memory ours/{other}: '
                f'{ours.peak_bytes / cands[other].peak_bytes:.3f}')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default='configs/spark/r50_pretrain.py')
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--precision', choices=PRECISIONS, default='fp32',
                        help='precision of ours and of the dense baseline')
    parser.add_argument('--baseline-precision', choices=PRECISIONS, default='fp32',
                        help="precision of mmpretrain's SparK")
    parser.add_argument('--channels-last', action='store_true',
                        help='ours and the dense baseline in channels_last')
    parser.add_argument('--fast', action='store_true',
                        help='the default fast path: channels_last, and bf16 '
                        'where the device supports it (overrides the two above)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                        help='override config settings (key=value), e.g. '
                        'model.fast_path.compact_saved_maps=False; mmpretrain\'s SparK '
                        'follows the backbone, widths and mask ratio')
    parser.add_argument('--decoder-width', type=int, default=None,
                        help="decoder width at the coarsest scale (default: the config's)")
    parser.add_argument('--iters', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--device', choices=('cpu', 'cuda'), default=None)
    parser.add_argument('--candidates', nargs='+',
                        default=['ours', 'dense', 'mmpretrain', 'mmpretrain_nhwc'],
                        choices=['ours', 'plain', 'dense', 'decoder', 'mmpretrain',
                                 'mmpretrain_nhwc'])
    parser.add_argument('--retune', action='store_true',
                        help="measure the fast path's choices again (the tuning "
                        'cache is overwritten), e.g. on a machine quieter than '
                        'when they were cached')
    parser.add_argument('--no-memory', action='store_true', help='skip peak memory')
    parser.add_argument('--memory-steps', type=int, default=1)
    parser.add_argument('--parallel-memory', action='store_true',
                        help='run the CPU memory probes concurrently (quicker)')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--memory-probe', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name, lowest in (('batch', 1), ('size', 1), ('iters', 1), ('warmup', 0)):
        if getattr(args, name) < lowest:
            parser.error(f'--{name} must be at least {lowest}')
    if args.device is None:
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if args.fast:
        settings = fast_path(args.device)
        args.channels_last = settings['channels_last']
        args.precision = settings['precision']
    return args


def main(argv=None, log=print):
    args = parse_args(argv)
    import spark_mm  # noqa: F401  (registers everything)
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope
    # Quiet the per-parameter init and optimizer logs of model building.
    MMLogger.get_instance('spark_mm_benchmark', log_level='WARNING')
    init_default_scope('spark_mm')  # mmpretrain's names resolve through ours
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = load_config(args.config, args.decoder_width, args.cfg_options,
                      retune=args.retune and not args.memory_probe)
    images = torch.randn(args.batch, 3, args.size, args.size, device=args.device)

    if args.memory_probe:
        cand = build_candidate(args.memory_probe, cfg, args, images)
        log(f'PEAK_BYTES {cpu_peak_step_memory(cand, args.memory_steps)}')
        return None

    if args.precision == 'bf16' and args.device == 'cpu' and not cpu_has_native_bf16():
        log('warning: this CPU has no native bf16 (avx512_bf16/AMX); '
            'bf16 autocast is emulated and slow here')
    device_name = device_description(torch.device(args.device))
    log(f'config {args.config}, batch {args.batch}, {args.size}px, decoder width '
        f'{cfg.model.neck.width}, device: {device_name}, warm-up {args.warmup}, '
        f'timed {args.iters} (interleaved, median)')
    if args.cfg_options:
        log(f'cfg-options: {args.cfg_options}')
    names = list(dict.fromkeys(args.candidates))
    if 'ours' not in names:
        names.insert(0, 'ours')
    cands = {}
    for name in names:
        try:
            cands[name] = build_candidate(name, cfg, args, images)
        except (ValueError, KeyError) as error:
            if name == 'ours':
                raise
            log(f'skipping {name}: {error}')
    time_interleaved(list(cands.values()), args.warmup, args.iters, args.device, log)
    if not args.no_memory and args.device == 'cuda':
        for cand in cands.values():
            cand.peak_bytes = _cuda_peak(cand)
    elif not args.no_memory:
        # One at a time unless asked: concurrent probes share the memory bus
        # but not their resident sets, so this only saves time.
        probes = {}
        for name in cands:
            probes[name] = start_memory_probe(name, args)
            if not args.parallel_memory:
                cands[name].peak_bytes = finish_memory_probe(name, probes.pop(name))
        for name, probe in probes.items():
            cands[name].peak_bytes = finish_memory_probe(name, probe)
    report(cands, args.batch, log)
    report_choices(cands['ours'].model, log)
    return cands


def report_choices(model, log=print):
    """Which implementation each layer of ``model``'s fast path took."""
    tuner = getattr(getattr(model, 'fast_path', None), 'tuner', None)
    if tuner is None:
        log('fast path: off (the plain algorithm)')
        return
    rows = tuner.report()
    if not rows:
        log(f'fast path: tuner mode {tuner.mode!r}, no layer with a choice measured')
        return
    log(f'fast path: implementation per layer (tuner mode {tuner.mode!r}; '
        'measured seconds per forward+backward where timed this run)')
    for layer, key, choice in rows:
        times = tuner.timings.get(key)
        timed = (' (' + ', '.join(f'{name} {seconds:.4f}' for name, seconds in times.items())
                 + ')') if times else ' (from the cache)'
        log(f'  {layer:<32} {key.split(" | ")[0]:<22} -> {choice}{timed}')


def device_description(device: torch.device) -> str:
    """The processor and what matters for speed on it."""
    if device.type == 'cuda':
        return f'{torch.cuda.get_device_name(device)} (torch {torch.__version__})'
    return (f'CPU {device_name(device)}, {torch.get_num_threads()} threads '
            f'(torch {torch.__version__})')


def _cuda_peak(cand: Candidate) -> int:
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    cand.step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


if __name__ == '__main__':
    with input_errors_exit():  # the user's input: one line; a bug: its traceback
        main()
