"""Pictures: reconstruction tool, training hook, mask-vanishing diagnostic, curves.

One real demo pretraining of two iterations (tools/train.py, hook enabled)
provides the checkpoint and the logs for the whole module.
"""
import glob
import json
import os
import os.path as osp
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tools'))
sys.path.insert(0, ROOT)

import diagnose_mask_vanishing  # noqa: E402
import plot_curves  # noqa: E402
import visualize_reconstruction  # noqa: E402
from mmengine.runner import save_checkpoint  # noqa: E402

from spark_mm.engine import ReconstructionVisualizationHook  # noqa: E402
from spark_mm.registry import HOOKS  # noqa: E402
from spark_mm.apis import build_spark  # noqa: E402
from spark_mm.visualization import (MASK_GREY, fixed_mask,  # noqa: E402
                                    grid_size, load_image, panel_box)

# every test here reads the demo run, a tools/train.py subprocess
pytestmark = pytest.mark.slow

DEMO_CONFIG = osp.join(ROOT, 'configs', 'spark', 'demo_r18.py')
SIZE = 96        # the demo config's input size
STRIDE = 32


@pytest.fixture(scope='module')
def demo_run(tmp_path_factory):
    """Two iterations of the demo pretraining on 8 fresh demo images."""
    root = tmp_path_factory.mktemp('demo_run')
    work_dir, data_root = root / 'work', root / 'images'
    command = [
        sys.executable, osp.join(ROOT, 'tools', 'train.py'), DEMO_CONFIG,
        '--work-dir', str(work_dir), '--cfg-options',
        'train_cfg.max_epochs=1', 'train_dataloader.batch_size=4',
        f'train_dataloader.dataset.data_root={data_root}',
        'train_dataloader.dataset.num_images=8',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'default_hooks.logger.interval=1', 'custom_hooks.1.interval=1']
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    images = sorted(str(data_root / name) for name in os.listdir(data_root))
    return SimpleNamespace(work_dir=str(work_dir), images=images,
                           checkpoint=str(work_dir / 'epoch_1.pth'))


def _png(path):
    with Image.open(path) as image:
        return np.asarray(image.convert('RGB'))


def _panels(grid, row, height, width):
    return [grid[slice(*box[::2]), slice(*box[1::2])]
            for box in (panel_box(row, column, height, width) for column in range(4))]


def _visible_from_panel(masked, stride=STRIDE):
    """Visible pixels (H, W) bool: those outside the all-grey patches."""
    height, width = masked.shape[:2]
    grey = (masked == MASK_GREY).all(-1).reshape(
        height // stride, stride, width // stride, stride).all(axis=(1, 3))
    return ~np.kron(grey, np.ones((stride, stride), dtype=bool)).astype(bool)


def _visible_pixels(active_1hw, stride=STRIDE):
    return (active_1hw[0].repeat_interleave(stride, 0)
            .repeat_interleave(stride, 1).numpy())


# ---- reconstruction tool ------------------------------------------------------
def test_reconstruction_grid_panels(demo_run, tmp_path):
    written = visualize_reconstruction.main(
        [DEMO_CONFIG, demo_run.checkpoint, *demo_run.images[:2],
         '--out-dir', str(tmp_path), '--seed', '3'])
    assert [osp.basename(p) for p in written] == [
        osp.basename(p) for p in demo_run.images[:2]]
    model = build_spark(DEMO_CONFIG, demo_run.checkpoint)
    active = fixed_mask(model, 1, SIZE, SIZE, seed=3)
    visible = _visible_pixels(active[0])
    assert 0 < visible.mean() < 1
    for path, source in zip(written, demo_run.images):
        grid = _png(path)
        assert grid.shape[:2] == grid_size(1, SIZE, SIZE)
        masked, pred, pred_visible, raw = _panels(grid, 0, SIZE, SIZE)
        # the input panel is the (resized) image itself, in real colours
        np.testing.assert_array_equal(raw, load_image(source, (SIZE, SIZE)))
        np.testing.assert_array_equal(pred_visible[visible], raw[visible])
        np.testing.assert_array_equal(pred_visible[~visible], pred[~visible])
        np.testing.assert_array_equal(masked[visible], raw[visible])
        assert (masked[~visible] == MASK_GREY).all()
        assert not np.array_equal(pred, raw)


def test_reconstruction_non_square_one_grid_folder(demo_run, tmp_path):
    folder = osp.dirname(demo_run.images[0])
    written = visualize_reconstruction.main(
        [DEMO_CONFIG, demo_run.checkpoint, folder, '--out-dir', str(tmp_path),
         '--one-grid', '--size', '64', '160', '--mask-ratio', '0.5', '--seed', '1'])
    assert len(written) == 1
    grid = _png(written[0])
    assert grid.shape[:2] == grid_size(len(demo_run.images), 64, 160)
    for row in (0, len(demo_run.images) - 1):
        masked, _, pred_visible, raw = _panels(grid, row, 64, 160)
        visible = _visible_from_panel(masked)
        # 2x5 patches at ratio 0.5: 5 greyed patches of 32x32
        assert visible.sum() == 5 * 32 * 32
        np.testing.assert_array_equal(pred_visible[visible], raw[visible])


def test_reconstruction_bad_size_is_a_clear_error(demo_run, tmp_path):
    with pytest.raises(SystemExit, match='multiple of'):
        visualize_reconstruction.main(
            [DEMO_CONFIG, demo_run.checkpoint, demo_run.images[0],
             '--out-dir', str(tmp_path), '--size', '100'])


# ---- training hook ------------------------------------------------------------
def test_hook_in_training_run(demo_run):
    pictures = sorted(os.listdir(osp.join(demo_run.work_dir, 'reconstructions')))
    assert pictures == ['iter_000001.png', 'iter_000002.png']
    grid = _png(osp.join(demo_run.work_dir, 'reconstructions', pictures[-1]))
    assert grid.shape[:2] == grid_size(4, SIZE, SIZE)
    vis_images = [name for root, _, names in os.walk(demo_run.work_dir)
                  for name in names if root.endswith('vis_image')]
    assert 'reconstruction_2.png' in vis_images


def test_hook_restores_mode_and_rng(tmp_path, demo_run):
    model = build_spark(DEMO_CONFIG, demo_run.checkpoint).train()
    added = []
    runner = SimpleNamespace(
        model=model, work_dir=str(tmp_path), iter=7,
        train_dataloader=SimpleNamespace(dataset=_Dataset(demo_run.images[:3])),
        visualizer=SimpleNamespace(add_image=lambda *a, **k: added.append((a, k))),
        logger=SimpleNamespace(info=lambda message: None))
    hook = HOOKS.build(dict(type='ReconstructionVisualizationHook', interval=4,
                            num_images=2))
    assert isinstance(hook, ReconstructionVisualizationHook)
    hook.before_train(runner)
    state = torch.get_rng_state()
    hook.after_train_iter(runner, batch_idx=0)  # iteration 8 of every 4
    assert torch.equal(torch.get_rng_state(), state)
    assert model.training
    path = tmp_path / 'reconstructions' / 'iter_000008.png'
    assert _png(path).shape[:2] == grid_size(2, SIZE, SIZE)
    (name, image), kwargs = added[0]
    assert name == 'reconstruction' and kwargs['step'] == 8 and image.dtype == np.uint8
    runner.iter = 8
    hook.after_train(runner)  # same weights as iteration 8: not drawn twice
    assert len(added) == 1


class _Dataset:
    def __init__(self, paths):
        self.paths = paths

    def __len__(self):
        return len(self.paths)

    def get_data_info(self, index):
        return dict(img_path=self.paths[index])


# ---- mask-vanishing diagnostic ------------------------------------------------
def test_diagnostic_sparse_keeps_all_zeros_dense_does_not(demo_run, tmp_path, capsys):
    out = tmp_path / 'vanishing.png'
    rows = diagnose_mask_vanishing.main(
        [DEMO_CONFIG, '--checkpoint', demo_run.checkpoint, '--image',
         demo_run.images[0], '--size', '128', '--out', str(out)])
    assert [row['stride'] for row in rows] == [4, 8, 16, 32]
    assert all(row['sparse'] == 100.0 for row in rows)
    assert all(row['dense'] < 100.0 for row in rows)
    table = capsys.readouterr().out
    assert 'sparse % zeros kept' in table and '100.0' in table
    width, height = Image.open(out).size
    assert width > 400 and height > 200


# ---- ConvNeXt -----------------------------------------------------------------
def test_convnext_tools(tmp_path, demo_run):
    config = tmp_path / 'convnext_demo.py'
    config.write_text(
        f"_base_ = [{DEMO_CONFIG!r}]\n"
        "model = dict(\n"
        "    backbone=dict(_delete_=True, type='ConvNeXt',\n"
        "                  arch=dict(depths=[1, 1, 1, 1], channels=[16, 32, 64, 128]),\n"
        "                  out_indices=(0, 1, 2, 3), gap_before_final_norm=False),\n"
        "    neck=dict(width=64),\n"
        "    densify_norm_cfg=dict(type='LN2d', eps=1e-6))\n")
    checkpoint = str(tmp_path / 'convnext.pth')
    save_checkpoint(build_spark(str(config)).state_dict(), checkpoint)
    written = visualize_reconstruction.main(
        [str(config), checkpoint, demo_run.images[0], '--out-dir', str(tmp_path),
         '--size', '64', '128'])
    grid = _png(written[0])
    assert grid.shape[:2] == grid_size(1, 64, 128)
    masked, _, pred_visible, raw = _panels(grid, 0, 64, 128)
    visible = _visible_from_panel(masked)
    assert 0 < visible.mean() < 1
    np.testing.assert_array_equal(pred_visible[visible], raw[visible])
    rows = diagnose_mask_vanishing.diagnose(str(config), checkpoint,
                                            size=(64, 128), out=None)
    assert all(row['sparse'] == 100.0 for row in rows)
    assert all(row['dense'] < 100.0 for row in rows)


# ---- curves -------------------------------------------------------------------
def test_curves_from_work_dir(demo_run, tmp_path):
    """mmpretrain's plotting of the run's scalars.json, one panel per key:
    what is drawn is what the log holds (read here line by line)."""
    out = tmp_path / 'curves.png'
    plot_curves.main([demo_run.work_dir, '--out', str(out)])
    data = plot_curves.plot_curves(demo_run.work_dir, str(out))
    scalars, = glob.glob(osp.join(demo_run.work_dir, '*', 'vis_data', 'scalars.json'))
    with open(scalars) as f:
        logged = [json.loads(line) for line in f if '"lr"' in line]
    for key in ('loss', 'lr'):
        assert data[key][1] == [row[key] for row in logged], key
    # x in epochs (mmpretrain scales the steps of an epoch-based run)
    assert data['loss'][0] == [row['step'] / logged[-1]['step'] * logged[-1]['epoch']
                               for row in logged]
    assert Image.open(out).size == (672, 256)
    with pytest.raises(SystemExit, match='no vis_data'):
        plot_curves.main([str(tmp_path), '--out', str(out)])
    with pytest.raises(SystemExit, match=r'error: .*scalars.json: Invalid key "top9"'):
        plot_curves.main([demo_run.work_dir, '--out', str(out), '--keys', 'top9'])
    cut_off = tmp_path / 'cut' / 'run' / 'vis_data' / 'scalars.json'
    cut_off.parent.mkdir(parents=True)
    with open(scalars) as f:
        cut_off.write_text(f.read()[:-7])  # a run killed while writing its log
    with pytest.raises(SystemExit, match=r'error: .*scalars.json is not a log of mmengine scalars'):
        plot_curves.main([str(tmp_path / 'cut'), '--out', str(out)])
