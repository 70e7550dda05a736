"""A GPU run of a detection/segmentation config with CPU-only mmcv ops stops at
start with one line (spark_mm/engine/mmcv_ops_check.py, called by tools/train.py
and tools/test.py). The GPU is faked: torch.cuda.is_available is patched."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from spark_mm.engine import mmcv_ops_check as check

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DET = osp.join(ROOT, 'configs', 'mask_rcnn', 'demo_r18_synthetic_coco.py')
SEG = osp.join(ROOT, 'configs', 'upernet', 'demo_r18_synthetic_ade20k.py')
SPARK = osp.join(ROOT, 'configs', 'spark', 'demo_r18.py')


@pytest.mark.parametrize('cfg,scope', [
    (dict(default_scope='mmdet', model=dict(type='MaskRCNN')), 'mmdet'),
    (dict(default_scope='mmseg', model=dict(type='EncoderDecoder')), 'mmseg'),
    (dict(default_scope='spark_mm', model=dict(type='mmdet.MaskRCNN')), 'mmdet'),
    (dict(default_scope='spark_mm', model=dict(type='SparK')), None),
    (dict(default_scope='mmpretrain', model=dict(type='ImageClassifier')), None),
    (dict(model=dict(type='MaskRCNN')), None),
    (dict(), None),
])
def test_config_needs_mmcv_ops(cfg, scope):
    assert check.config_needs_mmcv_ops(Config(cfg)) == scope


def test_the_shipped_configs():
    assert check.config_needs_mmcv_ops(Config.fromfile(DET)) == 'mmdet'
    assert check.config_needs_mmcv_ops(Config.fromfile(SEG)) == 'mmseg'
    assert check.config_needs_mmcv_ops(Config.fromfile(SPARK)) is None


DET_CFG = Config(dict(default_scope='mmdet', model=dict(type='MaskRCNN')))


@pytest.mark.parametrize('cuda,ops,expected', [
    (True, 'not available', "mmcv's ops were built without CUDA, so this mmdet config"),
    (True, None, 'mmcv has no compiled ops, which this mmdet config needs'),
    (True, '13.0', None),
    (False, 'not available', None),  # on the CPU, CPU ops are what it needs
    (False, None, None),
])
def test_mmcv_cuda_ops_problem(cuda, ops, expected):
    problem = check.mmcv_cuda_ops_problem(DET_CFG, cuda, ops)
    if expected is None:
        assert problem is None
    else:
        assert problem.startswith(expected)
        assert problem.count('\n') == 0
        assert 'rebuild with: SPARK_MM_SETUP_FORCE=1 bash tools/setup_env.sh' in problem


def test_require_exits_with_one_line_on_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(check, 'mmcv_ops_cuda_version', lambda: 'not available')
    with pytest.raises(SystemExit) as exit_info:
        check.require_mmcv_cuda_ops(DET_CFG)
    message = exit_info.value.code
    assert isinstance(message, str) and message.startswith('error: ')  # sys.exit(str): status 1
    assert message.count('\n') == 0
    monkeypatch.setattr(check, 'mmcv_ops_cuda_version', lambda: '13.0')
    assert check.require_mmcv_cuda_ops(DET_CFG) is None


def test_require_probes_nothing_without_gpu_or_ops_scope(monkeypatch):
    def fail():
        raise AssertionError('mmcv probed although it cannot matter')

    monkeypatch.setattr(check, 'mmcv_ops_cuda_version', fail)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    check.require_mmcv_cuda_ops(DET_CFG)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    check.require_mmcv_cuda_ops(Config(dict(default_scope='spark_mm', model=dict(type='SparK'))))


def test_real_probe_reports_the_cpu_build():
    # the test venv's mmcv was built without CUDA (a machine without GPU): no mock
    version = check.mmcv_ops_cuda_version()
    assert version is not None
    if not torch.cuda.is_available():
        assert version == check.NO_CUDA


# tools/*.py under a faked GPU: the real (CPU-only) mmcv ops, the real config
# loading; the check fires before any model or data is built.
FAKE_GPU_RUN = ('import runpy, sys, torch\n'
                'torch.cuda.is_available = lambda: True\n'
                'torch.cuda.device_count = lambda: 1\n'  # mmengine's logger asks
                'sys.argv = sys.argv[1:]\n'
                'runpy.run_path(sys.argv[0], run_name="__main__")\n')


@pytest.mark.skipif(check.mmcv_ops_cuda_version() != check.NO_CUDA,
                    reason='needs the CPU-only mmcv build of a machine without GPU')
@pytest.mark.parametrize('tool,config', [('test', DET), ('train', SEG)])
def test_tools_stop_at_start_on_a_gpu(tool, config, tmp_path):
    args = [osp.join(ROOT, 'tools', f'{tool}.py'), config, '--work-dir', str(tmp_path)]
    if tool == 'test':
        checkpoint = tmp_path / 'any.pth'
        checkpoint.write_bytes(b'not read')
        args.insert(2, str(checkpoint))
    run = subprocess.run([sys.executable, '-c', FAKE_GPU_RUN] + args, cwd=str(tmp_path),
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert run.returncode == 1, run.stderr[-2000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: mmcv's ops were built without CUDA"), run.stderr[-2000:]
    assert 'SPARK_MM_SETUP_FORCE=1 bash tools/setup_env.sh' in last
    assert 'Traceback' not in run.stderr
