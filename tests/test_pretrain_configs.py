"""The full-size pretraining configs hold the paper's recipe and build."""
import os

import pytest
from mmengine.config import Config

from spark_mm.models.sparse import SparseMixin
from spark_mm.registry import MODELS

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          'configs', 'spark')
DROP_PATH = {'r50': 0.05, 'r101': 0.08, 'r152': 0.10, 'r200': 0.15,
             'convnext_s': 0.2, 'convnext_b': 0.3, 'convnext_l': 0.4}


def load(name):
    return Config.fromfile(os.path.join(CONFIG_DIR, f'{name}_pretrain.py'))


def test_r50_holds_the_official_recipe():
    cfg = load('r50')
    optimizer = cfg.optim_wrapper.optimizer
    assert optimizer.type == 'Lamb'
    assert optimizer.lr == pytest.approx(2e-4 * 4096 / 256)
    assert optimizer.betas == (0.9, 0.95) and optimizer.weight_decay == 0.04
    # clipped once, at 5, inside LAMB (lamb step: tests/test_fidelity.py)
    assert optimizer.max_grad_norm == 5.0 and 'clip_grad' not in cfg.optim_wrapper
    # the official per-iteration formulas (their values: tests/test_fidelity.py)
    lr, weight_decay = cfg.param_scheduler
    assert (lr.type, lr.warmup, lr.begin, lr.end) == ('SparKWarmupCosineLR', 40, 0, 1600)
    assert (weight_decay.type, weight_decay.end_value, weight_decay.end) == (
        'SparKCosineWeightDecay', 0.2, 1600)
    assert all(s.by_epoch and s.convert_to_iter_based for s in cfg.param_scheduler)
    assert cfg.train_cfg.max_epochs == 1600
    assert cfg.auto_scale_lr.base_batch_size == 4096
    model = cfg.model
    assert model.mask_ratio == 0.6 and model.neck.width == 768
    assert model.backbone.norm_cfg.type == 'SyncBN'
    crop = cfg.train_dataloader.dataset.pipeline[1]
    assert crop.type == 'RandomResizedCrop' and crop.crop_ratio_range == (0.67, 1.0)
    assert [t.type for t in cfg.train_dataloader.dataset.pipeline][2] == 'RandomFlip'
    assert cfg.train_dataloader.dataset.data_root == 'data/imagenet'


@pytest.mark.slow
@pytest.mark.parametrize('name', list(DROP_PATH))
def test_config_builds_a_sparse_model_with_its_drop_path(name):
    cfg = load(name)
    assert cfg.model.backbone.drop_path_rate == pytest.approx(DROP_PATH[name])
    model = MODELS.build(cfg.model)
    sparse_layers = [m for m in model.backbone.modules() if isinstance(m, SparseMixin)]
    assert len(sparse_layers) > 50
    assert model.total_stride == 32
    assert len(model.densify.mask_tokens) == 4
    assert model.neck.widths[0] == 768


@pytest.mark.parametrize('name,check', [
    ('zero_outing', lambda m: m.sparse is False),
    ('no_hierarchy', lambda m: m.hierarchical is False),
    ('pos_embed', lambda m: m.use_pos_embed is True),
    ('loss_all_patches', lambda m: m.head.masked_only is False),
])
def test_ablation_configs_flip_one_switch(name, check):
    cfg = Config.fromfile(os.path.join(CONFIG_DIR, 'ablations', f'convnext_s_{name}.py'))
    assert check(cfg.model)
    assert cfg.model.backbone.arch == 'small' and cfg.train_cfg.max_epochs == 1600


def test_800_epoch_ablation_rescales_the_schedule():
    cfg = Config.fromfile(os.path.join(CONFIG_DIR, 'ablations', 'convnext_s_800e.py'))
    assert cfg.train_cfg.max_epochs == 800
    assert [s.end for s in cfg.param_scheduler] == [800, 800]
    assert cfg.param_scheduler[0].warmup == 40


def test_demo_schedule_is_the_recipe_shape_with_its_own_epochs():
    cfg = Config.fromfile(os.path.join(CONFIG_DIR, 'demo_r18.py'))
    lr, weight_decay = cfg.param_scheduler
    assert cfg.train_cfg.max_epochs == 12
    assert (lr.warmup, lr.begin, lr.end) == (1, 0, 12)
    assert (weight_decay.begin, weight_decay.end) == (0, 12)
    assert all(s.by_epoch and s.convert_to_iter_based for s in cfg.param_scheduler)
