"""A real tools/train.py run on the demo data: the loss must go down."""
import glob
import json
import os
import subprocess
import sys

import pytest
import torch

from spark_mm.registry import MODELS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_scalars(work_dir):
    (path, ) = glob.glob(os.path.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.mark.slow
def test_demo_pretraining_lowers_the_loss_and_exports_the_backbone(tmp_path):
    work_dir = tmp_path / 'work'
    command = [
        sys.executable, os.path.join(ROOT, 'tools', 'train.py'),
        os.path.join(ROOT, 'configs', 'spark', 'demo_r18.py'),
        '--work-dir', str(work_dir), '--cfg-options',
        'train_cfg.max_epochs=4', 'train_dataloader.batch_size=8',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        f'train_dataloader.dataset.data_root={tmp_path / "demo_images"}',
        'train_dataloader.dataset.num_images=32', 'default_hooks.logger.interval=1',
        'default_hooks.checkpoint.interval=2',
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'SyncBN replaced by BN' in result.stdout + result.stderr
    assert f'checkpoint: {work_dir / "epoch_4.pth"}' in result.stdout

    losses = [row['loss'] for row in read_scalars(work_dir) if 'loss' in row]
    assert len(losses) == 16
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4

    dense = MODELS.build(dict(type='ResNet', depth=18, out_indices=(0, 1, 2, 3)))
    saved = torch.load(work_dir / 'backbone.pth', map_location='cpu')
    exported = saved['state_dict']
    dense.load_state_dict(exported, strict=True)
    assert saved['meta']['backbone'] == type(dense).__name__  # the dense class
    trained = torch.load(work_dir / 'epoch_4.pth', map_location='cpu',
                         weights_only=False)['state_dict']
    assert torch.equal(exported['layer4.1.conv2.weight'],
                       trained['backbone.layer4.1.conv2.weight'])


def test_missing_dataset_is_one_line_naming_the_path_and_the_demo(tmp_path):
    command = [sys.executable, os.path.join(ROOT, 'tools', 'train.py'),
               os.path.join(ROOT, 'configs', 'spark', 'r50_pretrain.py'),
               '--work-dir', str(tmp_path / 'work'), '--cfg-options',
               f'train_dataloader.dataset.data_root={tmp_path / "nowhere"}']
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert str(tmp_path / 'nowhere') in last_line
    assert 'configs/spark/demo_r18.py' in last_line
    assert 'Traceback' not in result.stderr


def test_tool_config_shared_by_train_and_test(tmp_path, monkeypatch):
    """tools/common/run_config.load_tool_config: what tools/train.py and tools/test.py share."""
    import argparse

    import tools.common.run_config as run_config
    from tools.common.run_config import load_tool_config, parse_tool_args
    monkeypatch.delenv('LOCAL_RANK', raising=False)
    monkeypatch.chdir(tmp_path)
    config = os.path.join(ROOT, 'configs', 'spark', 'r50_pretrain.py')
    parser = argparse.ArgumentParser()
    parser.add_argument('config')
    parser.add_argument('--work-dir')
    args = parse_tool_args(parser, [config, '--local-rank', '3', '--cfg-options',
                                    'model.neck.width=64'])
    assert os.environ['LOCAL_RANK'] == '3' and args.launcher == 'none'
    messages = []
    monkeypatch.setattr(run_config, 'print_log',
                        lambda message, **kwargs: messages.append(message))
    cfg = load_tool_config(args)
    assert cfg.model.neck.width == 64 and cfg.launcher == 'none'
    assert cfg.work_dir == 'work_dirs/r50_pretrain'  # the config states it
    # the backbone, the decoder and the densifying norms: all BN in one process
    assert cfg.model.backbone.norm_cfg.type == 'BN'
    assert cfg.model.densify_norm_cfg.type == 'BN'
    assert any(m.startswith('single-process run: SyncBN replaced by BN in ')
               for m in messages)
    if not torch.cuda.is_available():
        assert cfg.env_cfg.dist_cfg.backend == 'gloo'

    args.work_dir, args.launcher = str(tmp_path / 'work'), 'pytorch'
    cfg = load_tool_config(args)
    assert cfg.work_dir == str(tmp_path / 'work')  # --work-dir wins
    assert cfg.model.backbone.norm_cfg.type == 'SyncBN'  # kept for several processes

    # a config without work_dir: mmengine's default, work_dirs/<config name>
    args.config = os.path.join(ROOT, 'configs', 'mask_rcnn',
                               'demo_r18_synthetic_coco.py')
    args.work_dir, args.cfg_options = None, None
    assert load_tool_config(args).work_dir == './work_dirs/demo_r18_synthetic_coco'


def test_auto_scale_lr_flag_needs_the_configs_base_batch():
    from mmengine.config import Config

    from spark_mm.errors import SparKInputError
    from tools.train import enable_auto_scale_lr
    cfg = Config.fromfile(os.path.join(
        ROOT, 'configs', 'mask_rcnn', 'mask-rcnn_r50-spark_fpn_syncbn_1x_coco.py'))
    enable_auto_scale_lr(cfg, 'x.py')
    assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=16)
    with pytest.raises(SparKInputError, match='states no auto_scale_lr.base_batch_size'):
        enable_auto_scale_lr(Config(dict(auto_scale_lr=dict(enable=False))), 'x.py')
