"""``--cfg-options train_cfg.max_epochs=N`` stretches the schedule to the run
(or refuses in one line where it cannot)."""
import argparse
import math
import os

import pytest
import torch
import torch.nn as nn

from spark_mm.errors import SparKInputError
from spark_mm.registry import PARAM_SCHEDULERS
from tools.common.run_config import load_tool_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tool_config(config, **cfg_options):
    args = argparse.Namespace(config=os.path.join(ROOT, 'configs', config),
                              cfg_options=dict(cfg_options), data_root=None,
                              launcher='none', work_dir=None)
    return load_tool_config(args)


def official_lr(peak, it, warmup_its, total_its):
    """Official SparK pretrain/utils/lr_control.py lr_wd_annealing (lr)."""
    if it < warmup_its:
        return 0.005 * peak + 0.995 * peak * it / warmup_its
    progress = (it - warmup_its) / (total_its - 1 - warmup_its)
    return 0.001 * peak + 0.999 * peak * (0.5 + 0.5 * math.cos(math.pi * progress))


def test_two_epochs_of_the_1600_epoch_recipe_run_the_whole_schedule():
    cfg = tool_config('spark/r50_pretrain.py', **{'train_cfg.max_epochs': 2})
    iters_per_epoch = 100
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.5,
                                weight_decay=0.04)
    schedulers = [PARAM_SCHEDULERS.build(
        dict(s, optimizer=optimizer),
        default_args=dict(epoch_length=iters_per_epoch))
        for s in cfg.param_scheduler]
    total = 2 * iters_per_epoch
    warmup = round(40 / 1600 * total)  # the official 40 of 1600 epochs
    for it in range(total):
        lr = optimizer.param_groups[0]['lr']
        weight_decay = optimizer.param_groups[0]['weight_decay']
        assert lr == pytest.approx(official_lr(0.5, it, warmup, total),
                                   rel=1e-12), it
        optimizer.step()
        for scheduler in schedulers:
            scheduler.step()
    assert lr == pytest.approx(0.5 * 0.001, rel=1e-12)  # the cosine's end
    assert weight_decay == pytest.approx(0.2, rel=1e-12)  # 0.04 -> 0.2, cosine


def test_a_schedule_stated_on_the_command_line_is_left_alone():
    cfg = tool_config('spark/r50_pretrain.py', **{
        'train_cfg.max_epochs': 2, 'param_scheduler.0.end': 7})
    assert cfg.param_scheduler[0].end == 7
    assert cfg.param_scheduler[1].end == 1600


def test_epoch_milestones_past_the_run_are_refused_in_one_line():
    with pytest.raises(SparKInputError, match='MultiStepLR.*epoch 36'):
        tool_config('mask_rcnn/mask-rcnn_convnext-b-spark_fpn_ms-crop-3x_coco.py',
                    **{'train_cfg.max_epochs': 2})


# ---- iteration-based configs: max_iters ----------------------------------------------
def lr_per_iteration(cfg, total):
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=1.0)
    schedulers = [PARAM_SCHEDULERS.build(dict(s, optimizer=optimizer))
                  for s in cfg.param_scheduler]
    lrs = []
    for _ in range(total):
        lrs.append(optimizer.param_groups[0]['lr'])
        optimizer.step()
        for scheduler in schedulers:
            scheduler.step()
    return lrs


def test_a_shorter_iteration_run_keeps_the_shape_of_its_schedule():
    """Mask R-CNN 1x (90k iterations: warm-up 1000 from 0.01, x0.25 at 60k and
    80k) run for 900: warm-up 10, steps at 600 and 800, every iteration."""
    cfg = tool_config('mask_rcnn/mask-rcnn_r50-spark_fpn_syncbn_1x_coco.py',
                      **{'train_cfg.max_iters': 900})
    warmup, steps = 10, (600, 800)
    for it, lr in enumerate(lr_per_iteration(cfg, 900)):
        # mmengine LinearLR reaches its end factor at its last step (end - 1)
        factor = 0.01 + 0.99 * min(it, warmup - 1) / (warmup - 1)
        expected = factor * 0.25**sum(it >= step for step in steps)
        assert lr == pytest.approx(expected, rel=1e-12), it


@pytest.mark.parametrize('config, run, expected', [
    ('upernet/upernet_r50-spark_4xb4-160k_ade20k-512x512.py', 1600,
     [(0, 15, None), (15, 1600, None)]),
    ('mask_rcnn/mask-rcnn_r50-spark_fpn_syncbn_2x_coco.py', 1800,
     [(0, 10, None), (0, 1800, [1200, 1600])]),
    ('mask_rcnn/demo_r18_synthetic_coco.py', 2,  # 2 iterations at least
     [(0, 2, None), (0, 2, [2, 2])]),
])
def test_iteration_schedulers_are_stretched_to_max_iters(config, run, expected):
    cfg = tool_config(config, **{'train_cfg.max_iters': run})
    got = [(s.begin, s.end, s.get('milestones')) for s in cfg.param_scheduler]
    assert got == expected


def test_an_iteration_schedule_stated_on_the_command_line_is_left_alone():
    cfg = tool_config('mask_rcnn/mask-rcnn_r50-spark_fpn_syncbn_1x_coco.py', **{
        'train_cfg.max_iters': 900, 'param_scheduler.1.milestones': [5]})
    assert (cfg.param_scheduler[0].end, cfg.param_scheduler[1].end) == (1000, 90000)
    assert cfg.param_scheduler[1].milestones == [5]
