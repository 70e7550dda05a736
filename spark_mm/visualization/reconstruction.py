"""Drawing SparK reconstructions: shared by the visualization tool and hook.

A grid has one row per image and four panels per row: the masked input
(masked patches greyed), the pure prediction, the prediction with the visible
patches copied from the input, and the input. Panels are de-normalized to real
RGB colours and placed at fixed pixel offsets (:func:`panel_box`), so tests
and users can cut them back out of the PNG.
"""
import os
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..errors import SparKInputError
from ..models.sparse.context import expand_mask

PANEL_TITLES = ('masked input', 'prediction', 'pred + visible', 'input')
PAD = 4            # pixels between panels and around the grid
HEADER = 14        # height of the title row
BACKGROUND = 255   # white
MASK_GREY = 128    # colour of masked patches in the "masked input" panel


# ---- images in and out ------------------------------------------------------
def load_image(path: str, size: Tuple[int, int]) -> np.ndarray:
    """An RGB uint8 (H, W, 3) array of ``size`` = (H, W): resized to cover, centre-cropped."""
    with Image.open(path) as image:
        return fit_image(image.convert('RGB'), size)


def fit_image(image: Union[Image.Image, np.ndarray],
              size: Tuple[int, int]) -> np.ndarray:
    """Resize ``image`` (RGB) to cover ``size`` = (H, W), keeping its aspect, then centre-crop."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    height, width = size
    scale = max(height / image.height, width / image.width)
    resized = (max(width, round(image.width * scale)),
               max(height, round(image.height * scale)))
    if resized != image.size:
        image = image.resize(resized, Image.BICUBIC)
    left = (image.width - width) // 2
    top = (image.height - height) // 2
    return np.asarray(image.crop((left, top, left + width, top + height)))


def to_model_inputs(model, images_rgb: Sequence[np.ndarray]) -> torch.Tensor:
    """Normalized (B, 3, H, W) inputs from RGB uint8 arrays, as in training.

    Training loads images as BGR (``LoadImageFromFile``) and the data
    preprocessor flips them to RGB when ``to_rgb=True``; the arrays are
    presented the same way. The batch goes in stacked: the preprocessor's
    channel flip indexes dim 1, which is not the channel dim of a list of CHW.
    """
    preprocessor = model.data_preprocessor
    batch = torch.from_numpy(np.stack(images_rgb)).permute(0, 3, 1, 2)
    if getattr(preprocessor, '_channel_conversion', False):
        batch = batch.flip(1)  # RGB -> BGR, flipped back by the preprocessor
    return preprocessor(dict(inputs=batch.contiguous(), data_samples=None),
                        False)['inputs']


def denormalize(model, images_bchw: torch.Tensor) -> np.ndarray:
    """RGB uint8 (B, H, W, 3) from the preprocessor's normalized space."""
    preprocessor = model.data_preprocessor
    images = images_bchw.detach().float().cpu()
    if getattr(preprocessor, '_enable_normalize', True):
        images = (images * preprocessor.std.float().cpu()
                  + preprocessor.mean.float().cpu())
    return (images.round().clamp(0, 255).to(torch.uint8)
            .permute(0, 2, 3, 1).numpy())


# ---- reconstruction panels --------------------------------------------------
@torch.no_grad()
def reconstruction_panels(model, inputs_bchw: torch.Tensor,
                          active_b1hw: torch.Tensor) -> np.ndarray:
    """(B, 4, H, W, 3) uint8 panels in the order of :data:`PANEL_TITLES`.

    The model is put in eval mode for the forward and then restored to the
    mode it was in.
    """
    was_training = model.training
    model.eval()
    try:
        samples = model.predict(inputs_bchw, active_b1hw=active_b1hw)
    finally:
        model.train(was_training)
    visible = expand_mask(active_b1hw.cpu(), *inputs_bchw.shape[-2:])  # (B, 1, H, W)
    visible = visible.permute(0, 2, 3, 1).numpy()  # (B, H, W, 1)
    inputs = denormalize(model, inputs_bchw)
    masked = np.where(visible, inputs, np.uint8(MASK_GREY))
    pred = denormalize(model, torch.stack([s.pred_img for s in samples]))
    pred_visible = denormalize(
        model, torch.stack([s.pred_with_visible for s in samples]))
    return np.stack([masked, pred, pred_visible, inputs], axis=1)


def fixed_mask(model, batch_size: int, height: int, width: int,
               seed: int, mask_ratio: Optional[float] = None) -> torch.Tensor:
    """The mask ``model`` draws for ``seed``, without touching the global RNG state.

    ``mask_ratio`` overrides the model's own for this call only.
    """
    generator = model.mask_generator
    previous = getattr(generator, 'mask_ratio', None)
    if mask_ratio is not None:
        if previous is None:
            raise SparKInputError(f'{type(generator).__name__} has no mask_ratio to set')
        generator.mask_ratio = float(mask_ratio)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return model.generate_mask(
                torch.empty(batch_size, 1, height, width))
    finally:
        if mask_ratio is not None:
            generator.mask_ratio = previous


# ---- the grid ---------------------------------------------------------------
def panel_box(row: int, column: int, height: int, width: int) -> Tuple[int, int, int, int]:
    """(top, left, bottom, right) of a panel inside a grid of ``height x width`` panels."""
    top = HEADER + PAD + row * (height + PAD)
    left = PAD + column * (width + PAD)
    return top, left, top + height, left + width


def grid_size(rows: int, height: int, width: int,
              columns: int = len(PANEL_TITLES)) -> Tuple[int, int]:
    """(H, W) in pixels of a grid of ``rows`` rows of ``height x width`` panels."""
    return (HEADER + PAD + rows * (height + PAD),
            PAD + columns * (width + PAD))


def make_grid(panels: np.ndarray,
              titles: Sequence[str] = PANEL_TITLES) -> np.ndarray:
    """Lay (B, P, H, W, 3) uint8 panels out as one RGB uint8 image with a title row."""
    rows, columns, height, width = panels.shape[:4]
    grid = np.full(grid_size(rows, height, width, columns) + (3,), BACKGROUND,
                   dtype=np.uint8)
    for row in range(rows):
        for column in range(columns):
            top, left, bottom, right = panel_box(row, column, height, width)
            grid[top:bottom, left:right] = panels[row, column]
    image = Image.fromarray(grid)
    draw = ImageDraw.Draw(image)
    for column, title in enumerate(titles[:columns]):
        _, left, _, right = panel_box(0, column, height, width)
        # the default bitmap font is ~6 px per character; shorten to fit
        max_chars = max(1, (right - left) // 6)
        text = title if len(title) <= max_chars else title[:max_chars - 1] + '.'
        draw.text((left, 2), text, fill=(0, 0, 0))
    return np.asarray(image)


def save_png(image_rgb: np.ndarray, path: str) -> str:
    """Write an RGB uint8 array as PNG, creating the folder."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    Image.fromarray(image_rgb).save(path, optimize=True)
    return path


def reconstruction_grid(model, images_rgb: List[np.ndarray], seed: int = 0,
                        mask_ratio: Optional[float] = None) -> Tuple[np.ndarray, np.ndarray]:
    """A grid for RGB uint8 images of one size; returns (grid, panels)."""
    height, width = images_rgb[0].shape[:2]
    inputs = to_model_inputs(model, images_rgb)
    active = fixed_mask(model, len(images_rgb), height, width, seed, mask_ratio)
    panels = reconstruction_panels(model, inputs, active.to(inputs.device))
    return make_grid(panels), panels
