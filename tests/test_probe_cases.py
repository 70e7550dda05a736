"""The bad inputs and faults of issue 23's probe, one test each: every case
ends in one line that names the problem and the fix, and loses nothing.

(The ViT / CoAtNet backbone case belongs to the any-CNN work on
spark_mm/models and is not tested here.)
"""
import importlib.util
import logging
import os
import pickle
import sys
import warnings

import pytest
import torch
from mmengine.logging import MMLogger
from PIL import Image

from spark_mm.checkpoint.loading import load_checkpoint_safely
from spark_mm.checkpoint.sources import read_backbone
from spark_mm.datasets.image_folder import list_image_files
from spark_mm.datasets.loader_settings import (
    check_batch_fits_dataset, drop_persistent_workers_without_workers)
from spark_mm.datasets.synthetic import make_synthetic_coco
from spark_mm.engine.work_dir import LOCK_NAME, claim_work_dir
from spark_mm.errors import CheckpointError, SparKInputError

from _reliability import (DEMO_CONFIG, ROOT, demo_data,  # noqa: F401
                          hold_work_dir_lock, one_thread, run_train_tool)
from test_bad_input import tiny, train_error

MASK_RCNN_DEMO = os.path.join(ROOT, 'configs', 'mask_rcnn',
                              'demo_r18_synthetic_coco.py')


def _tool(name):
    spec = importlib.util.spec_from_file_location(
        f'spark_probe_{name}', os.path.join(ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Lines(logging.Handler):
    """The lines logged through mmengine's current logger."""

    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append((record.levelno, record.getMessage()))


@pytest.fixture
def logged():
    handler = _Lines()
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


def _timm_resnet18():
    """The official SparK ResNet encoder's layout: timm, no classifier."""
    import timm
    return timm.create_model('resnet18', pretrained=False, num_classes=0,
                             global_pool='')


# ---- NaN checkpoint: export refuses --------------------------------------
def test_export_refuses_a_checkpoint_with_nan_weights(tmp_path):
    weights = _timm_resnet18().state_dict()
    for key in list(weights)[:100]:  # the probe: 100 of 120 tensors NaN
        if weights[key].is_floating_point():
            weights[key] = torch.full_like(weights[key], float('nan'))
    weights['layer4.1.bn2.bias'][0] = float('inf')
    path = tmp_path / 'diverged.pth'
    torch.save(weights, path)
    out_dir = tmp_path / 'export'
    with pytest.raises(SystemExit) as exit_info:
        _tool('export_backbone').main([str(path), '--out-dir', str(out_dir)])
    message = str(exit_info.value.code)
    broken = sum(1 for value in weights.values()
                 if value.is_floating_point() and not torch.isfinite(value).all())
    assert message.startswith('error: ') and '\n' not in message
    assert f'{broken} of {len(weights)} tensors hold NaN or inf' in message
    assert 'nothing written' in message
    assert not out_dir.exists() or not os.listdir(out_dir)


# ---- tools/test.py with a checkpoint of another model --------------------
@pytest.fixture(scope='module')
def tiny_coco(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('probe_coco')) + '/'
    make_synthetic_coco(root, num_train=2, num_val=1, image_size=(64, 80))
    return root


def _test_argv(tiny_coco, checkpoint, work_dir, *extra):
    return [MASK_RCNN_DEMO, str(checkpoint), '--work-dir', str(work_dir),
            '--data-root', tiny_coco, *extra, '--cfg-options',
            'model.backbone.init_cfg=None', 'log_level=WARNING']


@pytest.mark.slow
def test_test_tool_refuses_a_checkpoint_that_does_not_fit(
        tmp_path, tiny_coco, one_thread):  # noqa: F811
    """A backbone-only checkpoint for the Mask R-CNN demo: neck and heads
    would stay random (mAP 0, exit 0 before). One line with a short key
    summary; ``--allow-partial-checkpoint`` evaluates anyway."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    cfg = Config.fromfile(MASK_RCNN_DEMO)
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    backbone_only = {key: value for key, value in model.state_dict().items()
                     if key.startswith('backbone.')}
    path = tmp_path / 'backbone_only.pth'
    torch.save({'state_dict': backbone_only}, path)
    test_tool = _tool('test')
    with pytest.raises(SystemExit) as exit_info:
        test_tool.main(_test_argv(tiny_coco, path, tmp_path / 'refused'))
    message = str(exit_info.value.code)
    missing = sum(1 for key in model.state_dict() if key not in backbone_only
                  and not key.endswith('num_batches_tracked'))
    assert message.startswith('error: ') and '\n' not in message
    assert (f'does not fit the model of this config: {missing} of '
            f'{len(model.state_dict())} weights missing: neck.* (') in message
    assert 'rpn_head.* (' in message and 'roi_head.* (' in message
    assert len(message) < 400
    assert '--allow-partial-checkpoint' in message

    metrics = test_tool.main(_test_argv(tiny_coco, path, tmp_path / 'partial',
                                        '--allow-partial-checkpoint'))
    assert 'coco/bbox_mAP' in metrics


# ---- symlink loop in a data root -----------------------------------------
def test_symlink_loop_in_a_data_root_is_read_once(tmp_path, logged):
    root = tmp_path / 'images'
    (root / 'sub').mkdir(parents=True)
    for name in ('a.png', 'b.png', 'sub/c.png'):
        Image.new('RGB', (40, 40)).save(root / name)
    os.symlink('..', root / 'sub' / 'loop')  # images/sub/loop -> images
    (tmp_path / 'elsewhere').mkdir()
    Image.new('RGB', (40, 40)).save(tmp_path / 'elsewhere' / 'd.png')
    os.symlink(tmp_path / 'elsewhere', root / 'linked')  # a plain link: read
    found = list_image_files(str(root))
    assert sorted(os.path.relpath(path, root) for path in found) == [
        'a.png', 'b.png', 'linked/d.png', 'sub/c.png']
    warned = [message for level, message in logged
              if level == logging.WARNING]
    assert len(warned) == 1
    assert '1 folder(s) reached again through a symlink, not read twice' in \
        warned[0] and str(root / 'sub' / 'loop') in warned[0]


# ---- unreadable checkpoints: no weights_only advice, no stray warning ----
class _Evil:
    def __reduce__(self):
        return (os.system, ('echo owned',))


def test_forbidden_pickle_is_refused_for_safety_without_torch_advice(tmp_path):
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {}, 'x': _Evil()}, path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint_safely(path)
    message = str(error.value)
    assert 'was refused for safety' in message and 'system' in message
    assert 'nothing of it was run' in message
    assert 'weights_only' not in message and '\n' not in message


def test_raw_pickle_is_one_line_without_a_stray_warning(tmp_path, capfd):
    path = str(tmp_path / 'model_final.pkl')
    with open(path, 'wb') as file:  # what Detectron2 and others write
        pickle.dump({'model': {'conv1.weight': torch.zeros(2).numpy()}}, file,
                    protocol=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        with pytest.raises(CheckpointError) as error:
            load_checkpoint_safely(path)
    assert not caught, [str(warning.message) for warning in caught]
    assert capfd.readouterr().err == ''
    message = str(error.value)
    assert 'is a plain pickle, not a PyTorch checkpoint' in message
    assert 'weights_only' not in message and '\n' not in message


def test_truncated_checkpoint_reason_without_torch_advice(tmp_path):
    good = str(tmp_path / 'good.pth')
    torch.save({'state_dict': {'w': torch.zeros(100)}}, good)
    truncated = str(tmp_path / 'truncated.pth')
    with open(good, 'rb') as source, open(truncated, 'wb') as out:
        out.write(source.read()[:300])
    with pytest.raises(CheckpointError) as error:
        load_checkpoint_safely(truncated)
    message = str(error.value)
    assert 'cannot be read' in message and 'truncated' in message
    assert 'weights_only' not in message and '\n' not in message


# ---- read-only work dir, unknown type, persistent workers without workers
def test_unwritable_work_dir_is_one_line(demo_data, tmp_path, monkeypatch):  # noqa: F811
    blocker = tmp_path / 'a_file'
    blocker.write_text('not a folder')
    message = train_error(tiny(demo_data, tmp_path) + [
        '--work-dir', str(blocker / 'work')], monkeypatch)
    assert f"cannot write to the work dir '{blocker / 'work'}'" in message
    assert 'pass a writable folder with --work-dir' in message
    if os.geteuid() != 0:  # root writes into read-only folders anyway
        readonly = tmp_path / 'readonly'
        readonly.mkdir(mode=0o555)
        message = train_error(tiny(demo_data, tmp_path) + [
            '--work-dir', str(readonly)], monkeypatch)
        assert 'cannot write to the work dir' in message


def test_unknown_backbone_type_is_one_line(demo_data, tmp_path):  # noqa: F811
    result = run_train_tool(['python', 'tools/train.py', DEMO_CONFIG] + tiny(
        demo_data, tmp_path, **{'model.backbone.type': 'NoSuchNet'}))
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(
        "error: unknown type 'NoSuchNet' in the config"), result.stderr
    assert 'custom_imports' in lines[0]


def test_persistent_workers_without_workers_is_dropped(logged):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = True
    cfg.train_dataloader.dataset.num_images = 4
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        with pytest.raises(ValueError, match='persistent_workers'):
            Runner.build_dataloader(cfg.train_dataloader)  # the probe's case
        drop_persistent_workers_without_workers(cfg)
        assert cfg.train_dataloader.persistent_workers is False
        assert [message for _, message in logged
                if 'persistent_workers' in message] == [
            'train_dataloader: num_workers=0, so persistent_workers=True is '
            'dropped (there are no workers to keep)']
        assert len(Runner.build_dataloader(cfg.train_dataloader)) == 1


# ---- batch larger than the dataset ---------------------------------------
def test_batch_larger_than_the_dataset_warns_or_refuses(logged):
    samples = list(range(5))
    check_batch_fits_dataset(torch.utils.data.DataLoader(samples, batch_size=5))
    assert not logged
    check_batch_fits_dataset(torch.utils.data.DataLoader(samples, batch_size=8))
    (level, message), = logged
    assert level == logging.WARNING
    assert ('a batch of 8 per process x 1 process(es) is more than the 5 '
            'training samples: every epoch is 1 short batch(es); lower '
            'train_dataloader.batch_size to 5') in message
    with pytest.raises(SparKInputError, match='with drop_last no batch is '
                       'ever complete, so nothing would train: lower '
                       'train_dataloader.batch_size to 2'):
        check_batch_fits_dataset(torch.utils.data.DataLoader(
            samples, batch_size=3, drop_last=True), world_size=2)


# ---- --resume on an empty work dir ---------------------------------------
@pytest.mark.slow
def test_resume_in_an_empty_work_dir_starts_fresh(demo_data, tmp_path):  # noqa: F811
    work_dir = tmp_path / 'work'
    result = run_train_tool(['python', 'tools/train.py', DEMO_CONFIG,
                             '--resume'] + tiny(
        demo_data, tmp_path, **{'train_cfg.max_epochs': 1,
                                'log_level': 'INFO'}))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert (f'--resume: nothing to resume in {work_dir} (no checkpoint yet); '
            'starting fresh') in output
    assert 'checkpoint None' not in output
    assert os.path.isfile(work_dir / 'epoch_1.pth')


# ---- a torchvision state dict is not an official SparK release -----------
def test_torchvision_state_dict_is_not_called_an_official_release(tmp_path):
    import torchvision
    supervised = read_backbone(torchvision.models.resnet18().state_dict())
    assert supervised.source == 'resnet-classifier'
    assert 'official SparK ResNet release' not in supervised.description
    assert 'not an official SparK release' in supervised.description
    assert supervised.dropped == {'classifier head': ['fc.weight', 'fc.bias']}
    official = read_backbone(_timm_resnet18().state_dict())
    assert official.description == (
        'official SparK ResNet release (timm ResNet names)')


# ---- two runs on one work dir --------------------------------------------
def test_second_run_on_a_work_dir_is_refused_naming_the_first(tmp_path):
    work_dir = str(tmp_path / 'work')
    holder = hold_work_dir_lock(work_dir, 120)
    try:
        with pytest.raises(SparKInputError) as error:
            claim_work_dir(work_dir)
        message = str(error.value)
        assert f"work dir '{work_dir}' is in use by process {holder.pid} on " \
            in message
        assert 'wait for it to end or pass another --work-dir' in message
    finally:
        holder.kill()
        holder.wait()
    # the lock went with the process: no stale lock after a kill
    lock = claim_work_dir(work_dir)
    with open(os.path.join(work_dir, LOCK_NAME)) as file:
        assert file.read().startswith(f'process {os.getpid()} on ')
    lock.close()
