"""Bad input ends in one line naming the problem and the fix, not a traceback.

Most cases run tools/train.py's ``main`` in-process (the same code path as the
command line, without paying the start-up of a new interpreter); one runs it
as a real subprocess to check what the user sees on stderr.
"""
import importlib.util
import logging
import os
import sys
import types

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from spark_mm.datasets import LoadImageOrSkip
from spark_mm.checkpoint.loading import load_checkpoint_safely
from spark_mm.engine.nan_guard import NanGuardHook
from spark_mm.errors import NonFiniteLossError
from spark_mm.errors import one_line_message
from spark_mm.registry import DATASETS

from _reliability import (DEMO_CONFIG, ROOT, as_cli, demo_data,  # noqa: F401
                          one_thread, run_train_tool, tiny_cfg, tiny_options)


def _train_tool():
    spec = importlib.util.spec_from_file_location(
        'spark_train_tool', os.path.join(ROOT, 'tools', 'train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_error(argv, monkeypatch, config=DEMO_CONFIG) -> str:
    """The one line tools/train.py exits with."""
    monkeypatch.setattr(sys, 'argv', ['train.py', config] + argv)
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exit_info:
        _train_tool().main()
    message = exit_info.value.code
    assert isinstance(message, str) and message.startswith('error: ')
    assert '\n' not in message
    return message


def tiny(data_root, tmp_path, **options):
    merged = dict(tiny_options(data_root), **options)
    return ['--work-dir', str(tmp_path / 'work')] + as_cli(merged)


# ---- model / input checks ----------------------------------------------------
@pytest.mark.parametrize('options, expected', [
    ({'model.input_size': 65, 'train_dataloader.dataset.pipeline.1.scale': 65},
     "input size 65x65 is not a multiple of the backbone's total stride 32"),
    ({'model.mask_ratio': 1.5}, 'mask_ratio=1.5 is outside (0, 1)'),
    ({'model.mask_ratio': 0.9}, 'leaving no visible patch'),
    ({'model.mask_ratio': 0.1}, 'leaving no masked patch'),
    ({'model.backbone.out_indices': (3,)}, 'returns a single feature map'),
])
def test_model_input_errors_are_one_line(options, expected, demo_data,  # noqa: F811
                                         tmp_path, monkeypatch, one_thread):
    message = train_error(tiny(demo_data, tmp_path, **options), monkeypatch)
    assert expected in message


def test_a_global_context_backbone_is_refused_in_one_line(
        demo_data, tmp_path, monkeypatch, one_thread):  # noqa: F811
    """mmdet's ResNet with mmcv's ContextBlock (softmax attention pooling over
    space, which a mask cannot follow): refused at build, naming the layers."""
    config = tmp_path / 'context_block.py'
    config.write_text(
        f'_base_ = [{DEMO_CONFIG!r}]\n'
        "model = dict(backbone=dict(_delete_=True, type='mmdet.ResNet', depth=50,\n"
        "    out_indices=(0, 1, 2, 3), plugins=[dict(\n"
        "    cfg=dict(type='ContextBlock', ratio=1. / 4), stages=(False, False, True, True),\n"
        "    position='after_conv3')]))\n")
    message = train_error(tiny(demo_data, tmp_path), monkeypatch, config=str(config))
    assert 'SparK cannot make these layers sparse' in message
    assert '(ContextBlock)' in message


@pytest.mark.parametrize('name, text, expected', [
    ('missing.py', None, "config '{path}' does not exist"),
    ('weights.pth', 'not a config', "config '{path}' is not a config file"),
    ('broken.py', 'model = dict(\n', "config '{path}' (or a _base_ it reads) is not valid "
                                     'Python: line 1'),
])
def test_a_file_that_is_not_a_config_is_one_line(name, text, expected, tmp_path,
                                                  monkeypatch):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    message = train_error([], monkeypatch, config=str(path))
    assert message.startswith('error: ' + expected.format(path=path)), message


def test_subprocess_prints_one_line_without_traceback(demo_data, tmp_path):  # noqa: F811
    result = run_train_tool(
        ['python', 'tools/train.py', DEMO_CONFIG] + tiny(
            demo_data, tmp_path, **{'model.input_size': 100}))
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and 'Traceback' not in result.stderr, result.stderr
    assert lines[0].startswith('error: input size 100x100') and '96x96' in lines[0]


# ---- checkpoints: --resume, load_from, export --------------------------------
@pytest.fixture
def good_checkpoint(tmp_path, demo_data, one_thread):  # noqa: F811
    cfg = tiny_cfg(str(tmp_path / 'ref'), demo_data)
    model = Runner.from_cfg(cfg).model
    path = str(tmp_path / 'good.pth')
    torch.save({'meta': {}, 'state_dict': model.state_dict()}, path)
    return path


def test_checkpoint_errors(good_checkpoint, tmp_path, demo_data,  # noqa: F811
                           monkeypatch):
    args = tiny(demo_data, tmp_path)
    missing = str(tmp_path / 'nowhere.pth')
    message = train_error(args + ['--resume', missing], monkeypatch)
    assert 'does not exist' in message and missing in message

    truncated = str(tmp_path / 'truncated.pth')
    with open(good_checkpoint, 'rb') as source, open(truncated, 'wb') as out:
        out.write(source.read()[:5000])
    message = train_error(args + ['--resume', truncated], monkeypatch)
    assert 'cannot be read' in message and 'truncated' in message
    message = train_error(args + ['--cfg-options', f'load_from={truncated}'],
                          monkeypatch)
    assert 'cannot be read' in message and 'truncated' in message

    weights = torch.load(good_checkpoint)['state_dict']
    weights.pop('backbone.conv1.weight')
    weights['backbone.extra.weight'] = torch.zeros(1)
    weights['neck.predict.bias'] = torch.zeros(7)
    mismatched = str(tmp_path / 'mismatched.pth')
    torch.save({'state_dict': weights}, mismatched)
    message = train_error(args + ['--resume', mismatched], monkeypatch)
    assert '1 missing: backbone.conv1.weight' in message
    assert '1 unexpected: backbone.extra.weight' in message
    assert '1 of another shape: neck.predict.bias' in message

    unrelated = str(tmp_path / 'unrelated.pth')
    torch.save({'state_dict': {'fc.weight': torch.zeros(2)}}, unrelated)
    message = train_error(args + ['--cfg-options', f'load_from={unrelated}'],
                          monkeypatch)
    assert 'does not fit the model' in message and 'fc.weight' in message


def test_export_tool_checkpoint_errors(tmp_path, good_checkpoint):
    spec = importlib.util.spec_from_file_location(
        'spark_export_tool', os.path.join(ROOT, 'tools', 'export_backbone.py'))
    export_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(export_tool)
    truncated = str(tmp_path / 'truncated.pth')
    with open(good_checkpoint, 'rb') as source, open(truncated, 'wb') as out:
        out.write(source.read()[:5000])
    for path, expected in ((str(tmp_path / 'nowhere.pth'), 'does not exist'),
                           (truncated, 'cannot be read')):
        with pytest.raises(SystemExit) as exit_info:
            export_tool.main([path, '--out-dir', str(tmp_path / 'export')])
        assert str(exit_info.value.code).startswith('error: ')
        assert expected in str(exit_info.value.code)


# ---- data ----------------------------------------------------------------------
def test_data_root_missing_or_without_images(tmp_path, monkeypatch):
    config = os.path.join(ROOT, 'configs', 'spark', 'r50_pretrain.py')
    missing = str(tmp_path / 'imagenet')
    message = train_error(['--cfg-options',
                           f'train_dataloader.dataset.data_root={missing}'],
                          monkeypatch, config)
    assert 'does not exist' in message and 'demo_r18.py' in message
    empty = tmp_path / 'empty'
    (empty / 'train' / 'n01440764').mkdir(parents=True)
    (empty / 'train' / 'n01440764' / 'README.txt').write_text('no images')
    message = train_error(['--cfg-options',
                           f'train_dataloader.dataset.data_root={empty}'],
                          monkeypatch, config)
    assert 'exists but holds no images' in message


def test_unreadable_image_is_skipped_with_warning_and_counted(tmp_path):
    root = str(tmp_path / 'images')
    pipeline = [dict(type='LoadImageOrSkip'),
                dict(type='RandomResizedCrop', scale=32, backend='pillow'),
                dict(type='PackInputs')]
    with DefaultScope.overwrite_default_scope('spark_mm'):  # as in our configs
        dataset = DATASETS.build(dict(type='SparKDemoImages', data_root=root,
                                      num_images=6, image_size=(40, 40),
                                      pipeline=pipeline))
    broken = os.path.join(root, 'demo_00002.png')
    with open(broken, 'wb') as file:
        file.write(b'\x89PNG\r\n\x1a\n not really an image')
    open(os.path.join(root, 'demo_00004.png'), 'wb').close()  # empty file
    loader = dataset.pipeline.transforms[0]
    assert isinstance(loader, LoadImageOrSkip)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        samples = [dataset[index] for index in range(len(dataset))]
    finally:
        logger.removeHandler(handler)
    assert all(sample['inputs'].shape == (3, 32, 32) for sample in samples)
    # each broken file is met at least once (a redrawn index may hit it again)
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert loader.num_skipped == len(warnings) >= 2
    assert any('demo_00002.png' in w for w in warnings)
    assert any('demo_00004.png' in w for w in warnings)
    assert warnings[0].startswith("skipped unreadable image '")
    assert f'{len(warnings)} skipped so far' in warnings[-1]


def test_pretraining_configs_use_the_skipping_loader():
    from mmengine.config import Config
    for name in ('demo_r18.py', 'r50_pretrain.py', 'convnext_s_pretrain.py'):
        cfg = Config.fromfile(os.path.join(ROOT, 'configs', 'spark', name))
        assert cfg.train_dataloader.dataset.pipeline[0].type == 'LoadImageOrSkip'


# ---- NaN / inf loss ---------------------------------------------------------------
class PoisonAt(Hook):
    """From iteration ``at`` on, the decoder's prediction becomes NaN."""

    def __init__(self, at):
        self.at = at

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == self.at:
            runner.model.neck.register_forward_hook(
                lambda module, args, out: out * float('nan'))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, demo_data,  # noqa: F811
                                                       one_thread):
    work_dir = str(tmp_path / 'work')
    cfg = tiny_cfg(work_dir, demo_data)  # 16 images, 4 iterations per epoch
    runner = Runner.from_cfg(cfg)
    runner.register_hook(PoisonAt(at=5))  # the second iteration of epoch 2
    with pytest.raises(NonFiniteLossError) as error:
        runner.train()
    message = one_line_message(error.value)
    good = os.path.join(work_dir, 'epoch_1.pth')
    assert 'loss=nan at iteration 6 (epoch 2)' in message
    assert f'--resume {good}' in message
    assert not os.path.exists(os.path.join(work_dir, 'epoch_2.pth'))
    with open(os.path.join(work_dir, 'last_checkpoint')) as file:
        assert file.read().strip() == good
    weights = load_checkpoint_safely(good)['state_dict']
    assert all(torch.isfinite(value).all() for value in weights.values()
               if value.is_floating_point())


def test_checkpoint_with_nan_weights_is_refused(tmp_path):
    runner = types.SimpleNamespace(work_dir=str(tmp_path), iter=41)
    checkpoint = {'state_dict': {'ok': torch.ones(2),
                                 'bad': torch.tensor([1.0, float('inf')])}}
    with pytest.raises(NonFiniteLossError, match='weights bad are not finite'):
        NanGuardHook().before_save_checkpoint(runner, checkpoint)
