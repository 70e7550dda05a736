"""Backbone parameter names in other toolboxes, as tables that work both ways.

Each :class:`NameTable` pairs the canonical name (torchvision's for ResNet,
mmpretrain's for ConvNeXt; :mod:`spark_mm.checkpoint.sources`) with another
toolbox's name, as templates with numbered fields. Where the other naming
numbers stages differently (torchvision's ``features.{2i+1}``, Detectron2's
``res{i+1}``), the table lists one pair per stage.
"""
import re
from typing import List, Optional, Tuple

# per-stage output norms of mmpretrain's ConvNeXt that SparK does not pretrain
# (the official encoder feeds raw stage outputs to its decoder); group 1: stage
CONVNEXT_STAGE_NORM = re.compile(r'^norm([0-3])\.(weight|bias)$')

_FIELDS = {'i': r'\d+', 'j': r'\d+', 'k': r'\d+',
           # a layer's parameter or buffer (BN keeps its statistics as buffers)
           'p': r'weight|bias|running_mean|running_var|num_batches_tracked'}


def _template_regex(template: str) -> re.Pattern:
    pattern = re.escape(template)
    for name, values in _FIELDS.items():
        pattern = pattern.replace(re.escape('{%s}' % name),
                                  f'(?P<{name}>{values})')
    return re.compile(f'^{pattern}$')


class NameTable:
    """Two namings of one architecture, as pairs of templates.

    Templates hold fields ``{i}``, ``{j}``, ``{k}`` (numbers) and ``{p}`` (a
    parameter or buffer name: weight, bias, running_mean, ...). The first
    template of each pair is the canonical name; ``to_canonical`` /
    ``from_canonical`` rename one key, or return None for a key the table does
    not know. The first pair that matches wins.
    """

    def __init__(self, pairs: List[Tuple[str, str]]):
        self.pairs = [(canonical, other, _template_regex(canonical),
                       _template_regex(other)) for canonical, other in pairs]

    def to_canonical(self, key: str) -> Optional[str]:
        for canonical, _, _, regex in self.pairs:
            match = regex.match(key)
            if match:
                return canonical.format(**match.groupdict())
        return None

    def from_canonical(self, key: str) -> Optional[str]:
        for _, other, regex, _ in self.pairs:
            match = regex.match(key)
            if match:
                return other.format(**match.groupdict())
        return None


_BLOCK = 'stages.{i}.{j}.'
# the ConvNeXt authors' names (facebookresearch/ConvNeXt, official SparK)
CONVNEXT_OFFICIAL = NameTable([
    ('downsample_layers.{i}.{k}.{p}', 'downsample_layers.{i}.{k}.{p}'),
    (_BLOCK + 'depthwise_conv.{p}', _BLOCK + 'dwconv.{p}'),
    (_BLOCK + 'norm.{p}', _BLOCK + 'norm.{p}'),
    (_BLOCK + 'pointwise_conv1.{p}', _BLOCK + 'pwconv1.{p}'),
    (_BLOCK + 'pointwise_conv2.{p}', _BLOCK + 'pwconv2.{p}'),
    (_BLOCK + 'gamma', _BLOCK + 'gamma'),
])
_TIMM_BLOCK = 'stages.{i}.blocks.{j}.'
# timm's ConvNeXt (timm.models.convnext.ConvNeXt, conv_mlp=False)
CONVNEXT_TIMM = NameTable([
    ('downsample_layers.0.{k}.{p}', 'stem.{k}.{p}'),
    ('downsample_layers.{i}.{k}.{p}', 'stages.{i}.downsample.{k}.{p}'),
    (_BLOCK + 'depthwise_conv.{p}', _TIMM_BLOCK + 'conv_dw.{p}'),
    (_BLOCK + 'norm.{p}', _TIMM_BLOCK + 'norm.{p}'),
    (_BLOCK + 'pointwise_conv1.{p}', _TIMM_BLOCK + 'mlp.fc1.{p}'),
    (_BLOCK + 'pointwise_conv2.{p}', _TIMM_BLOCK + 'mlp.fc2.{p}'),
    (_BLOCK + 'grn.gamma', _TIMM_BLOCK + 'mlp.grn.weight'),
    (_BLOCK + 'grn.beta', _TIMM_BLOCK + 'mlp.grn.bias'),
    (_BLOCK + 'gamma', _TIMM_BLOCK + 'gamma'),
])
# torchvision's ConvNeXt: ``features`` alternates downsamples (the stem is
# features.0, the one before stage i features.{2i}) and stages (stage i is
# features.{2i+1}); CNBlock.block indices 0 dwconv, 2 norm, 3/5 the pointwise
# Linear layers; ``layer_scale`` has shape (C, 1, 1) where ``gamma`` has (C,).
CONVNEXT_TORCHVISION = NameTable([
    pair for stage in range(4) for pair in (
        (f'downsample_layers.{stage}.{{k}}.{{p}}',
         f'features.{2 * stage}.{{k}}.{{p}}'),
        *((f'stages.{stage}.{{j}}.{part}.{{p}}',
           f'features.{2 * stage + 1}.{{j}}.block.{index}.{{p}}')
          for part, index in (('depthwise_conv', 0), ('norm', 2),
                              ('pointwise_conv1', 3), ('pointwise_conv2', 5))),
        (f'stages.{stage}.{{j}}.gamma',
         f'features.{2 * stage + 1}.{{j}}.layer_scale'))])
# Detectron2's ResNet: ``stem.conv1``, ``res2..res5`` for layer1..layer4,
# ``convK.norm`` for bnK, ``shortcut`` / ``shortcut.norm`` for the downsample.
RESNET_DETECTRON2 = NameTable([
    ('conv1.weight', 'stem.conv1.weight'),
    ('bn1.{p}', 'stem.conv1.norm.{p}'),
] + [pair for stage in range(1, 5) for pair in (
    (f'layer{stage}.{{j}}.conv{{k}}.weight',
     f'res{stage + 1}.{{j}}.conv{{k}}.weight'),
    (f'layer{stage}.{{j}}.bn{{k}}.{{p}}',
     f'res{stage + 1}.{{j}}.conv{{k}}.norm.{{p}}'),
    (f'layer{stage}.{{j}}.downsample.0.weight',
     f'res{stage + 1}.{{j}}.shortcut.weight'),
    (f'layer{stage}.{{j}}.downsample.1.{{p}}',
     f'res{stage + 1}.{{j}}.shortcut.norm.{{p}}'))])


def detectron2_name(key: str) -> str:
    """Detectron2 ResNet name of an mmdet/torchvision ResNet parameter name
    (unknown names unchanged, so that the name check reports them)."""
    return RESNET_DETECTRON2.from_canonical(key) or key
