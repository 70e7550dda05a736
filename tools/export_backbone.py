"""Export the backbone of a SparK checkpoint for downstream toolboxes.

    python tools/export_backbone.py work_dirs/spark_r50/epoch_1600.pth \
        --out-dir work_dirs/spark_r50/export --formats mmdet torchvision detectron2

Writes, for each format, a file that is loaded back into the real target
model and checked before this tool reports success:

* ``backbone_mmdet.pth``: mmdet/mmpretrain naming, for
  ``init_cfg=dict(type='Pretrained', checkpoint=...)`` (ResNet or ConvNeXt);
  0 missing and 0 unexpected keys required.
* ``backbone_torchvision.pth``: a plain state dict for
  ``torchvision.models.resnetXX()`` / ``timm.create_model('resnetXX')``;
  only ``fc.*`` may be missing.
* ``backbone_detectron2.pkl``: Detectron2 ``MODEL.WEIGHTS`` (ResNet only).

A checkpoint that does not match (truncated, other model, wrong prefix) ends
with one line listing the offending keys and exit status 1.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from spark_mm.export import (CheckpointError, backbone_state_dict,  # noqa: E402
                             save_backbone)
from spark_mm.export_formats import (backbone_kind, build_reference,  # noqa: E402
                                     check_loads, expected_detectron2_names,
                                     input_channels, resnet_depth,
                                     save_detectron2, to_torchvision)

FORMATS = ('mmdet', 'torchvision', 'detectron2')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export SparK backbone weights (mmdet, torchvision/timm, '
        'Detectron2)')
    parser.add_argument('checkpoint', help='SparK pretraining checkpoint '
                        '(or a backbone.pth written by the pretraining run)')
    parser.add_argument('--out-dir', help='output folder (default: next to '
                        'the checkpoint)')
    parser.add_argument('--formats', nargs='+', choices=FORMATS,
                        help='default: all that apply to the backbone '
                        '(ConvNeXt: mmdet only)')
    parser.add_argument('--prefix', default=None,
                        help='key prefix of the backbone in the checkpoint '
                        '(default: "backbone.", or none for a backbone-only '
                        'file)')
    return parser.parse_args(argv)


def _load(path: str, prefix):
    if prefix is not None:
        return backbone_state_dict(path, prefix)
    try:
        return backbone_state_dict(path, 'backbone.')
    except CheckpointError as error:
        if 'holds no' not in str(error):
            raise
        return backbone_state_dict(path, '')


def export_mmdet(state_dict, out_dir, source):
    model = build_reference(state_dict)
    counts = check_loads(model, state_dict, f'mmdet/mmpretrain '
                         f'{type(model).__name__}')
    path = save_backbone(state_dict, osp.join(out_dir, 'backbone_mmdet.pth'),
                         meta=dict(source=source,
                                   backbone=type(model).__name__))
    print(f'[mmdet] {type(model).__module__}.{type(model).__name__}: '
          f'{counts["missing"]} missing, {counts["unexpected"]} unexpected '
          f'keys ({len(state_dict)} tensors) -> {path}')
    return path


def export_torchvision(state_dict, out_dir):
    import torch
    import torchvision
    weights = to_torchvision(state_dict)
    depth = resnet_depth(weights)
    in_channels = input_channels(weights)
    model = getattr(torchvision.models, f'resnet{depth}')(weights=None)
    if in_channels != 3:  # torchvision has no argument for it: swap the stem
        model.conv1 = torch.nn.Conv2d(in_channels, model.conv1.out_channels, 7,
                                      2, 3, bias=False)
    counts = check_loads(model, weights, f'torchvision resnet{depth}',
                         allowed_missing=('fc.', ))
    report = (f'[torchvision] resnet{depth}: {counts["missing"]} missing '
              f'(fc.weight, fc.bias), {counts["unexpected"]} unexpected keys')
    try:
        import timm
    except ImportError:
        timm = None
    if timm is not None:
        model = timm.create_model(f'resnet{depth}', pretrained=False,
                                  in_chans=in_channels)
        counts = check_loads(model, weights, f'timm resnet{depth}',
                             allowed_missing=('fc.', ))
        report += (f'; [timm] resnet{depth}: {counts["missing"]} missing '
                   f'(fc.*), {counts["unexpected"]} unexpected')
    path = osp.join(out_dir, 'backbone_torchvision.pth')
    tmp_path = f'{path}.tmp.{os.getpid()}'
    torch.save(weights, tmp_path)
    os.replace(tmp_path, path)
    print(f'{report} -> {path}')
    return path


def export_detectron2(state_dict, out_dir):
    depth = resnet_depth(state_dict)
    path = save_detectron2(state_dict, osp.join(out_dir,
                                                'backbone_detectron2.pkl'))
    import pickle
    with open(path, 'rb') as f:
        names = set(pickle.load(f)['model'])
    expected = set(expected_detectron2_names(depth))
    if names != expected:
        raise CheckpointError(
            f'Detectron2 names differ from ResNet-{depth}: missing '
            f'{sorted(expected - names)[:8]}, unexpected '
            f'{sorted(names - expected)[:8]}; report this as a bug')
    print(f'[detectron2] ResNet-{depth}: {len(names)} tensors with '
          f'Detectron2 names (stem.*, res2..res5.*) -> {path}')
    return path


def export(checkpoint: str, out_dir: str = None, formats=None,
           prefix: str = None) -> dict:
    """Run the export; returns format -> written path."""
    state_dict = _load(checkpoint, prefix)
    kind = backbone_kind(state_dict)
    if formats is None:
        formats = FORMATS if kind == 'resnet' else ('mmdet', )
    out_dir = out_dir or osp.dirname(osp.abspath(checkpoint))
    os.makedirs(out_dir, exist_ok=True)
    written = {}
    for fmt in formats:
        if fmt == 'mmdet':
            written[fmt] = export_mmdet(state_dict, out_dir, checkpoint)
        elif fmt == 'torchvision':
            written[fmt] = export_torchvision(state_dict, out_dir)
        else:
            written[fmt] = export_detectron2(state_dict, out_dir)
    return written


def main(argv=None):
    args = parse_args(argv)
    try:
        export(args.checkpoint, args.out_dir, args.formats, args.prefix)
    except CheckpointError as error:
        sys.exit(f'error: {error}')


if __name__ == '__main__':
    main()
