"""The official SparK pretraining schedule, per iteration.

Official ``pretrain/utils/lr_control.py`` (``lr_wd_annealing``), at iteration
``it`` of ``T`` with ``W`` warm-up iterations:

- lr: ``peak * (0.005 + 0.995 * it / W)`` during the warm-up, then
  ``peak * (0.001 + 0.999 * (1 + cos(pi * (it - W) / (T - 1 - W))) / 2)``;
- weight decay: ``end + (start - end) * (1 + cos(pi * it / (T - 1))) / 2``,
  from 0.04 to 0.2 over the whole run, on the groups that decay at all.

Both are mmengine parameter schedulers, so configs state them in epochs with
``convert_to_iter_based=True`` and resuming continues the same curve.

Kept over mmengine's ``LinearLR`` + ``CosineAnnealingLR(eta_min_ratio=1e-3)`` +
``CosineAnnealingParamScheduler('weight_decay')``: those give the official curve
(5e-13 relative over 499,200 iterations) only stated in iterations (warm-up
``end=W+1``, ``T_max=T-1-W``), which an epoch-based config cannot write without
its epoch length; stated in epochs they miss it by 8e-3 (tests/test_schedulers.py).
"""
import math

from mmengine.optim.scheduler.param_scheduler import INF, _ParamScheduler

from ..errors import SparKInputError
from ..registry import PARAM_SCHEDULERS


def _epochs_to_iters(cls, *args, begin=0, end=INF, by_epoch=True,
                     epoch_length=None, warmup=None, **kwargs):
    if not by_epoch or not epoch_length or epoch_length <= 0:
        raise SparKInputError(f'{cls.__name__}: convert_to_iter_based needs an '
                              'epoch-based config and a positive epoch length')
    if warmup is not None:
        kwargs['warmup'] = int(round(warmup * epoch_length))
    end = end if end == INF else int(end * epoch_length)
    return cls(*args, begin=int(begin * epoch_length), end=end, by_epoch=False,
               **kwargs)


def _cosine(progress: float) -> float:
    """1 at progress 0, 0 at progress 1 (half a cosine)."""
    return 0.5 + 0.5 * math.cos(math.pi * min(max(progress, 0.0), 1.0))


class _FiniteSchedule(_ParamScheduler):
    """A scheduler whose value depends on the step and the run's length."""

    def __init__(self, optimizer, param_name, begin=0, end=INF, **kwargs):
        if end == INF:
            raise SparKInputError(f'{type(self).__name__} needs a finite end (the '
                                  'last epoch or iteration of the run)')
        super().__init__(optimizer, param_name, begin=begin, end=end, **kwargs)

    @property
    def length(self) -> int:
        return self.end - self.begin

    build_iter_from_epoch = classmethod(_epochs_to_iters)


@PARAM_SCHEDULERS.register_module()
class SparKWarmupCosineLR(_FiniteSchedule):
    """Linear warm-up from ``start_factor`` x lr, then cosine to ``end_factor`` x lr.

    ``warmup`` is in the scheduler's steps (epochs in an epoch-based config,
    converted with the rest by ``convert_to_iter_based=True``). Defaults are
    the official SparK's 0.005 and 0.001.
    """

    def __init__(self, optimizer, warmup: int, start_factor: float = 0.005,
                 end_factor: float = 0.001, begin: int = 0, end: int = INF,
                 last_step: int = -1, by_epoch: bool = True, verbose: bool = False):
        self.warmup = int(warmup)
        self.start_factor, self.end_factor = start_factor, end_factor
        super().__init__(optimizer, 'lr', begin=begin, end=end,
                         last_step=last_step, by_epoch=by_epoch, verbose=verbose)
        if not 0 <= self.warmup < self.length:
            raise SparKInputError(f'warm-up of {self.warmup} steps does not fit a '
                                  f'schedule of {self.length} steps')

    def factor(self, step: int) -> float:
        if step < self.warmup:
            return self.start_factor + (1 - self.start_factor) * step / self.warmup
        decay_steps = self.length - 1 - self.warmup
        progress = (step - self.warmup) / decay_steps if decay_steps > 0 else 1.0
        return self.end_factor + (1 - self.end_factor) * _cosine(progress)

    def _get_value(self):
        factor = self.factor(self.last_step)
        return [base * factor for base in self.base_values]


@PARAM_SCHEDULERS.register_module()
class SparKCosineWeightDecay(_FiniteSchedule):
    """Weight decay from the optimizer's value to ``end_value``, cosine, per step.

    Groups with a smaller weight decay (``decay_mult``) follow in proportion,
    so groups without decay stay at 0, as in the official code.
    """

    def __init__(self, optimizer, end_value: float = 0.2, begin: int = 0,
                 end: int = INF, last_step: int = -1, by_epoch: bool = True,
                 verbose: bool = False):
        self.end_value = end_value
        super().__init__(optimizer, 'weight_decay', begin=begin, end=end,
                         last_step=last_step, by_epoch=by_epoch, verbose=verbose)

    def _get_value(self):
        reference = max(self.base_values)
        if reference <= 0:
            return list(self.base_values)
        progress = self.last_step / (self.length - 1) if self.length > 1 else 1.0
        weight = _cosine(progress)
        return [base * (self.end_value / reference) * (1 - weight) + base * weight
                for base in self.base_values]


def spark_param_scheduler(max_epochs: int, warmup_epochs: int,
                          weight_decay_end: float = 0.2) -> list:
    """The official SparK schedule, per iteration, stated in epochs.

    lr: linear warm-up from 0.005x, then cosine to 0.001x; weight decay: cosine
    from the optimizer's value to ``weight_decay_end`` over all epochs (see
    the classes above). Imported by the pretraining configs, so
    that a config with other epoch numbers states only those numbers.
    """
    return [
        dict(type='SparKWarmupCosineLR', warmup=warmup_epochs, by_epoch=True,
             begin=0, end=max_epochs, convert_to_iter_based=True),
        dict(type='SparKCosineWeightDecay', end_value=weight_decay_end,
             by_epoch=True, begin=0, end=max_epochs, convert_to_iter_based=True),
    ]
