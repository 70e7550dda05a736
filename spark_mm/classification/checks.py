"""Catch a class count that does not fit the labelled folder, before training."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..errors import SparKInputError
from ..registry import HOOKS


@HOOKS.register_module()
class NumClassesCheckHook(Hook):
    """Stop with one line when the folder's classes do not match the head.

    A folder with more classes than ``model.head.num_classes`` fails deep in
    the loss; one with fewer trains silently with dead outputs.
    """

    def before_train(self, runner) -> None:
        self._check(runner, runner.train_dataloader, 'training')

    def before_val(self, runner) -> None:
        self._check(runner, runner.val_dataloader, 'validation')

    @staticmethod
    def _check(runner, dataloader, split: str) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        expected = getattr(getattr(model, 'head', None), 'num_classes', None)
        classes = dataloader.dataset.metainfo.get('classes')
        if expected is None or classes is None or len(classes) == expected:
            return
        count = len(classes)
        shown = ', '.join(map(str, classes[:5])) + (', ...' if count > 5 else '')
        # the recipe's BCE is a mean over classes: its weight is 1 / classes
        loss = getattr(model.head, 'loss_module', None)
        bce = getattr(getattr(loss, 'ce', loss), 'use_sigmoid', False)
        weight = f' model.head.loss.loss_weight={1 / count:.6g}' if bce else ''
        raise SparKInputError(
            f'the {split} data has {count} classes ({shown}) but the model '
            f'head has num_classes={expected}: add --cfg-options '
            f'model.head.num_classes={count} '
            f'data_preprocessor.num_classes={count}{weight}')
