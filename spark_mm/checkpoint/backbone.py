"""Backbone-only weights of a SparK model, in the dense backbone's naming.

A SparK model keeps its (converted) backbone as ``model.backbone`` with the
dense backbone's own parameter names, so its state dict is what downstream
models load (``init_cfg=dict(type='Pretrained', checkpoint=...)``).
"""
from collections import OrderedDict
from typing import Mapping

import torch

from .saving import save_torch_atomically


def save_backbone(state_dict: Mapping[str, torch.Tensor], path: str,
                  meta: dict = None) -> str:
    """Write backbone weights as an mmengine-style checkpoint, atomically."""
    return save_torch_atomically(
        {'state_dict': OrderedDict(state_dict), 'meta': meta or {}}, path)
