"""Reconstruction target and loss of SparK."""
import torch
import torch.nn as nn

from ..registry import MODELS


def patchify(images_bchw: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, h*w, patch*patch*C), patches in row-major order."""
    batch, channels, height, width = images_bchw.shape
    grid_h, grid_w = height // patch, width // patch
    x = images_bchw.reshape(batch, channels, grid_h, patch, grid_w, patch)
    x = x.permute(0, 2, 4, 3, 5, 1)
    return x.reshape(batch, grid_h * grid_w, patch * patch * channels)


def unpatchify(patches: torch.Tensor, patch: int, grid_h: int,
               grid_w: int) -> torch.Tensor:
    """Inverse of :func:`patchify`."""
    batch = patches.shape[0]
    channels = patches.shape[-1] // (patch * patch)
    x = patches.reshape(batch, grid_h, grid_w, patch, patch, channels)
    x = x.permute(0, 5, 1, 3, 2, 4)
    return x.reshape(batch, channels, grid_h * patch, grid_w * patch)


@MODELS.register_module()
class SparKReconstructionHead(nn.Module):
    """L2 between prediction and per-patch normalized pixels.

    Args:
        norm_pixel: normalize each target patch by its mean and std.
        eps: added to the patch variance before the square root.
        masked_only: average over masked patches only (the paper); False
            averages over all patches (the ablation).
    """

    def __init__(self, norm_pixel: bool = True, eps: float = 1e-6,
                 masked_only: bool = True):
        super().__init__()
        self.norm_pixel = norm_pixel
        self.eps = eps
        self.masked_only = masked_only

    def patch_stats(self, target_patches: torch.Tensor):
        """Per-patch mean and std of the target, (B, L, 1) each."""
        mean = target_patches.mean(dim=-1, keepdim=True)
        std = (target_patches.var(dim=-1, keepdim=True) + self.eps).sqrt()
        return mean, std

    def target(self, images_bchw: torch.Tensor, patch: int) -> torch.Tensor:
        target = patchify(images_bchw, patch)
        if self.norm_pixel:
            mean, std = self.patch_stats(target)
            target = (target - mean) / std
        return target

    def loss(self, pred_bchw: torch.Tensor, images_bchw: torch.Tensor,
             active_b1hw: torch.Tensor) -> torch.Tensor:
        patch = images_bchw.shape[-1] // active_b1hw.shape[-1]
        # At least float32 (bf16/fp16 predictions under autocast), float64
        # when the model is.
        dtype = torch.promote_types(pred_bchw.dtype, torch.float32)
        target = self.target(images_bchw.to(dtype), patch)
        pred = patchify(pred_bchw.to(dtype), patch)
        per_patch = (pred - target).pow(2).mean(dim=-1)  # (B, L)
        if not self.masked_only:
            return per_patch.mean()
        masked = (~active_b1hw).flatten(1).to(per_patch.dtype)  # (B, L)
        return (per_patch * masked).sum() / masked.sum().clamp_min(1)
