"""Refuse, when the model is built, a sparse backbone that cannot run.

A converted layer fails mid-forward when its map is not a whole multiple of
the mask grid (e.g. a convolution without padding, an odd stride) or when it
receives something that is not a feature map (e.g. a functional global mean
feeding a sparse conv). One all-visible sparse forward of a blank image at
the training size finds that at build time; the error names the layer and
the input sizes near the requested one that do work.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn as nn

from ...errors import SparKInputError, UnsupportedLayerError
from .context import SparseContext


def _layer_of_failure(backbone: nn.Module, run) -> Optional[str]:
    """``run()``; None if it succeeds, else the error with the layer it
    happened in (the last layer whose forward started)."""
    started: List[str] = []
    handles = [module.register_forward_pre_hook(
        lambda _module, _args, name=name: started.append(name))
        for name, module in backbone.named_modules() if name]
    try:
        run()
    except (SparKInputError, RuntimeError) as error:
        where = (f'in {started[-1]} ({type(backbone.get_submodule(started[-1])).__name__})'
                 if started else 'in the backbone')
        return f'{where}: ' + ' '.join(str(error).split())
    finally:
        for handle in handles:
            handle.remove()
    return None


@torch.no_grad()
def sparse_forward_error(backbone: nn.Module, context: SparseContext,
                         in_channels: int, size: Tuple[int, int],
                         total_stride: int) -> Optional[str]:
    """The error of a sparse forward of a blank (1, C, h, w) image with every
    patch visible, or None. The backbone runs in eval mode (no statistics
    are updated) and is left in its previous mode."""
    height, width = size
    parameter = next(backbone.parameters(), None)
    device = parameter.device if parameter is not None else 'cpu'
    dtype = parameter.dtype if parameter is not None else torch.float32
    image = torch.zeros(1, in_channels, height, width, device=device, dtype=dtype)
    visible = torch.ones(1, 1, height // total_stride, width // total_stride,
                         dtype=torch.bool, device=device)

    def run():
        with context.masked(visible):
            backbone(image)

    was_training = backbone.training
    backbone.eval()
    try:
        return _layer_of_failure(backbone, run)
    finally:
        backbone.train(was_training)


def check_mask_geometry(backbone: nn.Module, context: SparseContext,
                        in_channels: int, size: Tuple[int, int],
                        total_stride: int) -> None:
    """Raise :class:`UnsupportedLayerError` if the sparse ``backbone`` cannot
    run at ``size`` (h, w), naming the layer and input sizes that work."""
    error = sparse_forward_error(backbone, context, in_channels, size, total_stride)
    if error is None:
        return
    height, width = size
    grid_h, grid_w = height // total_stride, width // total_stride
    candidates = sorted({(total_stride * max(1, grid_h + step),
                          total_stride * max(1, grid_w + step))
                         for step in range(-3, 4)} - {(height, width)})
    working = [f'{h}x{w}' for h, w in candidates
               if sparse_forward_error(backbone, context, in_channels, (h, w),
                                       total_stride) is None]
    advice = (f'input sizes that work: {", ".join(working)}' if working else
              'no input size near it works: use a backbone without that layer, '
              'or sparse=False for the zero-outing ablation')
    raise UnsupportedLayerError(
        f'SparK cannot run this backbone sparsely at {height}x{width}, '
        f'{error}; {advice}')
