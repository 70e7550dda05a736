"""Which backbones SparK takes, checked: one Markdown row per model.

    python tools/backbone_coverage.py resnet18 seresnext26d_32x4d resnet50_gn \\
        "dict(type='SEResNet', depth=50, out_indices=(0, 1, 2, 3))" \\
        --size 128 --out coverage.md

A model is a timm name (built as ``TIMMBackbone(features_only=True)`` with
the feature maps of strides 4 to 32), an mmpretrain/mmdet backbone config
written as ``dict(type=..., ...)`` or ``{...}``, or a registry type
(``mmdet.RegNet``: its defaults). Per model, on CPU:

* converted: the SparK model builds, or the one-line reason it is refused;
* masked = 0: every sparse layer's output and every returned feature map is
  exactly zero at the masked positions of a random mask (float64);
* all-visible = dense: with every patch visible, the sparse backbone's
  features equal the dense backbone's (training mode, float64), to 1e-9 of
  their largest magnitude;
* train step: one SparK step (float32; NCHW, or channels_last with
  ``--channels-last``) gives a finite loss, gradients and updated weights;
* export: the backbone weights read back from a saved SparK checkpoint
  (:func:`spark_mm.checkpoint.checked_pretrained.backbone_weights`) load strictly into a
  freshly built dense backbone.

Exit status 1 if any model fails a check it was not refused before.
"""
import argparse
import ast
import copy
import os
import os.path as osp
import sys
import tempfile
import time
from typing import Callable, List, NamedTuple

import torch
import torch.nn as nn

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import timm  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402

from spark_mm.checkpoint import (BACKBONE_PREFIX,  # noqa: E402
                                 save_torch_atomically)
from spark_mm.checkpoint.checked_pretrained import backbone_weights  # noqa: E402
from spark_mm.errors import SparKInputError, one_line_message  # noqa: E402
from spark_mm.models.geometry import as_feature_list  # noqa: E402
from spark_mm.models.sparse import SparseMixin  # noqa: E402
from spark_mm.models.sparse.context import expand_mask  # noqa: E402
from spark_mm.models.sparse.global_pool import \
    SparseAdaptivePoolMixin  # noqa: E402
from spark_mm.registry import MODELS  # noqa: E402

ALL_VISIBLE_TOLERANCE = 1e-9
COLUMNS = ('model', 'converted', 'masked = 0', 'all-visible = dense',
           'train step', 'export loads strict', 'notes')


class Row(NamedTuple):
    model: str
    converted: str
    masked_zero: str = ''
    all_visible: str = ''
    train_step: str = ''
    export: str = ''
    notes: str = ''

    @property
    def refused(self) -> bool:
        return self.converted.startswith('refused')

    @property
    def passed(self) -> bool:
        return (self.converted == 'yes' and all(
            cell.startswith('yes') for cell in
            (self.masked_zero, self.all_visible, self.train_step, self.export)))

    def markdown(self) -> str:
        return '| ' + ' | '.join(cell.replace('|', '/') for cell in self) + ' |'


def _literal(node):
    """A Python literal, or ``dict(key=literal, ...)``, from an AST node."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == 'dict' and not node.args):
        return {keyword.arg: _literal(keyword.value) for keyword in node.keywords}
    if isinstance(node, ast.Dict):
        return {_literal(key): _literal(value)
                for key, value in zip(node.keys, node.values)}
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(item) for item in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    return ast.literal_eval(node)


def timm_backbone_config(name: str) -> dict:
    """``TIMMBackbone`` returning the timm model's maps of stride 4..32."""
    info = timm.create_model(name, features_only=True, pretrained=False).feature_info
    indices = tuple(index for index, reduction in enumerate(info.reduction())
                    if reduction >= 4)
    return dict(type='TIMMBackbone', model_name=name, features_only=True,
                pretrained=False, out_indices=indices)


def is_config(spec: str) -> bool:
    return spec.lstrip()[:1] in ('{', '(') or spec.lstrip().startswith('dict(')


def backbone_config(spec: str) -> dict:
    """The backbone config a model argument names (see the module doc)."""
    if is_config(spec):
        try:
            config = _literal(ast.parse(spec.strip(), mode='eval').body)
        except (SyntaxError, ValueError) as error:
            raise SparKInputError(f'cannot read the config {spec!r}: {error}; '
                                  "write it as dict(type='ResNet', depth=18)")
        if not isinstance(config, dict) or 'type' not in config:
            raise SparKInputError(f'the config {spec!r} is not a dict with a type')
        return config
    check_argument(spec)
    if '.' in spec:
        return dict(type=spec)
    return timm_backbone_config(spec)


def check_argument(spec: str) -> None:
    """Raise :class:`SparKInputError` for a model argument that names nothing."""
    if is_config(spec):
        backbone_config(spec)
    elif '.' not in spec and spec not in timm.list_models():
        raise SparKInputError(f'{spec!r} is not a timm model name, a registry '
                              "type (e.g. mmdet.RegNet) or a dict(type=...) config")


def build_backbone(config: dict):
    with DefaultScope.overwrite_default_scope('spark_mm'):
        return MODELS.build(copy.deepcopy(config))


def build_spark(backbone, size: int, channels_last: bool = False):
    """A small SparK; ``channels_last``: with the configs' fast path (which
    keeps maps channels_last), taking its non-plain implementations."""
    fast_path = (dict(type='SparKFastPath', tuner=dict(mode='fast', cache_file=''))
                 if channels_last else False)
    with DefaultScope.overwrite_default_scope('spark_mm'):
        model = MODELS.build(dict(
            type='SparK', backbone=backbone, input_size=size,
            neck=dict(type='LightUNetDecoder', width=32), fast_path=fast_path))
    model.init_weights()
    return model


def _nchw(module, args, kwargs, out):
    """A sparse layer's output as (B, C, H, W)."""
    data_format = kwargs.get('data_format', args[1] if len(args) > 1 else None)
    channels_last = (data_format in ('channel_last', 'channels_last') if data_format
                     else getattr(module, 'sparse_channels_last', False))
    return out.permute(0, 3, 1, 2) if channels_last else out


def masked_positions_zero(spark, images) -> str:
    """'yes (n maps)' if every sparse layer output and feature map is zero at
    masked positions, else the first layer that is not."""
    active = spark.generate_mask(images)
    offenders, checked = [], [0]

    def check(name, out):
        if not isinstance(out, torch.Tensor) or out.dim() != 4:
            return
        visible = expand_mask(active, *out.shape[-2:])
        checked[0] += 1
        if not torch.equal(out * ~visible, torch.zeros_like(out)):
            offenders.append(name)

    handles = []
    for name, module in spark.backbone.named_modules():
        if isinstance(module, SparseMixin) and not isinstance(module, SparseAdaptivePoolMixin):
            handles.append(module.register_forward_hook(
                lambda module, args, kwargs, out, name=name:
                check(name, _nchw(module, args, kwargs, out)), with_kwargs=True))
    try:
        with torch.no_grad(), spark.sparse_context.masked(active):
            features = spark.encode(images)
    finally:
        for handle in handles:
            handle.remove()
    for index, feature in enumerate(features):
        check(f'feature {index}', feature)
    if offenders:
        return f'no: {offenders[0]}' + (f' (+{len(offenders) - 1})' if len(offenders) > 1 else '')
    return f'yes ({checked[0]} maps)'


def all_visible_equals_dense(spark, dense, images) -> str:
    """Largest |sparse - dense| / max |dense| over the features, all visible."""
    grid = images.shape[-1] // spark.total_stride
    active = torch.ones(images.shape[0], 1, grid, grid, dtype=torch.bool)
    spark.backbone.train()
    dense.train()
    with torch.no_grad():
        with spark.sparse_context.masked(active):
            sparse_features = as_feature_list(spark.backbone(images))
        dense_features = as_feature_list(dense(images))
    worst = 0.0
    for sparse_map, dense_map in zip(sparse_features, dense_features):
        scale = dense_map.abs().max().clamp_min(1e-300)
        worst = max(worst, float((sparse_map - dense_map).abs().max() / scale))
    verdict = 'yes' if worst <= ALL_VISIBLE_TOLERANCE else 'no'
    return f'{verdict} ({worst:.0e})'


def train_step_finite(spark, images) -> str:
    """One SGD step of the SparK loss; finite loss, gradients and weights."""
    spark.train()
    optimizer = torch.optim.SGD(spark.parameters(), lr=0.01)
    loss = spark.loss(images, [])['loss']
    loss.backward()
    bad = [name for name, parameter in spark.named_parameters()
           if parameter.grad is not None and not parameter.grad.isfinite().all()]
    optimizer.step()
    bad += [name for name, parameter in spark.named_parameters()
            if not parameter.isfinite().all()]
    value = loss.detach().item()
    if not torch.isfinite(loss.detach()) or bad:
        return f'no (loss {value:.3g}; {bad[:1]})'
    return f'yes (loss {value:.3f})'


def export_loads_strict(spark, build) -> str:
    """The backbone read back from a SparK checkpoint, into the dense model."""
    with tempfile.TemporaryDirectory() as folder:
        path = osp.join(folder, 'spark.pth')
        save_torch_atomically({'state_dict': spark.state_dict()}, path)
        weights = backbone_weights(path, BACKBONE_PREFIX)
    build().load_state_dict(weights, strict=True)
    return f'yes ({len(weights)} tensors)'


def check_backbone(label: str, build: Callable[[], nn.Module], size: int = 128,
                   batch: int = 2, seed: int = 0, channels_last: bool = False) -> Row:
    """The coverage row of the backbone ``build()`` returns (a new dense one
    at each call); ``channels_last``: the training step's memory layout."""
    start = time.time()
    try:
        dense = build()  # float32: SparK probes it in float32
        spark = build_spark(copy.deepcopy(dense), size).double()
        # init_weights re-initialized the SparK copy (mmpretrain's init_cfg)
        dense.load_state_dict(spark.backbone.state_dict())
        dense.double()
    except SparKInputError as error:
        return Row(label, 'refused', notes=one_line_message(error))
    except Exception as error:  # not refused: a failure to report in the row
        return Row(label, f'no: {type(error).__name__}',
                   notes=' '.join(str(error).split())[:200])
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, size, size, generator=generator, dtype=torch.float64)
    cells = []
    for check in (lambda: masked_positions_zero(spark, images),
                  lambda: all_visible_equals_dense(spark, dense, images),
                  lambda: train_step_finite(build_spark(build(), size, channels_last),
                                            images.float()),
                  lambda: export_loads_strict(spark, build)):
        torch.manual_seed(seed)
        try:
            cells.append(check())
        except Exception as error:  # a row per model, whatever breaks
            cells.append(f'no: {type(error).__name__}: '
                         + ' '.join(str(error).split())[:160])
    notes = f'{size} px, {time.time() - start:.0f} s'
    return Row(label, 'yes', *cells, notes=notes)


def check_model(spec: str, size: int = 128, batch: int = 2, seed: int = 0,
                channels_last: bool = False) -> Row:
    """The coverage row of one model argument."""
    try:
        config = backbone_config(spec)
    except SparKInputError as error:
        return Row(spec, 'refused', notes=one_line_message(error))
    return check_backbone(spec, lambda: build_backbone(config), size, batch, seed,
                          channels_last)


def markdown_table(rows: List[Row]) -> str:
    lines = ['| ' + ' | '.join(COLUMNS) + ' |', '|' + '---|' * len(COLUMNS)]
    lines += [row.markdown() for row in rows]
    passed = sum(row.passed for row in rows)
    refused = sum(row.refused for row in rows)
    lines.append('')
    lines.append(f'{passed} of {len(rows)} converted and passing every column, '
                 f'{refused} refused at build, {len(rows) - passed - refused} failing.')
    return '\n'.join(lines) + '\n'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Check which backbones SparK '
                                     'converts, one Markdown row per model')
    parser.add_argument('models', nargs='+', help='timm names, dict(...) '
                        'configs of mmpretrain/mmdet backbones, or registry types')
    parser.add_argument('--size', type=int, default=128,
                        help='input size in pixels, a multiple of 32 (default 128)')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--channels-last', action='store_true',
                        help='the training step with the fast path in '
                        'channels_last, as the pretraining configs (torch '
                        '2.14.1 on CPU aborts in '
                        "the backward of timm's RepVGG in channels_last, "
                        'dense or sparse)')
    parser.add_argument('--out', help='also write the table to this Markdown file')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.size <= 0 or args.size % 32:
        print(f'--size {args.size} is not a positive multiple of 32; use e.g. 64 or 128')
        return 2
    try:  # bad arguments: one line before any work
        for spec in args.models:
            check_argument(spec)
    except SparKInputError as error:
        print(one_line_message(error))
        return 2
    rows: List[Row] = []
    for spec in args.models:
        row = check_model(spec, args.size, args.batch, channels_last=args.channels_last)
        print(row.markdown(), flush=True)
        rows.append(row)
    table = markdown_table(rows)
    print(table.splitlines()[-1])
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as file:
            file.write(table)
    failing = [row for row in rows if not (row.passed or row.refused)]
    return 1 if failing else 0


if __name__ == '__main__':
    sys.exit(main())
