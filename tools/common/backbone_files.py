"""A fine-tuning run whose backbone file does not exist yet stops at once,
with the command that writes that file.

Every pretraining config under ``configs/spark/`` states its ``work_dir``,
and its run exports ``<work_dir>/backbone.pth`` (``ExportBackboneHook``);
downstream configs read that file. When it is missing, the usual cause is
that the pretraining has not run (or ran with another ``--work-dir``).
"""
import glob
import os.path as osp
import re
from typing import Iterator, Optional

from mmengine.config import Config

from spark_mm.errors import CheckpointError

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
_WORK_DIR = re.compile(r"^work_dir\s*=\s*'([^']+)'", re.MULTILINE)
_EXPORT = 'backbone.pth'  # ExportBackboneHook's default file name


def _init_checkpoints(node) -> Iterator[str]:
    """Every local ``checkpoint`` of an initialiser in the model config."""
    if isinstance(node, dict):
        checkpoint = node.get('checkpoint')
        if 'Pretrained' in str(node.get('type', '')) and \
                isinstance(checkpoint, str) and '://' not in checkpoint:
            yield checkpoint
        for value in node.values():
            yield from _init_checkpoints(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _init_checkpoints(value)


def pretraining_config_writing(path: str) -> Optional[str]:
    """The config under configs/spark/ whose run exports ``path``, if any
    (read from the ``work_dir = '...'`` line each of them states)."""
    if osp.basename(path) != _EXPORT:
        return None
    wanted = osp.normpath(osp.dirname(path))
    for config in sorted(glob.glob(osp.join(ROOT, 'configs', 'spark', '**', '*.py'),
                                   recursive=True)):
        with open(config) as f:
            match = _WORK_DIR.search(f.read())
        if match and osp.normpath(match.group(1)) == wanted:
            return osp.relpath(config, ROOT)
    return None


def check_backbone_files(cfg: Config) -> None:
    """One line naming the missing file and how to get it."""
    for checkpoint in _init_checkpoints(cfg.get('model', {})):
        if osp.isfile(checkpoint):
            continue
        config = pretraining_config_writing(checkpoint)
        source = (f'`python tools/train.py {config}` writes it' if config else
                  'no pretraining config here writes it')
        raise CheckpointError(
            f'backbone weights {checkpoint!r} do not exist: {source}; or pass '
            'another file with --cfg-options '
            'model.backbone.init_cfg.checkpoint=PATH (a released file: '
            'tools/export_backbone.py RELEASE --out-dir DIR, then '
            'DIR/backbone_mmdet.pth)')
