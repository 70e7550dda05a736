"""The pretraining and fine-tuning schedules against the official formula, in
float64 at every iteration; and why ours are kept over mmengine's: the same
curve from LinearLR + CosineAnnealingLR + CosineAnnealingParamScheduler needs
iteration counts that an epoch-based config cannot state."""
import math
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.optim.scheduler import (CosineAnnealingLR,
                                      CosineAnnealingParamScheduler, LinearLR)

import spark_mm  # noqa: F401  (registers the schedulers)
from spark_mm.registry import PARAM_SCHEDULERS
from _official_schedule import official_lr_wd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEAK, WD, WD_END = 2.4e-3, 0.04, 0.2
LR_SCALES = (1.0, 0.7**3, 0.5)  # per group; the middle group has no decay


def optimizer_with_groups():
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in LR_SCALES]
    return torch.optim.SGD(
        [dict(params=[p], lr=PEAK * scale, weight_decay=0.0 if i == 1 else WD)
         for i, (p, scale) in enumerate(zip(params, LR_SCALES))], lr=PEAK)


def worst_relative_error(optimizer, schedulers, warmup_its, total_its,
                         with_wd=True):
    """Largest relative difference from the official lr (and wd), over every
    group and every iteration of the run."""
    worst = 0.0
    for it in range(total_its):
        lr, wd = official_lr_wd(PEAK, WD, WD_END, it, warmup_its, total_its)
        for i, (group, scale) in enumerate(zip(optimizer.param_groups, LR_SCALES)):
            worst = max(worst, abs(group['lr'] - lr * scale) / (lr * scale))
            if with_wd:
                if i == 1:
                    assert group['weight_decay'] == 0.0, it
                else:
                    worst = max(worst, abs(group['weight_decay'] - wd) / wd)
        optimizer.step()
        for scheduler in schedulers:
            scheduler.step()
    return worst


def config_schedulers(config, optimizer, epoch_length):
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', config))
    return [PARAM_SCHEDULERS.build(dict(s, optimizer=optimizer),
                                   default_args=dict(epoch_length=epoch_length))
            for s in cfg.param_scheduler]


@pytest.mark.parametrize('config, epochs, warmup, with_wd', [
    ('spark/r50_pretrain.py', 1600, 40, True),
    ('imagenet/resnet50_spark-ft_8xb512-lamb-coslr-300e_in1k.py', 300, 5, False),
])
def test_config_schedule_is_the_official_one_at_every_iteration(
        config, epochs, warmup, with_wd):
    epoch_length = 4
    optimizer = optimizer_with_groups()
    schedulers = config_schedulers(config, optimizer, epoch_length)
    worst = worst_relative_error(optimizer, schedulers, warmup * epoch_length,
                                 epochs * epoch_length, with_wd)
    assert worst <= 1e-12


def mmengine_per_iteration(optimizer, warmup_its, total_its):
    """The official schedule from mmengine's own schedulers, in iterations:
    the warm-up reaches the peak at iteration W (its last step, so end W+1),
    the cosine ends at T-1 (T_max T-1-W) and takes over at W."""
    return [
        LinearLR(optimizer, start_factor=0.005, by_epoch=False, begin=0,
                 end=warmup_its + 1),
        CosineAnnealingLR(optimizer, eta_min_ratio=1e-3, by_epoch=False,
                          T_max=total_its - 1 - warmup_its, begin=warmup_its,
                          end=total_its),
        CosineAnnealingParamScheduler(
            optimizer, 'weight_decay', eta_min_ratio=WD_END / WD, by_epoch=False,
            T_max=total_its - 1, begin=0, end=total_its)]


def test_mmengine_schedulers_need_iteration_counts_for_the_official_curve():
    epochs, warmup, epoch_length = 1600, 40, 4
    warmup_its, total_its = warmup * epoch_length, epochs * epoch_length
    optimizer = optimizer_with_groups()
    exact = worst_relative_error(
        optimizer, mmengine_per_iteration(optimizer, warmup_its, total_its),
        warmup_its, total_its)
    assert exact <= 1e-12
    # stated in epochs (what a config can write without the epoch length)
    optimizer = optimizer_with_groups()
    in_epochs = [
        LinearLR.build_iter_from_epoch(optimizer, start_factor=0.005, begin=0,
                                       end=warmup, epoch_length=epoch_length),
        CosineAnnealingLR.build_iter_from_epoch(
            optimizer, eta_min_ratio=1e-3, begin=warmup, end=epochs,
            epoch_length=epoch_length),
        CosineAnnealingParamScheduler.build_iter_from_epoch(
            optimizer, 'weight_decay', eta_min_ratio=WD_END / WD, begin=0,
            end=epochs, epoch_length=epoch_length)]
    assert worst_relative_error(optimizer, in_epochs, warmup_its,
                                total_its) > 1e-4
