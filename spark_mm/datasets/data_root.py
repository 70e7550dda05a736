"""Point a config at other data after it was parsed.

mmengine resolves ``data_root + 'annotations/...'`` when the config file is
read, so ``--cfg-options data_root=X`` alone would change one key and leave
every path built from it behind. :func:`set_data_root` moves them all.
:func:`use_annotation_classes` reads the class names of a COCO-format set from
its annotation file, for configs that state ``classes_from_annotations = True``
instead of a class list.
"""
import json
import os
from typing import Tuple

from mmengine.config import Config, ConfigDict

from ..errors import DataNotFoundError, SparKInputError


def _under(value: str, root: str) -> bool:
    return value == root or value.startswith(root.rstrip('/') + '/')


def set_data_root(cfg: Config, new_root: str) -> int:
    """Replace the config's ``data_root`` prefix in every string; returns how many.

    A string counts when it equals the old root or continues it with ``/``
    (``data/coco/annotations/x.json`` for ``data/coco/``; not ``data/coco2``).
    """
    old_root = cfg.get('data_root')
    if not old_root:
        raise SparKInputError(
            'this config has no top-level data_root to replace; set the '
            'dataset paths with --cfg-options instead of --data-root')
    old_base = old_root.rstrip('/')
    new_base = new_root.rstrip('/') or '/'

    def moved(value: str) -> str:
        if value == old_root:
            return new_base + ('/' if old_root.endswith('/') else '')
        return new_base + value[len(old_base):]

    def walk(node) -> int:
        count = 0
        items = (node.items() if isinstance(node, (dict, ConfigDict))
                 else enumerate(node))
        for key, value in list(items):
            if isinstance(value, str) and _under(value, old_root):
                node[key] = moved(value)
                count += 1
            elif isinstance(value, (dict, ConfigDict, list)):
                count += walk(value)
            elif isinstance(value, tuple):
                as_list = list(value)
                changed = walk(as_list)
                if changed:
                    node[key] = type(value)(as_list)
                    count += changed
        return count

    return walk(cfg._cfg_dict)


def coco_class_names(ann_file: str) -> Tuple[str, ...]:
    """Category names of a COCO annotation file, in category id order."""
    if not os.path.isfile(ann_file):
        raise DataNotFoundError(
            f'annotation file {ann_file!r} does not exist; a COCO-format set '
            'needs annotations/instances_train2017.json (and val) under its '
            'data root, or set the ann_file keys with --cfg-options')
    try:
        with open(ann_file) as f:
            categories = json.load(f)['categories']
        names = tuple(str(cat['name'])
                      for cat in sorted(categories, key=lambda cat: cat['id']))
    except (ValueError, KeyError, TypeError) as error:
        raise SparKInputError(f'annotation file {ann_file!r} is not COCO format '
                              f'({type(error).__name__}: {error})') from None
    if not names:
        raise SparKInputError(f'annotation file {ann_file!r} lists no categories')
    return names


def _datasets(loader):
    dataset = loader.get('dataset') if loader else None
    while dataset is not None:
        yield dataset
        dataset = dataset.get('dataset')


def _set_num_classes(node, count: int):
    if isinstance(node, (dict, ConfigDict)):
        if 'num_classes' in node:
            node['num_classes'] = count
        for value in node.values():
            _set_num_classes(value, count)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _set_num_classes(value, count)


def use_annotation_classes(cfg: Config) -> Tuple[str, ...]:
    """Classes from the training annotation file, when the config asks for it.

    With ``classes_from_annotations = True`` the names go into every
    dataloader's ``metainfo`` and their count into the RoI heads'
    ``num_classes`` (the RPN stays class-agnostic). Returns the names, or ()
    when the config does not ask.
    """
    if not cfg.get('classes_from_annotations'):
        return ()
    dataset = next(_datasets(cfg.train_dataloader))
    ann_file = os.path.join(dataset.get('data_root') or '', dataset['ann_file'])
    names = coco_class_names(ann_file)
    for loader_key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        for dataset in _datasets(cfg.get(loader_key)):
            if 'ann_file' in dataset:
                dataset['metainfo'] = dict(dataset.get('metainfo') or {},
                                           classes=names)
    _set_num_classes(cfg.model.get('roi_head'), len(names))
    cfg.classes = names
    return names
