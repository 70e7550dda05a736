"""Checkpoints: safe loading, atomic saving, one key-mismatch report, and the
backbone's weights in the naming of other toolboxes.

- :mod:`.loading`: ``torch.load(weights_only=True)`` for mmengine checkpoints,
  and whether a checkpoint fits a model;
- :mod:`.saving`: files written under a temporary name and renamed;
- :mod:`.key_report`: missing / unexpected / reshaped keys, in one line;
- :mod:`.backbone`: the backbone weights of a SparK checkpoint;
- :mod:`.sources`: released checkpoints of other origins read into our naming;
- :mod:`.formats`: mmdet, torchvision, timm and Detectron2 files, checked by
  loading them into the real models;
- :mod:`.checked_pretrained`: ``CheckedPretrained``, an initialiser that
  refuses weights that do not fit.
"""
from ..errors import CheckpointError
from .backbone import BACKBONE_PREFIX, backbone_state_dict, save_backbone
from .checked_pretrained import CheckedPretrained
from .key_report import KeyReport, compare_keys
from .loading import (allow_mmengine_checkpoints, check_checkpoint_matches,
                      load_checkpoint_safely, state_dict_of)
from .saving import (save_torch_atomically, write_atomically,
                     write_text_atomically)

__all__ = ['CheckpointError', 'BACKBONE_PREFIX', 'backbone_state_dict',
           'save_backbone', 'CheckedPretrained', 'KeyReport', 'compare_keys',
           'allow_mmengine_checkpoints', 'check_checkpoint_matches',
           'load_checkpoint_safely', 'state_dict_of', 'save_torch_atomically',
           'write_atomically', 'write_text_atomically']
