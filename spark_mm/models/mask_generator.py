"""Which patches an image keeps: the replaceable masking step of SparK."""
import torch

from ..errors import SparKInputError
from ..registry import MODELS


@MODELS.register_module()
class RandomPatchMasker:
    """Uniformly random patches, exactly ``round(h*w*(1-mask_ratio))`` kept per image.

    Called with the batch size and the patch grid, returns ``active_b1hw``
    (B, 1, h, w) bool, True where a patch is visible.
    """

    def __init__(self, mask_ratio: float = 0.6):
        if not 0.0 < float(mask_ratio) < 1.0:
            raise SparKInputError(f'mask_ratio={mask_ratio} is outside (0, 1); use '
                                  'the fraction of patches to mask, e.g. 0.6')
        self.mask_ratio = float(mask_ratio)

    def num_visible(self, grid_h: int, grid_w: int) -> int:
        num_patches = grid_h * grid_w
        num_visible = round(num_patches * (1 - self.mask_ratio))
        if not 0 < num_visible < num_patches:
            raise SparKInputError(
                f'mask_ratio={self.mask_ratio} on a {grid_h}x{grid_w} patch '
                f'grid keeps {num_visible} of {num_patches} patches, leaving '
                f'{"no visible" if num_visible == 0 else "no masked"} patch; '
                'use a larger input or a mask ratio nearer 0.5')
        return num_visible

    def __call__(self, batch_size: int, grid_h: int, grid_w: int,
                 device=None) -> torch.Tensor:
        num_visible = self.num_visible(grid_h, grid_w)
        scores = torch.rand(batch_size, grid_h * grid_w, device=device)
        keep = scores.argsort(dim=1)[:, :num_visible]
        active = torch.zeros(batch_size, grid_h * grid_w, dtype=torch.bool,
                             device=device)
        active.scatter_(1, keep, True)
        return active.view(batch_size, 1, grid_h, grid_w)

    def __repr__(self):
        return f'{type(self).__name__}(mask_ratio={self.mask_ratio})'
