"""Fail early, in one line, when a config points at data that is not there."""
import os

from ..errors import DataNotFoundError
from .folder_walk import walk_each_folder_once
from .image_folder import check_image_folder

# mmpretrain CustomDataset's default extensions
IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif')

# Dataset types that create their data themselves.
SELF_MADE_DATASETS = ('SparKDemoImages',)


def _datasets_in(cfg):
    for loader_key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(loader_key)
        dataset = loader.get('dataset') if loader else None
        while dataset is not None:
            yield loader_key, dataset
            dataset = dataset.get('dataset')  # wrappers (RepeatDataset, ...)


def _holds_an_image(root: str) -> bool:
    """Whether any file under ``root`` has an image extension (stops at the first)."""
    for _, _, files in walk_each_folder_once(root):
        if any(name.lower().endswith(IMG_EXTENSIONS) for name in files):
            return True
    return False


DEMO_HINTS = {
    'mmdet': ('configs/mask_rcnn/demo_r18_synthetic_coco.py on generated data '
              '(python tools/make_synthetic_coco.py --out data/synthetic_coco)'),
    'mmseg': ('configs/upernet/demo_r18_synthetic_ade20k.py on generated data '
              '(see its header)'),
}
DEFAULT_DEMO_HINT = 'configs/spark/demo_r18.py, which needs no data'


def check_data_roots(cfg, demo_config: str = None):
    """Raise FileNotFoundError naming the missing data root and what to do."""
    demo_config = demo_config or DEMO_HINTS.get(cfg.get('default_scope'),
                                                DEFAULT_DEMO_HINT)
    for loader_key, dataset in _datasets_in(cfg):
        dataset_type = str(dataset.get('type', '')).split('.')[-1]
        if dataset_type in SELF_MADE_DATASETS:
            continue
        if dataset_type == 'UnlabeledImageFolder':
            check_image_folder(
                dataset.get('data_root') or '', cfg[loader_key].get('batch_size', 1),
                int(os.environ.get('WORLD_SIZE', 1)), dataset.get('min_size', 32),
                **({'extensions': dataset['extensions']}
                   if 'extensions' in dataset else {}))
            continue
        data_root = dataset.get('data_root')
        if data_root and not os.path.isdir(data_root):
            layout = (f'{data_root}/train/<class>/<image>'
                      if dataset.get('type') == 'ImageNet' else
                      'the layout the config describes')
            raise DataNotFoundError(
                f'{loader_key}: dataset root {data_root!r} does not exist; put '
                f'the data there ({layout}) or point data_root at it with '
                f'--cfg-options, or run {demo_config}')
        if data_root and not _holds_an_image(data_root):
            raise DataNotFoundError(
                f'{loader_key}: dataset root {data_root!r} exists but holds no '
                f'images ({", ".join(IMG_EXTENSIONS)}); copy or link the images '
                f'there, fix data_root with --cfg-options, or run '
                f'{demo_config}')
