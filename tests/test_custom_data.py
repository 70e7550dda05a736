"""Pretraining on a user's folder: recursive scan, broken/tiny/hidden files,
channel conversion (gray, RGBA, N channels), --data-root, one-line errors, and
the chain folder -> SparK (1 channel) -> export -> Mask R-CNN with 1 channel."""
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from spark_mm.datasets import (LoadImageOrSkip, UnlabeledImageFolder,  # noqa: E402
                               check_data_roots, scan_image_folder,
                               set_data_root, to_channels,
                               use_annotation_classes)
from spark_mm.datasets.synthetic.study_scenes import make_study_data  # noqa: E402
from spark_mm.registry import MODELS  # noqa: E402
from spark_mm.apis import revert_sync_bn_in_config  # noqa: E402

ENV = dict(os.environ, OMP_NUM_THREADS='1')


def _save(path, array, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array, mode).save(path)


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    """Nested RGB JPEGs, gray PNGs, RGBA PNGs, plus files that must be left out."""
    root = tmp_path_factory.mktemp('images')
    rng = np.random.RandomState(0)
    for i in range(4):
        _save(f'{root}/a/rgb_{i}.JPG', rng.randint(0, 256, (70 + 9 * i, 90, 3), np.uint8))
    for i in range(3):
        _save(f'{root}/a/b/c/gray_{i}.png', rng.randint(0, 256, (100, 64), np.uint8))
    for i in range(2):
        _save(f'{root}/rgba_{i}.png', rng.randint(0, 256, (80, 80, 4), np.uint8), 'RGBA')
    (root / 'broken.jpg').write_bytes(b'\xff\xd8 this is not a jpeg')
    (root / 'empty.png').write_bytes(b'')
    _save(f'{root}/tiny.png', rng.randint(0, 256, (16, 40, 3), np.uint8))
    _save(f'{root}/.thumbnails/hidden.png', rng.randint(0, 256, (64, 64, 3), np.uint8))
    _save(f'{root}/a/._resource_fork.jpg', rng.randint(0, 256, (64, 64, 3), np.uint8))
    (root / 'notes.txt').write_text('not an image')
    return str(root)


def test_scan_sorts_files(folder):
    scan = scan_image_folder(folder)
    names = sorted(os.path.relpath(path, folder) for path in scan.images)
    assert names == sorted([f'a/rgb_{i}.JPG' for i in range(4)]
                           + [f'a/b/c/gray_{i}.png' for i in range(3)]
                           + [f'rgba_{i}.png' for i in range(2)])
    assert sorted(os.path.basename(p) for p, _ in scan.unreadable) == [
        'broken.jpg', 'empty.png']
    assert [(os.path.basename(p), size) for p, size in scan.tiny] == [('tiny.png', (40, 16))]
    assert len(scan_image_folder(folder, min_size=8).images) == 10


def test_dataset_lists_usable_images(folder):
    logger = MMLogger.get_current_instance()
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger.addHandler(handler)
    try:
        dataset = UnlabeledImageFolder(data_root=folder, pipeline=[])
    finally:
        logger.removeHandler(handler)
    assert len(dataset) == 9
    assert any(m.startswith(f'found 9 images in {folder}; left out: 2 unreadable')
               for m in messages), messages
    assert all(os.path.isfile(dataset[i]['img_path']) for i in range(len(dataset)))


@pytest.mark.parametrize('channels', [1, 3, 4])
def test_loading_gives_the_channel_count(folder, channels):
    load = LoadImageOrSkip(channels=channels)
    for path in scan_image_folder(folder).images:
        image = load(dict(img_path=path))['img']
        assert image.ndim == 3 and image.shape[2] == channels, (path, image.shape)
    assert load(dict(img_path=os.path.join(folder, 'broken.jpg'))) is None
    assert load.num_skipped == 1


def test_to_channels_conversions():
    bgr = np.random.RandomState(0).randint(0, 256, (5, 6, 3), np.uint8)
    gray = to_channels(bgr, 1)
    assert gray.shape == (5, 6, 1)
    assert np.array_equal(to_channels(gray[..., 0], 3), np.repeat(gray, 3, 2))
    bgra = np.concatenate([bgr, np.zeros((5, 6, 1), np.uint8)], 2)
    assert np.array_equal(to_channels(bgra, 3), bgr)
    sixteen_bit = (np.arange(30, dtype=np.uint16) * 2000).reshape(5, 6)
    assert to_channels(sixteen_bit, 1).dtype == np.uint16
    rgba = to_channels(bgr, 4)
    assert np.array_equal(rgba[..., :3], bgr) and (rgba[..., 3] == 255).all()
    assert to_channels(gray, 5).shape == (5, 6, 5)
    with pytest.raises(ValueError, match='has 3 channels; the model takes 6'):
        to_channels(bgr, 6)


def test_set_data_root_moves_derived_paths():
    cfg = Config.fromfile(os.path.join(ROOT, 'configs/mask_rcnn/custom_r18_coco.py'))
    cfg.some_other = 'data/my_coco_backup/x.json'  # a sibling, not under the root
    assert set_data_root(cfg, '/new/coco') == 6
    assert cfg.data_root == '/new/coco/'
    assert cfg.train_dataloader.dataset.data_root == '/new/coco/'
    assert cfg.test_dataloader.dataset.data_root == '/new/coco/'
    assert cfg.val_evaluator.ann_file == '/new/coco/annotations/instances_val2017.json'
    assert cfg.test_evaluator.ann_file == '/new/coco/annotations/instances_val2017.json'
    assert cfg.some_other == 'data/my_coco_backup/x.json'


def test_classes_come_from_the_annotation_file(tmp_path):
    make_study_data(str(tmp_path / 'study'), num_unlabeled=2, num_train=2, num_val=2)
    cfg = Config.fromfile(os.path.join(ROOT, 'configs/mask_rcnn/custom_r18_coco.py'))
    set_data_root(cfg, str(tmp_path / 'study' / 'coco'))
    names = use_annotation_classes(cfg)
    assert names == ('striped_disc', 'checkered_box', 'dotted_triangle', 'ringed_star')
    assert cfg.val_dataloader.dataset.metainfo.classes == names
    assert cfg.model.roi_head.bbox_head.num_classes == 4
    assert cfg.model.roi_head.mask_head.num_classes == 4
    assert cfg.model.rpn_head.get('num_classes', 1) == 1


def _custom_cfg(name, folder, **options):
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', 'spark', name))
    set_data_root(cfg, folder)
    cfg.merge_from_dict(options)
    return cfg


def test_errors_name_the_problem(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist; pass the folder'):
        check_data_roots(_custom_cfg('custom_r18.py', str(tmp_path / 'nowhere')))
    (tmp_path / 'texts').mkdir()
    (tmp_path / 'texts' / 'a.txt').write_text('x')
    with pytest.raises(FileNotFoundError, match='holds no images'):
        check_data_roots(_custom_cfg('custom_r18.py', str(tmp_path / 'texts')))
    with pytest.raises(ValueError) as error:  # 9 usable, batch 32
        check_data_roots(_custom_cfg('custom_r18.py', folder))
    message = str(error.value)
    assert '\n' not in message
    assert 'has 9 usable images of 12 (2 unreadable' in message
    assert 'fewer than one batch (32 per process x 1 processes)' in message
    assert 'train_dataloader.batch_size=9' in message
    check_data_roots(_custom_cfg('custom_r18.py', folder,
                                 **{'train_dataloader.batch_size': 4}))


def test_train_tool_one_line_error(tmp_path):
    broken = tmp_path / 'broken'
    broken.mkdir()
    for i in range(3):
        (broken / f'{i}.png').write_bytes(b'\x89PNG garbage')
    result = subprocess.run(
        [sys.executable, 'tools/train.py', 'configs/spark/custom_r18.py',
         '--data-root', str(broken), '--work-dir', str(tmp_path / 'w')],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert 'Traceback' not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('error: image folder') and '0 usable images of 3' in last
    assert '3 unreadable' in last


def test_n_channel_spark_step():
    """in_channels=4: backbone, data preprocessor and decoder follow it."""
    cfg = Config.fromfile(os.path.join(ROOT, 'configs/spark/custom_r18.py'))
    cfg.merge_from_dict({'model.in_channels': 4, 'model.backbone.in_channels': 4,
                         'model.data_preprocessor.mean': [127.5],
                         'model.data_preprocessor.std': [64.0],
                         'model.data_preprocessor.to_rgb': False,
                         'model.input_size': (64, 96), 'model.neck.width': 64})
    revert_sync_bn_in_config(cfg)
    model = MODELS.build(cfg.model)
    assert model.backbone.conv1.in_channels == 4
    assert model.neck.predict.out_channels == 4
    data = model.data_preprocessor(
        dict(inputs=torch.randint(0, 256, (2, 4, 64, 96), dtype=torch.uint8),
             data_samples=None), training=True)
    assert data['inputs'].shape == (2, 4, 64, 96)
    loss = model(**data, mode='loss')['loss']
    loss.backward()
    assert torch.isfinite(loss) and model.backbone.conv1.weight.grad is not None


@pytest.mark.slow
def test_gray_folder_to_gray_mask_rcnn(folder, tmp_path):
    """custom_r18_gray pretraining -> export -> 1-channel Mask R-CNN, via the tools
    (tools/train.py as subprocesses, tools/export_backbone.py in process)."""
    work = tmp_path / 'gray'
    common = dict(cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    result = subprocess.run(
        [sys.executable, 'tools/train.py', 'configs/spark/custom_r18_gray.py',
         '--cfg-options', f'data_root={folder}', 'train_dataloader.batch_size=4',
         'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
         'train_cfg.max_epochs=1', 'model.neck.width=64',
         '--work-dir', str(work / 'pretrain')], **common)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'smaller than 32 px' in result.stdout + result.stderr
    weights = torch.load(work / 'pretrain' / 'backbone.pth', weights_only=True)
    weights = weights.get('state_dict', weights)
    assert weights['conv1.weight'].shape == (64, 1, 7, 7)

    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    import export_backbone  # tools/export_backbone.py
    written = export_backbone.export(str(work / 'pretrain' / 'epoch_1.pth'),
                                     str(work / 'export'))
    assert {'mmdet', 'torchvision', 'timm'} <= set(written)
    tv_weights = torch.load(written['torchvision'], weights_only=True)
    assert tv_weights['conv1.weight'].shape == (64, 1, 7, 7)

    coco = tmp_path / 'scenes'
    make_study_data(str(coco), num_unlabeled=1, num_train=4, num_val=4,
                    labelled_size=(96, 128))
    result = subprocess.run(
        [sys.executable, 'tools/train.py', 'configs/mask_rcnn/custom_r18_gray_coco.py',
         '--data-root', str(coco / 'coco'), '--work-dir', str(work / 'maskrcnn'),
         '--cfg-options',
         f'model.backbone.init_cfg.checkpoint={work / "export" / "backbone_mmdet.pth"}',
         'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
         'default_hooks.checkpoint.interval=2', 'param_scheduler.0.end=1',
         'custom_hooks.0.num_iters=1', 'train_dataloader.num_workers=0',
         'val_dataloader.num_workers=0', 'test_dataloader.num_workers=0',
         'train_dataloader.persistent_workers=False',
         'val_dataloader.persistent_workers=False',
         'test_dataloader.persistent_workers=False',
         'train_dataloader.dataset.pipeline.2.scales=[(200,96)]',
         'val_dataloader.dataset.pipeline.1.scale=(200,96)'], **common)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert 'coco/bbox_mAP' in log and 'coco/segm_mAP' in log
    checkpoint = torch.load(work / 'maskrcnn' / 'iter_2.pth', weights_only=False)
    assert checkpoint['state_dict']['backbone.conv1.weight'].shape[1] == 1
    assert checkpoint['meta']['dataset_meta']['classes'] == (
        'striped_disc', 'checkered_box', 'dotted_triangle', 'ringed_star')
    scalars = [json.loads(line) for line in open(next(
        (work / 'maskrcnn').glob('*/vis_data/scalars.json')))]
    assert any('coco/segm_mAP' in entry for entry in scalars)


@pytest.mark.parametrize('channels', [1, 3])
def test_non_square_pipeline(folder, channels):
    """input_size (h, w) = (64, 128): every image comes out 64 x 128, any source shape."""
    from mmengine.dataset import Compose
    from mmengine.registry import DefaultScope
    from spark_mm.datasets.image_folder import folder_pretrain_pipeline
    pipeline = folder_pretrain_pipeline((64, 128), channels)
    crop = pipeline[1]
    assert crop['scale'] == (64, 128)
    assert crop['aspect_ratio_range'] == pytest.approx((1.5, 8 / 3))
    with DefaultScope.overwrite_default_scope('spark_mm'):
        dataset = UnlabeledImageFolder(data_root=folder, pipeline=pipeline)
        for index in range(len(dataset)):
            inputs = dataset[index]['inputs']
            assert tuple(inputs.shape) == (channels, 64, 128)
        crop_only = Compose(pipeline[:2])
    assert crop_only(dict(img_path=dataset.get_data_info(0)['img_path'])
                     )['img'].shape[:2] == (64, 128)
