"""Refuse weights that hold NaN or inf before they travel further.

A run that diverged can leave a checkpoint whose tensors are NaN (written
before the NaN guard existed, or by other code). Exported, such a backbone
reaches fine-tuning, which then fails far from the cause.
"""
from typing import List, Mapping

import torch

from ..errors import CheckpointError
from .key_report import listed


def non_finite_keys(weights: Mapping[str, torch.Tensor]) -> List[str]:
    """Keys of the floating-point tensors of ``weights`` holding NaN or inf."""
    return [key for key, value in weights.items()
            if torch.is_tensor(value) and value.is_floating_point()
            and not torch.isfinite(value).all()]


def require_finite(weights: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise CheckpointError naming the tensors of ``weights`` (from
    ``what``) that hold NaN or inf."""
    broken = non_finite_keys(weights)
    if broken:
        raise CheckpointError(
            f'{what}: {len(broken)} of {len(weights)} tensors hold NaN or inf '
            f'({listed(broken, 3)}): the run had diverged when it was saved; '
            'nothing written: use a checkpoint from before the divergence')
