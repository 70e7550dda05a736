"""The headline flow meets itself: every pretraining config states its
``work_dir``, and every downstream config reads the backbone from exactly the
file that pretraining exports there (``ExportBackboneHook``:
``<work_dir>/backbone.pth``), so

    python tools/train.py configs/spark/r50_pretrain.py
    bash tools/dist_train.sh configs/mask_rcnn/mask-rcnn_r50-spark_fpn_syncbn_1x_coco.py 8

needs no ``--work-dir`` and no ``--cfg-options``.
"""
import glob
import os
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from spark_mm.engine.export_hook import ExportBackboneHook

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, 'configs')
PRETRAIN_CONFIGS = sorted(
    path for path in glob.glob(os.path.join(CONFIGS, 'spark', '**', '*.py'),
                               recursive=True)
    if '_base_' not in path)
DOWNSTREAM_DIRS = ('mask_rcnn', 'imagenet', 'upernet')
# downstream config -> the pretraining config whose export it fine-tunes
PAIRS = {
    'mask_rcnn/mask-rcnn_r50-spark_fpn_syncbn_1x_coco.py': 'r50_pretrain.py',
    'mask_rcnn/mask-rcnn_r50-spark_fpn_syncbn_2x_coco.py': 'r50_pretrain.py',
    'mask_rcnn/mask-rcnn_convnext-b-spark_fpn_ms-crop-3x_coco.py': 'convnext_b_pretrain.py',
    'mask_rcnn/custom_r18_coco.py': 'custom_r18.py',
    'mask_rcnn/custom_r18_gray_coco.py': 'custom_r18_gray.py',
    'mask_rcnn/custom_r18_study_coco.py': 'custom_r18_study.py',
    'mask_rcnn/demo_r18_synthetic_coco.py': 'demo_r18.py',
    'imagenet/resnet50_spark-ft_8xb512-lamb-coslr-300e_in1k.py': 'r50_pretrain.py',
    'imagenet/resnet101_spark-ft_8xb512-lamb-coslr-300e_in1k.py': 'r101_pretrain.py',
    'imagenet/resnet152_spark-ft_8xb512-lamb-coslr-300e_in1k.py': 'r152_pretrain.py',
    'imagenet/resnet200_spark-ft_8xb512-lamb-coslr-300e_in1k.py': 'r200_pretrain.py',
    'imagenet/convnext-s_spark-ft_8xb512-adamw-coslr-400e_in1k.py': 'convnext_s_pretrain.py',
    'imagenet/convnext-b_spark-ft_8xb512-adamw-coslr-400e_in1k.py': 'convnext_b_pretrain.py',
    'imagenet/convnext-l_spark-ft_8xb512-adamw-coslr-200e_in1k.py': 'convnext_l_pretrain.py',
    'imagenet/resnet50_spark-linear_8xb32-sgd-steplr-100e_in1k.py': 'r50_pretrain.py',
    'imagenet/custom_r50_finetune.py': 'custom_r50.py',
    'imagenet/demo_r18_finetune.py': 'demo_r18.py',
    'imagenet/demo_r18_linear.py': 'demo_r18.py',
    'upernet/upernet_r50-spark_4xb4-160k_ade20k-512x512.py': 'r50_pretrain.py',
    'upernet/upernet_convnext-s-spark_8xb2-amp-160k_ade20k-512x512.py': 'convnext_s_pretrain.py',
    'upernet/upernet_convnext-b-spark_8xb2-amp-160k_ade20k-512x512.py': 'convnext_b_pretrain.py',
    'upernet/demo_r18_synthetic_ade20k.py': 'demo_r18.py',
}


def export_path(pretrain_config: str) -> str:
    """Where tools/train.py's run of this config writes the backbone."""
    work_dir = Config.fromfile(pretrain_config).work_dir
    return os.path.normpath(os.path.join(work_dir, ExportBackboneHook().filename))


def backbone_checkpoint(downstream_config: str):
    init_cfg = Config.fromfile(downstream_config).model.backbone.get('init_cfg')
    if not isinstance(init_cfg, dict):  # None, or a list of initialisers
        return None
    checkpoint = init_cfg.get('checkpoint')
    return None if checkpoint is None else os.path.normpath(checkpoint)


@pytest.mark.parametrize('path', PRETRAIN_CONFIGS,
                         ids=lambda p: os.path.relpath(p, CONFIGS))
def test_each_pretraining_config_states_its_own_work_dir(path):
    """mmengine's default name, stated, so that a derived config cannot
    inherit its parent's (demo_r18.py derives from r50_pretrain.py)."""
    cfg = Config.fromfile(path)
    name = os.path.splitext(os.path.basename(path))[0]
    assert cfg.work_dir == f'work_dirs/{name}'
    assert any(hook.type.endswith('ExportBackboneHook')
               for hook in cfg.custom_hooks)


@pytest.mark.parametrize('downstream', sorted(PAIRS))
def test_downstream_config_reads_what_its_pretraining_exports(downstream):
    upstream = os.path.join(CONFIGS, 'spark', PAIRS[downstream])
    assert backbone_checkpoint(os.path.join(CONFIGS, downstream)) == \
        export_path(upstream)


def test_every_downstream_backbone_file_has_its_pretraining():
    """No downstream config reads a backbone.pth that no pretraining writes,
    and none is missing from the pairs above."""
    exports = {export_path(path) for path in PRETRAIN_CONFIGS}
    for directory in DOWNSTREAM_DIRS:
        for path in sorted(glob.glob(os.path.join(CONFIGS, directory, '*.py'))):
            checkpoint = backbone_checkpoint(path)
            if checkpoint is None or not checkpoint.endswith('backbone.pth'):
                continue  # random init, or supervised weights from a file
            assert checkpoint in exports, path
            assert os.path.relpath(path, CONFIGS) in PAIRS, path


@pytest.mark.slow
def test_demo_chain_runs_without_work_dir_flags(tmp_path):
    """A real (tiny) pretraining with no --work-dir, in a fresh folder: the
    downstream demo configs find its export where they look, and it loads
    into their backbones with every key."""
    from mmengine.registry import DefaultScope
    from spark_mm.registry import MODELS
    command = [
        sys.executable, os.path.join(ROOT, 'tools', 'train.py'),
        os.path.join(CONFIGS, 'spark', 'demo_r18.py'), '--cfg-options',
        'train_cfg.max_epochs=1', 'train_dataloader.batch_size=8',
        'train_dataloader.dataset.num_images=16',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'custom_hooks.1.interval=1000', 'log_level=WARNING']
    result = subprocess.run(command, cwd=tmp_path, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    export = tmp_path / 'work_dirs' / 'demo_r18' / 'backbone.pth'
    state = torch.load(export)['state_dict']
    cfg = Config.fromfile(os.path.join(CONFIGS, 'imagenet', 'demo_r18_finetune.py'))
    assert tmp_path / cfg.model.backbone.init_cfg.checkpoint == export
    with DefaultScope.overwrite_default_scope('spark_mm'):
        backbone = MODELS.build(cfg.model.backbone)
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    assert (missing, unexpected) == ([], [])


def test_missing_backbone_file_names_the_command_that_writes_it(tmp_path,
                                                                monkeypatch):
    from spark_mm.errors import CheckpointError
    from tools.common.backbone_files import check_backbone_files
    monkeypatch.chdir(tmp_path)  # no work_dirs/ here
    cfg = Config.fromfile(os.path.join(CONFIGS, 'mask_rcnn',
                                       'demo_r18_synthetic_coco.py'))
    with pytest.raises(CheckpointError, match=(
            r"'work_dirs/demo_r18/backbone.pth' do not exist: "
            r'`python tools/train.py configs/spark/demo_r18.py` writes it')):
        check_backbone_files(cfg)
    export = tmp_path / 'work_dirs' / 'demo_r18' / 'backbone.pth'
    export.parent.mkdir(parents=True)
    export.write_bytes(b'')
    check_backbone_files(cfg)  # present: nothing to say


def test_metafile_lists_the_configs_with_their_lengths_and_pairs():
    """configs/spark/metafile.yml (OpenMMLab's model index): every config
    exists, its epochs/iterations are the config's, and the downstream
    configs of a pretraining read that pretraining's export."""
    import yaml
    with open(os.path.join(ROOT, 'model-index.yml')) as f:
        (metafile, ) = yaml.safe_load(f)['Import']
    with open(os.path.join(ROOT, metafile)) as f:
        models = yaml.safe_load(f)['Models']
    by_name = {model['Name']: model for model in models}
    assert len(by_name) == len(models)
    for model in models:
        cfg = Config.fromfile(os.path.join(ROOT, model['Config']))
        length = model['Metadata'].get('Epochs', model['Metadata'].get('Iterations'))
        assert length == cfg.train_cfg.get('max_epochs', cfg.train_cfg.get('max_iters')), \
            model['Name']
        for name in model.get('Downstream', []):
            downstream = os.path.relpath(os.path.join(ROOT, by_name[name]['Config']), CONFIGS)
            assert PAIRS[downstream] == os.path.basename(model['Config'])
