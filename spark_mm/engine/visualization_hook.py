"""Reconstruction pictures of a fixed set of images during pretraining."""
import os.path as osp
from typing import List, Optional

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..errors import SparKInputError
from ..registry import HOOKS
from ..visualization import (fit_image, fixed_mask, load_image, make_grid,
                             reconstruction_panels, save_png, to_model_inputs)


@HOOKS.register_module()
class ReconstructionVisualizationHook(Hook):
    """Every ``interval`` iterations, and after the last one, draw reconstructions.

    The images are the first ``num_images`` of the training dataset, loaded
    from their files, resized to cover the model's ``input_size`` and
    centre-cropped (no random augmentation), under one mask drawn from
    ``seed``: pictures of different iterations differ only by the weights.
    Each grid goes to ``<work_dir>/<out_dir>/iter_XXXXXX.png`` and to the
    runner's visualizer (``add_image``: TensorBoard and other backends show
    it when enabled). Only rank 0 draws; the global RNG state and the model's
    train/eval mode are left as they were.

    Args:
        interval: iterations between pictures.
        num_images: how many training images to draw.
        seed: seed of the fixed mask.
        mask_ratio: mask ratio of the pictures; default the model's.
        out_dir: folder under the work dir.
        name: image name given to the visualizer.
    """

    priority = 'LOW'

    def __init__(self, interval: int = 64, num_images: int = 4, seed: int = 0,
                 mask_ratio: Optional[float] = None,
                 out_dir: str = 'reconstructions', name: str = 'reconstruction'):
        if interval < 1 or num_images < 1:
            raise SparKInputError(f'interval ({interval}) and num_images ({num_images}) '
                                  'must be positive')
        self.interval = interval
        self.num_images = num_images
        self.seed = seed
        self.mask_ratio = mask_ratio
        self.out_dir = out_dir
        self.name = name
        self._images: Optional[List[np.ndarray]] = None
        self._active_b1hw: Optional[torch.Tensor] = None
        self._last_drawn = -1

    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def _fixed_images(self, runner, size) -> List[np.ndarray]:
        dataset = runner.train_dataloader.dataset
        count = min(self.num_images, len(dataset))
        images = []
        for index in range(count):
            info = dataset.get_data_info(index) if hasattr(dataset, 'get_data_info') else {}
            path = info.get('img_path') if isinstance(info, dict) else None
            if path:
                images.append(load_image(path, size))
            else:  # no file behind the sample: take the pipeline's output once
                inputs = dataset[index]['inputs']
                inputs = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
                bgr_or_rgb = inputs.permute(1, 2, 0).numpy().astype(np.uint8)
                rgb = (bgr_or_rgb[..., ::-1]
                       if getattr(self._model(runner).data_preprocessor,
                                  '_channel_conversion', False) else bgr_or_rgb)
                images.append(fit_image(np.ascontiguousarray(rgb), size))
        return images

    def before_train(self, runner):
        if not is_main_process():
            return
        model = self._model(runner)
        height, width = model.input_size
        self._images = self._fixed_images(runner, (height, width))
        self._active_b1hw = fixed_mask(model, len(self._images), height, width,
                                       self.seed, self.mask_ratio)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None):
        if (self.every_n_train_iters(runner, self.interval)
                or self.is_last_train_iter(runner)):
            self.draw(runner, runner.iter + 1)  # runner.iter counts it only later

    def after_train(self, runner):
        self.draw(runner, runner.iter)  # the final weights, also after an early stop

    def draw(self, runner, step: int) -> Optional[str]:
        """Draw the grid of the weights after ``step`` iterations; returns the PNG path."""
        if not is_main_process() or not self._images or self._last_drawn == step:
            return None
        self._last_drawn = step
        model = self._model(runner)
        inputs = to_model_inputs(model, self._images)
        panels = reconstruction_panels(model, inputs,
                                       self._active_b1hw.to(inputs.device))
        grid = make_grid(panels)
        path = save_png(grid, osp.join(runner.work_dir, self.out_dir,
                                       f'iter_{step:06d}.png'))
        runner.visualizer.add_image(self.name, grid, step=step)
        runner.logger.info(f'reconstructions after iteration {step} saved to {path}')
        return path
