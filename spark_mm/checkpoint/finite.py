"""Refuse weights that hold NaN or inf before they travel further.

A run that diverged can leave a checkpoint whose tensors are NaN (written
before the NaN guard existed, or by other code). Exported, such a backbone
reaches fine-tuning, which then fails far from the cause.
"""
from typing import Mapping

import torch

from ..errors import CheckpointError
from .key_report import listed


def require_finite(weights: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise CheckpointError naming the tensors of ``weights`` (from
    ``what``) that hold NaN or inf."""
    broken = [key for key, value in weights.items()
              if torch.is_tensor(value) and value.is_floating_point()
              and not torch.isfinite(value).all()]
    if broken:
        raise CheckpointError(
            f'{what}: {len(broken)} of {len(weights)} tensors hold NaN or inf '
            f'({listed(broken, 3)}): the run had diverged when it was saved; '
            'nothing written: use a checkpoint from before the divergence')
