"""Checkpoints: safe loading, atomic saving, one key-mismatch report, and the
backbone's weights in the naming of other toolboxes.

- :mod:`.loading`: ``torch.load(weights_only=True)`` for mmengine checkpoints,
  and whether a checkpoint fits a model;
- :mod:`.saving`: files written under a temporary name and renamed;
- :mod:`.key_report`: missing / unexpected / reshaped keys, in one line;
- :mod:`.prefixes`: where weights sit in a checkpoint (``module.``,
  ``backbone.``, ...), stripped by one function;
- :mod:`.backbone`: the backbone-only file written at the end of pretraining;
- :mod:`.sources`: released checkpoints of other origins read into our naming;
- :mod:`.architecture`: which backbone weights are for (kind, depth, arch);
- :mod:`.names`: other toolboxes' parameter names, tables that work both ways;
- :mod:`.load_checks`: weights loaded into the real models of other toolboxes;
- :mod:`.writers`: mmdet, torchvision, timm and Detectron2 files, written
  once they passed those checks;
- :mod:`.checked_pretrained`: ``CheckedPretrained``, an initialiser that
  refuses weights that do not fit.
"""
from ..errors import CheckpointError
from .backbone import save_backbone
from .checked_pretrained import CheckedPretrained
from .key_report import KeyReport, compare_keys
from .loading import (allow_mmengine_checkpoints, check_checkpoint_matches,
                      load_checkpoint_safely, state_dict_of)
from .prefixes import BACKBONE_PREFIX, strip_prefix
from .saving import (save_torch_atomically, write_atomically,
                     write_text_atomically)

__all__ = ['CheckpointError', 'BACKBONE_PREFIX', 'strip_prefix',
           'save_backbone', 'CheckedPretrained', 'KeyReport', 'compare_keys',
           'allow_mmengine_checkpoints', 'check_checkpoint_matches',
           'load_checkpoint_safely', 'state_dict_of', 'save_torch_atomically',
           'write_atomically', 'write_text_atomically']
