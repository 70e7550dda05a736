"""A shorter or longer run keeps the shape of its schedule.

``--cfg-options train_cfg.max_epochs=2`` on a 1600-epoch pretraining config
would otherwise keep the 40-epoch warm-up and the 1600-epoch cosine: the run
would end inside the warm-up. When the command line changes ``max_epochs``
and says nothing about ``param_scheduler``, every epoch-based scheduler that
mmengine converts to iterations (``convert_to_iter_based=True``: the SparK
schedules) is stretched to the run's length, warm-up included, and one log
line says so. A scheduler that cannot be stretched that way (epoch steps,
milestones) and reaches past the new end stops the run with one line.
"""
from mmengine.config import Config
from mmengine.logging import print_log

from spark_mm.errors import SparKInputError

INF = float('inf')


def _stretch(value, ratio, old_end, new_end):
    """An epoch count on the new length (the old end maps to the new one
    exactly, so no rounding error cuts the last iteration)."""
    if value == old_end:
        return new_end
    return value * ratio


def _describe(scheduler, before) -> str:
    parts = [f'{key} {before[key]:g} -> {scheduler[key]:g}'
             for key in ('begin', 'end', 'warmup')
             if key in before and before[key] != scheduler[key]]
    return f'{scheduler.get("type")} ' + ', '.join(parts)


def fit_schedule_to_run_length(cfg: Config, config_max_epochs,
                               cfg_options: dict) -> None:
    """Stretch ``cfg.param_scheduler`` from the config's ``max_epochs`` to
    the run's (see the module's docstring); refuse what cannot be stretched."""
    run_max_epochs = (cfg.get('train_cfg') or {}).get('max_epochs')
    if (config_max_epochs is None or run_max_epochs is None
            or run_max_epochs == config_max_epochs
            or any(key.startswith('param_scheduler') for key in cfg_options)):
        return
    schedulers = cfg.get('param_scheduler') or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    ratio = run_max_epochs / config_max_epochs
    stretched = []
    for scheduler in schedulers:
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
    if stretched:
        print_log(f'train_cfg.max_epochs={run_max_epochs} (config: '
                  f'{config_max_epochs}): schedule stretched to the run: '
                  + '; '.join(stretched) + ' (epochs; state param_scheduler '
                  'in --cfg-options to set it yourself)', logger='current')
