"""A shorter or longer run keeps the shape of its schedule.

``--cfg-options train_cfg.max_epochs=2`` on a 1600-epoch pretraining config
would otherwise keep the 40-epoch warm-up and the 1600-epoch cosine: the run
would end inside the warm-up. When the command line changes the run's length
and says nothing about ``param_scheduler``, the schedule is stretched to it
and one log line says so:

- ``max_epochs`` (epoch-based configs): every epoch-based scheduler that
  mmengine converts to iterations (``convert_to_iter_based=True``: the SparK
  schedules), warm-up included. A scheduler that cannot be stretched that way
  (epoch steps, milestones) and reaches past the new end stops the run with
  one line; schedulers counted in iterations are left as they are.
- ``max_iters`` (iteration-based configs: detection, segmentation): every
  scheduler counted in iterations, its begin, end, milestones, ``T_max`` and
  warm-up, rounded to whole iterations; the last iteration of the config maps
  to the run's, and a scheduler keeps at least 2 iterations (a linear warm-up
  then still reaches its end factor).
"""
from mmengine.config import Config
from mmengine.logging import print_log

from spark_mm.errors import SparKInputError

INF = float('inf')
ITERATION_KEYS = ('begin', 'end', 'T_max', 'warmup')


def _stretch(value, ratio, old_end, new_end):
    """An epoch count on the new length (the old end maps to the new one
    exactly, so no rounding error cuts the last iteration)."""
    if value == old_end:
        return new_end
    return value * ratio


def _number(value) -> str:
    if isinstance(value, (list, tuple)):
        return '[' + ', '.join(_number(v) for v in value) + ']'
    return f'{value:g}'


def _describe(scheduler, before) -> str:
    parts = [f'{key} {_number(before[key])} -> {_number(scheduler[key])}'
             for key in before if before[key] != scheduler[key]]
    return f'{scheduler.get("type")} ' + ', '.join(parts)


def _schedulers(cfg: Config) -> list:
    schedulers = cfg.get('param_scheduler') or []
    return [schedulers] if isinstance(schedulers, dict) else schedulers


def _stretch_epochs(cfg: Config, config_max_epochs, run_max_epochs) -> list:
    ratio = run_max_epochs / config_max_epochs
    stretched = []
    for scheduler in _schedulers(cfg):
        if not scheduler.get('by_epoch', True):
            continue  # counted in iterations (e.g. a 1000-iteration warm-up)
        end = scheduler.get('end', INF)
        if not scheduler.get('convert_to_iter_based', False) \
                or 'milestones' in scheduler:
            reach = max([end] + list(scheduler.get('milestones', [])))
            if reach != INF and reach > run_max_epochs:
                raise SparKInputError(
                    f'train_cfg.max_epochs={run_max_epochs}, but the '
                    f'{scheduler.get("type")} scheduler of this config runs '
                    f'to epoch {reach:g}; '
                    'state the schedule too, e.g. --cfg-options '
                    'param_scheduler.N.end=... (or milestones)')
            continue
        before = {key: scheduler[key] for key in ('begin', 'end', 'warmup')
                  if key in scheduler}
        for key in before:
            scheduler[key] = _stretch(before[key], ratio, config_max_epochs,
                                      run_max_epochs)
        stretched.append(_describe(scheduler, before))
    return stretched


def _stretch_iters(cfg: Config, config_max_iters, run_max_iters) -> list:
    ratio = run_max_iters / config_max_iters

    def whole(value):
        if value == INF:
            return value
        return run_max_iters if value == config_max_iters \
            else int(round(value * ratio))

    stretched = []
    for scheduler in _schedulers(cfg):
        if scheduler.get('by_epoch', True):
            continue  # counted in epochs: not this run's unit
        before = {key: scheduler[key] for key in ITERATION_KEYS + ('milestones', )
                  if key in scheduler}
        for key in set(before) & set(ITERATION_KEYS):
            scheduler[key] = whole(before[key])
        if 'milestones' in before:
            scheduler['milestones'] = [whole(m) for m in before['milestones']]
        if scheduler.get('end', INF) - scheduler.get('begin', 0) < 2:
            scheduler['end'] = scheduler.get('begin', 0) + 2
        if any(before[key] != scheduler[key] for key in before):
            stretched.append(_describe(scheduler, before))
    return stretched


def fit_schedule_to_run_length(cfg: Config, config_train_cfg: dict,
                               cfg_options: dict) -> None:
    """Stretch ``cfg.param_scheduler`` from the config's ``max_epochs`` or
    ``max_iters`` (``config_train_cfg``: its ``train_cfg`` before the command
    line) to the run's (see the module's docstring); refuse what cannot be
    stretched."""
    if any(key.startswith('param_scheduler') for key in cfg_options):
        return
    run_train_cfg = cfg.get('train_cfg') or {}
    config_train_cfg = config_train_cfg or {}
    for key, stretch, unit in (('max_epochs', _stretch_epochs, 'epochs'),
                               ('max_iters', _stretch_iters, 'iterations')):
        config_length, run_length = config_train_cfg.get(key), run_train_cfg.get(key)
        if config_length is None or run_length is None \
                or run_length == config_length:
            continue
        stretched = stretch(cfg, config_length, run_length)
        if stretched:
            print_log(f'train_cfg.{key}={run_length} (config: {config_length}): '
                      'schedule stretched to the run: ' + '; '.join(stretched)
                      + f' ({unit}; state param_scheduler in --cfg-options to '
                      'set it yourself)', logger='current')
