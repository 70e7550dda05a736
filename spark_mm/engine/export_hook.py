"""Save the backbone-only weights at the end of pretraining."""
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..checkpoint.backbone import save_backbone
from ..models.sparse.convert import dense_class_of
from ..registry import HOOKS


@HOOKS.register_module()
class ExportBackboneHook(Hook):
    """Write ``<work_dir>/<filename>``: the backbone in its dense naming.

    The file loads into the dense backbone (mmpretrain/mmdet ``ResNet``,
    ``ConvNeXt``, ...) with ``init_cfg=dict(type='Pretrained', checkpoint=...)``.
    """

    priority = 'LOWEST'

    def __init__(self, filename: str = 'backbone.pth'):
        self.filename = filename

    def after_run(self, runner):
        if not is_main_process():
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        state_dict = {key: value.detach().cpu().contiguous()
                      for key, value in model.backbone.state_dict().items()}
        path = save_backbone(
            state_dict, osp.join(runner.work_dir, self.filename),
            meta=dict(epoch=runner.epoch, iter=runner.iter,
                      backbone=dense_class_of(type(model.backbone)).__name__))
        runner.logger.info(f'backbone weights (dense naming) saved to {path}')
