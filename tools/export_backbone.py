"""Turn any SparK checkpoint into backbone weights for downstream toolboxes.

    python tools/export_backbone.py res50_1kpretrained_timm_style.pth --out-dir export
    python tools/export_backbone.py work_dirs/r50_pretrain/epoch_1600.pth \
        --out-dir work_dirs/r50_pretrain/export --formats mmdet torchvision detectron2

Sources (autodetected, or ``--source``): the official SparK releases
(ResNet ``*_1kpretrained_timm_style.pth``, ConvNeXt
``*_1kpretrained_official_style.pth``, also wrapped in ``module`` /
``state_dict`` / ``model``, with ``module.`` prefixes or extra entries, and the
``*_withdecoder_*_spark_style.pth`` files), mmpretrain 1.2.0's SparK
checkpoints, and this project's checkpoints and ``backbone.pth`` files.

Targets, each loaded into the real model before anything is written:

* ``backbone_mmdet.pth`` (``mmdet``): mmdet/mmpretrain ``ResNet`` or
  mmpretrain ``ConvNeXt`` naming, for ``init_cfg=dict(type='Pretrained',
  checkpoint=...)``;
* ``backbone_torchvision.pth`` (``torchvision``): ``torchvision.models.resnetXX``
  or ``convnext_*`` (ConvNeXt V1);
* ``backbone_timm.pth`` (``timm``): ``timm`` ``resnetXX`` or ``ConvNeXt``;
* ``backbone_detectron2.pkl`` (``detectron2``): Detectron2 ``MODEL.WEIGHTS``
  (ResNet).

The report's counts come from that load. A checkpoint that cannot be read or
does not fit ends with one line naming the problem and exit status 1, and
writes nothing.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from spark_mm.checkpoint.architecture import (  # noqa: E402
    backbone_kind, convnext_arch, resnet_depth)
from spark_mm.checkpoint.writers import (PREPARE, default_formats,  # noqa: E402
                                         prepare_mmdet)
from spark_mm.checkpoint.sources import SOURCES, read_backbone  # noqa: E402
from spark_mm.errors import CheckpointError  # noqa: E402

FORMATS = ('mmdet', 'torchvision', 'timm', 'detectron2')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export SparK backbone weights (mmdet/mmpretrain, '
        'torchvision, timm, Detectron2) from any SparK checkpoint')
    parser.add_argument('checkpoint', help='an official SparK release, an '
                        'mmpretrain SparK checkpoint, or a spark_mm '
                        'checkpoint / backbone.pth')
    parser.add_argument('--out-dir', help='output folder (default: next to '
                        'the checkpoint)')
    parser.add_argument('--formats', nargs='+', choices=FORMATS,
                        help='default: every format the backbone fits '
                        '(ResNet: all; ConvNeXt: mmdet, torchvision, timm)')
    parser.add_argument('--source', default='auto',
                        choices=('auto', ) + SOURCES,
                        help='what the checkpoint is (default: autodetect)')
    parser.add_argument('--prefix', default=None,
                        help='key prefix of the backbone in the checkpoint '
                        '(default: found: "backbone.", '
                        '"sparse_encoder.sp_cnn.", or none)')
    return parser.parse_args(argv)


def _describe(backbone) -> str:
    weights = backbone.weights
    if backbone_kind(weights) == 'resnet':
        arch = f'ResNet-{resnet_depth(weights)}'
    else:
        arch = convnext_arch(weights)
        arch = (f'ConvNeXt depths {tuple(arch["depths"])} channels '
                f'{tuple(arch["channels"])}')
    lines = [f'source: {backbone.description}; {arch}, {len(weights)} '
             'backbone tensors']
    for why, names in backbone.dropped.items():
        shown = ', '.join(names[:8]) + (f' (+{len(names) - 8} more)'
                                        if len(names) > 8 else '')
        lines.append(f'  left out ({why}): {shown}')
    return '\n'.join(lines)


def export(checkpoint: str, out_dir: str = None, formats=None,
           prefix: str = None, source: str = 'auto') -> dict:
    """Run the export; returns format -> written path.

    Every requested format is prepared and checked against its real model
    first; files are written only when all of them fit.
    """
    backbone = read_backbone(checkpoint, source=source, prefix=prefix)
    weights = backbone.weights
    formats = list(formats or default_formats(weights))
    prepared = []
    for fmt in dict.fromkeys(formats):
        if fmt == 'mmdet':
            prepared.append(prepare_mmdet(weights, meta=dict(
                source=checkpoint, source_format=backbone.source)))
        else:
            prepared.append(PREPARE[fmt](weights))
    print(_describe(backbone))
    out_dir = out_dir or osp.dirname(osp.abspath(checkpoint))
    written = {}
    try:
        for item in prepared:
            written[item.fmt] = item.save(out_dir)
    except OSError as error:
        for path in written.values():
            if osp.exists(path):
                os.remove(path)
        raise CheckpointError(f'cannot write to {out_dir}: {error}') from error
    for item in prepared:
        print(f'{item.report} -> {written[item.fmt]}')
        for note in item.notes:
            print(f'    {note}')
    return written


def main(argv=None):
    args = parse_args(argv)
    try:
        export(args.checkpoint, args.out_dir, args.formats, args.prefix,
               args.source)
    except CheckpointError as error:
        sys.exit(f'error: {error}')


if __name__ == '__main__':
    main()
