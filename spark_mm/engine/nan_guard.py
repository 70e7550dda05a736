"""Stop at the first NaN/inf loss, before a checkpoint can store broken weights."""
import math
import os.path as osp
from typing import Optional

import torch
from mmengine.dist import all_reduce
from mmengine.hooks import Hook

from ..checkpoint.finite import non_finite_keys
from ..errors import NonFiniteLossError
from ..registry import HOOKS


def last_good_checkpoint(runner) -> Optional[str]:
    """The checkpoint ``last_checkpoint`` points at, if it exists."""
    pointer = osp.join(runner.work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as file:
            path = file.read().strip()
        if osp.isfile(path):
            return path
    return None


def _resume_advice(runner) -> str:
    checkpoint = last_good_checkpoint(runner)
    if checkpoint is None:
        return ('no checkpoint was saved before it; lower the learning rate '
                '(or enable grad clipping) and start again')
    return (f'the last good checkpoint is {checkpoint}: lower the learning '
            f'rate if it happens again and continue with --resume {checkpoint}')


@HOOKS.register_module()
class NanGuardHook(Hook):
    """Raise :class:`NonFiniteLossError` at the first non-finite loss.

    It runs before every other ``after_train_iter`` hook, so the checkpoint
    hook never sees the step that broke the weights; the last checkpoint on
    disk stays the last good one. All ranks agree (one all-reduce of a flag
    per iteration), so a NaN on one rank stops all of them instead of leaving
    the others waiting. As a second line, a checkpoint whose weights are not
    finite is refused before it is written.
    """

    priority = 'VERY_HIGH'

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        losses = {key: float(value.detach() if torch.is_tensor(value) else value)
                  for key, value in (outputs or {}).items() if 'loss' in key}
        bad = {key: value for key, value in losses.items()
               if not math.isfinite(value)}
        flag = torch.tensor([1.0 if bad else 0.0])
        all_reduce(flag, op='max')
        if flag.item() == 0:
            return
        found = (', '.join(f'{key}={value}' for key, value in bad.items())
                 or 'a non-finite loss on another rank')
        raise NonFiniteLossError(
            f'{found} at iteration {runner.iter + 1} (epoch {runner.epoch + 1});'
            f' training stopped without saving; {_resume_advice(runner)}')

    def before_save_checkpoint(self, runner, checkpoint):
        broken = non_finite_keys(checkpoint.get('state_dict', {}))
        if broken:
            raise NonFiniteLossError(
                f'weights {", ".join(broken[:5])} are not finite at iteration '
                f'{runner.iter + 1}; the checkpoint was not written; '
                f'{_resume_advice(runner)}')
