"""tools/train.py logs the optimizer's parameter groups as one table
instead of mmengine's per-parameter ``paramwise_options`` lines."""
import logging
from types import SimpleNamespace

import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.optim import DefaultOptimWrapperConstructor

from tools.common.quiet_logs import param_group_table, quiet_param_logs


def model_and_optimizer():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(8, 2))
    constructor = DefaultOptimWrapperConstructor(
        dict(optimizer=dict(type='SGD', lr=0.1, weight_decay=0.05)),
        dict(norm_decay_mult=0.0, bias_decay_mult=0.0))
    return model, constructor(model).optimizer


def test_table_counts_every_parameter_once_per_lr_and_weight_decay():
    model, optimizer = model_and_optimizer()
    rows = param_group_table(model, optimizer).splitlines()[1:]
    # weights decay; biases and the BN affine do not
    decayed = [model[0].weight, model[2].weight]
    plain = [model[0].bias, model[1].weight, model[1].bias, model[2].bias]
    assert [row.split()[:4] for row in rows] == [
        ['0.1', '0.05', '2', str(sum(p.numel() for p in decayed))],
        ['0.1', '0', '4', str(sum(p.numel() for p in plain))]]
    assert rows[0].split()[4] == '0.weight' and rows[1].split()[4] == '0.bias'


def test_paramwise_lines_are_dropped_unless_debugging():
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())

    def run(log_level):
        runner = SimpleNamespace(
            cfg=dict(log_level=log_level),
            logger=MMLogger.get_instance(f'quiet_logs_{log_level}'),
            register_hook=lambda hook: None)
        runner.logger.addHandler(handler)
        quiet_param_logs(runner)
        runner.logger.info('paramwise_options -- 1.bias:weight_decay=0.0')
        runner.logger.info('Checkpoints will be saved to x')

    run('INFO')
    assert seen == ['Checkpoints will be saved to x']
    run('DEBUG')
    assert seen[1:] == ['paramwise_options -- 1.bias:weight_decay=0.0',
                        'Checkpoints will be saved to x']
