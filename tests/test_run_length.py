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
