"""tools/test.py takes mmdet's --show/--show-dir/--wait-time/--tta."""
import os

import pytest

from mmengine.config import Config

from spark_mm.errors import SparKInputError
from tools.common.test_options import draw_predictions
from tools.test import build_config, parse_args

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_DETECTOR = os.path.join(ROOT, 'configs', 'mask_rcnn', 'demo_r18_synthetic_coco.py')


def test_show_flags_switch_on_mmdets_visualization_hook(tmp_path):
    cfg = build_config(parse_args([DEMO_DETECTOR, 'x.pth', '--show-dir',
                                   str(tmp_path), '--show', '--wait-time', '0.5']))
    hook = cfg.default_hooks.visualization
    assert hook.type == 'DetVisualizationHook'
    assert (hook.draw, hook.show, hook.wait_time, hook.test_out_dir) == (
        True, True, 0.5, str(tmp_path))


def test_tta_wraps_the_model_with_mmdets_flip_default():
    cfg = build_config(parse_args([DEMO_DETECTOR, 'x.pth', '--tta']))
    assert cfg.model.type == 'DetTTAModel'
    assert cfg.model.module.type == 'MaskRCNN'
    last = cfg.test_dataloader.dataset.pipeline[-1]
    assert last.type == 'TestTimeAug'
    assert [t['prob'] for t in last.transforms[0]] == [1.0, 0.0]


def test_show_dir_on_a_config_without_a_visualization_hook_is_one_line():
    args = parse_args([DEMO_DETECTOR, 'x.pth', '--show-dir', 'vis'])
    cfg = Config(dict(default_hooks=dict(logger=dict(type='LoggerHook'))))
    with pytest.raises(SparKInputError, match='has no default_hooks.visualization'):
        draw_predictions(cfg, args)
