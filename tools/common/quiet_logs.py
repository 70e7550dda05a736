"""Quieter run logs: the optimizer's parameter groups as one table.

mmengine's DefaultOptimWrapperConstructor logs one ``paramwise_options --``
line per parameter setting (about 90 lines for a ResNet-18 with no weight
decay on norms and biases). A tools/train.py run drops those lines (unless
``log_level='DEBUG'``) and logs the groups the optimizer ended up with, one
row per (lr, weight decay), before the first iteration.
"""
import logging
from collections import OrderedDict

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper


class _DropParamwiseLines(logging.Filter):

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith('paramwise_options --')


def _elements(count: int) -> str:
    return f'{count / 1e6:.2f}M' if count >= 1e5 else str(count)


def param_group_table(model, optimizer) -> str:
    """One row per (lr, weight decay) of ``optimizer``'s groups."""
    names = {id(param): name for name, param in model.named_parameters()}
    rows = OrderedDict()
    for group in optimizer.param_groups:
        key = (group['lr'], group.get('weight_decay', 0.0))
        row = rows.setdefault(key, dict(tensors=0, elements=0, example=None))
        for param in group['params']:
            row['tensors'] += 1
            row['elements'] += param.numel()
            row['example'] = row['example'] or names.get(id(param), '?')
    lines = [f'{"lr":>12}  {"weight decay":>12}  {"tensors":>7}  '
             f'{"elements":>9}  first parameter']
    for (lr, weight_decay), row in sorted(rows.items(), key=lambda kv: -kv[0][0]):
        lines.append(f'{lr:>12.4g}  {weight_decay:>12.4g}  {row["tensors"]:>7}  '
                     f'{_elements(row["elements"]):>9}  {row["example"]}')
    return '\n'.join(lines)


class ParamGroupSummaryHook(Hook):
    """Log :func:`param_group_table` once, before training starts."""

    priority = 'VERY_LOW'

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        wrappers = (runner.optim_wrapper.values()  # OptimWrapperDict
                    if hasattr(runner.optim_wrapper, 'values')
                    else [runner.optim_wrapper])
        for wrapper in wrappers:
            optimizer = wrapper.optimizer
            runner.logger.info(
                f'optimizer {type(optimizer).__name__}: '
                f'{len(optimizer.param_groups)} parameter groups, by lr and '
                'weight decay (the lrs of the first iteration):\n'
                + param_group_table(model, optimizer))


def quiet_param_logs(runner) -> None:
    """Replace the per-parameter lines by the table (see the module)."""
    if str(runner.cfg.get('log_level', 'INFO')).upper() != 'DEBUG':
        runner.logger.addFilter(_DropParamwiseLines())
    runner.register_hook(ParamGroupSummaryHook())
