"""The dtype a convolution runs in, for autograd functions that call the
conv ops themselves (with autocast turned off inside)."""
from typing import Optional

import torch


def conv_compute_dtype(x: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype the modules would compute in: autocast's where it is on for
    ``x``'s device, else the promotion of ``x`` and ``weight``."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return torch.promote_types(x.dtype, weight.dtype)


def cast_optional(tensor: Optional[torch.Tensor], dtype) -> Optional[torch.Tensor]:
    """``tensor.to(dtype)``, None staying None (absent biases, gradients)."""
    return None if tensor is None else tensor.to(dtype)
