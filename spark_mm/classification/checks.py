"""Catch a class count that does not fit the labelled folder, before training."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

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
        raise ValueError(
            f'the {split} data has {len(classes)} classes '
            f'({", ".join(map(str, classes[:5]))}{", ..." if len(classes) > 5 else ""}) '
            f'but the model head has num_classes={expected}: add '
            f'--cfg-options model.head.num_classes={len(classes)} '
            f'data_preprocessor.num_classes={len(classes)}')
