"""Where a backbone's weights sit in a checkpoint: key prefixes, read one way.

``module.`` (DataParallel), ``backbone.`` (an mmengine model's backbone),
``backbone.timm_model.`` (``TIMMBackbone``), ``sparse_encoder.sp_cnn.`` (the
official SparK ``*_withdecoder_*`` files): every reader of checkpoints strips
them with :func:`strip_prefix`.
"""
from collections import OrderedDict
from typing import Mapping

DATA_PARALLEL_PREFIX = 'module.'
BACKBONE_PREFIX = 'backbone.'
TIMM_BACKBONE_PREFIX = 'backbone.timm_model.'
OFFICIAL_ENCODER_PREFIX = 'sparse_encoder.sp_cnn.'


def strip_prefix(weights: Mapping, prefix: str,
                 keep_others: bool = False) -> OrderedDict:
    """The entries of ``weights`` under ``prefix``, with ``prefix`` removed.

    ``keep_others``: the entries without ``prefix`` stay too, unchanged, in
    their place (stripping ``module.`` wherever it is).
    """
    stripped = OrderedDict()
    for key, value in weights.items():
        if key.startswith(prefix):
            stripped[key[len(prefix):]] = value
        elif keep_others:
            stripped[key] = value
    return stripped


def find_backbone_prefix(weights: Mapping) -> str:
    """The prefix of the backbone's keys: ``backbone.`` (or
    ``backbone.timm_model.`` when every backbone key has it), the official
    encoder's, or none."""
    if any(key.startswith(BACKBONE_PREFIX) for key in weights):
        backbone = [key for key in weights if key.startswith(BACKBONE_PREFIX)]
        if all(key.startswith(TIMM_BACKBONE_PREFIX) for key in backbone):
            return TIMM_BACKBONE_PREFIX
        return BACKBONE_PREFIX
    if any(key.startswith(OFFICIAL_ENCODER_PREFIX) for key in weights):
        return OFFICIAL_ENCODER_PREFIX
    return ''
