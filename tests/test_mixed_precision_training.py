"""Mixed-precision training (issue 23, item 4): the recipes' fp16 path and
the demo's bf16 loss curve.

1. configs/spark/*_amp.py train in fp16 on GPUs as mmpretrain's SparK
   recipes do (mmengine's AmpOptimWrapper, dynamic loss scaling), with the
   fp32 recipe's optimizer otherwise. The wrapper is built by mmengine's own
   builder: on a GPU as stated, on a CPU as tools/train.py turns it (fp32,
   or bf16 autocast with --amp).
2. A few hundred steps of the SparK demo (ResNet-18, 64 px) under CPU bf16
   autocast follow the fp32 curve of the same seed: every 25-step mean of
   the bf16 losses is within the spread that changing the seed of an fp32
   run causes (docs/cluster.md, "Mixed precision", derives this band), and
   the first step, from identical weights and data, agrees to bf16's unit
   roundoff.
"""
import glob
import inspect
import os
import sys
import uuid

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.hub import get_config
from mmengine.optim import AmpOptimWrapper, OptimWrapper, build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from spark_mm.engine.optim_wrappers import AutocastOptimWrapper
from spark_mm.registry import MODELS

from _reliability import ROOT, demo_data, one_thread, tiny_options  # noqa: F401

TESTS = os.path.dirname(os.path.abspath(__file__))
AMP_CONFIGS = sorted(glob.glob(os.path.join(ROOT, 'configs', 'spark',
                                            '*_amp.py')))
# our recipe -> mmpretrain's SparK recipe of the same backbone, in fp16
MMPRETRAIN_AMP = {
    'r50_pretrain_amp.py':
        'mmpretrain::spark/spark_sparse-resnet50_8xb512-amp-coslr-800e_in1k.py',
    'convnext_s_pretrain_amp.py':
        'mmpretrain::spark/'
        'spark_sparse-convnext-small_16xb256-amp-coslr-800e_in1k.py',
}
BF16_UNIT_ROUNDOFF = 2.0 ** -8  # 8 significand bits (7 stored)


def _train_tool_config(config, *flags):
    """The config tools/train.py would run here (no GPU: fp32 or bf16)."""
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    try:
        import train as train_tool
    finally:
        sys.path.pop(0)
    old_argv = sys.argv
    sys.argv = ['train.py', config, '--work-dir', 'unused', *flags]
    try:
        return train_tool.build_config(train_tool.parse_args())
    finally:
        sys.argv = old_argv


def _tiny_spark():
    """A small SparK model with the recipes' parameter kinds (mask tokens,
    norms, biases) for the optimizer's parameter groups."""
    cfg = Config.fromfile(os.path.join(TESTS, '_tiny_demo.py'))
    cfg.merge_from_dict({'model.input_size': 64,
                         'model.backbone.base_channels': 8,
                         'model.backbone.stem_channels': 8,
                         'model.neck.width': 32})
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return MODELS.build(cfg.model)


def test_amp_recipes_exist_for_resnet_and_convnext():
    assert sorted(map(os.path.basename, AMP_CONFIGS)) == sorted(MMPRETRAIN_AMP)


@pytest.mark.parametrize('path', AMP_CONFIGS, ids=os.path.basename)
def test_amp_recipe_is_mmpretrains_fp16_wrapper_around_the_fp32_optimizer(path):
    cfg = Config.fromfile(path)
    fp32 = Config.fromfile(path.replace('_amp.py', '.py'))
    reference = get_config(MMPRETRAIN_AMP[os.path.basename(path)])
    wrapper = cfg.optim_wrapper.to_dict()
    assert wrapper.pop('type') == reference.optim_wrapper.type \
        == 'AmpOptimWrapper'
    # mmpretrain leaves loss_scale at mmengine's default: dynamic
    default = inspect.signature(AmpOptimWrapper).parameters['loss_scale']
    assert wrapper.pop('loss_scale') == reference.optim_wrapper.get(
        'loss_scale', default.default) == 'dynamic'
    assert 'dtype' not in wrapper and 'dtype' not in reference.optim_wrapper
    expected = fp32.optim_wrapper.to_dict()
    expected.pop('type')
    assert wrapper == expected  # LAMB, its clip, the decay groups: unchanged
    for key in ('model', 'param_scheduler', 'train_cfg', 'train_dataloader'):
        assert cfg[key] == fp32[key], key


@pytest.mark.parametrize('path', AMP_CONFIGS, ids=os.path.basename)
@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU fallback')
def test_amp_recipe_builds_on_cpu_as_fp32_or_bf16_autocast(path):
    model = _tiny_spark()
    fp32, amp = _train_tool_config(path), _train_tool_config(path, '--amp')
    with DefaultScope.overwrite_default_scope(fp32.default_scope):
        built = build_optim_wrapper(model, fp32.optim_wrapper)
        bf16 = build_optim_wrapper(model, amp.optim_wrapper)
    assert type(built) is OptimWrapper
    assert type(built.optimizer).__name__ == 'Lamb'
    assert isinstance(bf16, AutocastOptimWrapper)
    assert bf16.dtype == torch.bfloat16 and bf16.device_type == 'cpu'
    with bf16.optim_context(model):
        assert torch.get_autocast_dtype('cpu') == torch.bfloat16
        assert torch.is_autocast_enabled('cpu')


@pytest.mark.parametrize('path', AMP_CONFIGS, ids=os.path.basename)
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_amp_recipe_builds_fp16_with_dynamic_loss_scaling_on_gpu(path):
    model = _tiny_spark().cuda()
    cfg = Config.fromfile(path)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert isinstance(wrapper, AmpOptimWrapper)
    assert isinstance(wrapper.loss_scaler, torch.amp.GradScaler)
    assert wrapper.loss_scaler.get_scale() == 2.0 ** 16  # torch's default
    layer = torch.nn.Conv2d(3, 4, 3).cuda()
    with wrapper.optim_context(model):
        out = layer(torch.randn(1, 3, 8, 8, device='cuda'))
    assert out.dtype == torch.float16
    before = [p.detach().clone() for p in model.parameters()]
    images = torch.rand(2, 3, 64, 64, device='cuda')
    with wrapper.optim_context(model):
        loss = model.loss(images, None)['loss']
    wrapper.update_params(loss)
    scale = wrapper.loss_scaler.get_scale()
    moved = any(not torch.equal(a, p) for a, p in zip(before,
                                                      model.parameters()))
    # a step with an overflowing gradient is skipped and the scale halved
    assert moved or scale == 2.0 ** 15


# ---- bf16 follows the fp32 loss curve -----------------------------------
CURVE_ITERS, WINDOW = 300, 25


class _Losses(Hook):
    def __init__(self) -> None:
        self.values = []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        self.values.append(outputs['loss'].item())


def _loss_curve(data_root, work_dir, seed, bf16):
    """The tiny SparK demo in an iteration loop, CURVE_ITERS steps."""
    cfg = Config.fromfile(os.path.join(TESTS, '_tiny_demo_iter.py'))
    options = tiny_options(data_root)
    del options['train_cfg.max_epochs']
    options.update({'train_cfg.max_iters': CURVE_ITERS,
                    'default_hooks.checkpoint.interval': CURVE_ITERS,
                    'default_hooks.logger.interval': CURVE_ITERS,
                    'randomness.seed': seed})
    cfg.merge_from_dict(options)
    for scheduler in cfg.param_scheduler:
        scheduler.end = CURVE_ITERS
    if bf16:  # what tools/train.py --amp gives on a CPU
        cfg.optim_wrapper.update(type='spark_mm.AutocastOptimWrapper',
                                 dtype='bfloat16')
    cfg.custom_hooks = [dict(type='StepSeedHook')]
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'curve_{uuid.uuid4().hex[:8]}'  # own MessageHub
    runner = Runner.from_cfg(cfg)
    losses = _Losses()
    runner.register_hook(losses)
    runner.train()
    return np.array(losses.values, dtype=np.float64)


def _window_means(curve):
    return curve.reshape(-1, WINDOW).mean(axis=1)


@pytest.mark.slow
def test_bf16_demo_follows_the_fp32_loss_curve_within_the_seed_spread(
        tmp_path, demo_data, one_thread):  # noqa: F811
    fp32 = _loss_curve(demo_data, tmp_path / 'fp32', 0, bf16=False)
    bf16 = _loss_curve(demo_data, tmp_path / 'bf16', 0, bf16=True)
    other_seeds = [_loss_curve(demo_data, tmp_path / f'seed{seed}', seed,
                               bf16=False) for seed in (1, 2)]
    assert len(fp32) == len(bf16) == CURVE_ITERS
    assert not np.array_equal(bf16, fp32)  # autocast did run in bf16
    assert fp32[-WINDOW:].mean() < fp32[:WINDOW].mean() - 0.03  # it learns

    # step 1: same weights, same batch and mask; only bf16 rounding differs
    assert abs(bf16[0] - fp32[0]) <= BF16_UNIT_ROUNDOFF * fp32[0]

    reference = _window_means(fp32)
    band = max(np.abs(_window_means(curve) - reference).max()
               for curve in other_seeds)
    deviation = np.abs(_window_means(bf16) - reference)
    assert deviation.max() <= band, (deviation.max(), band)
