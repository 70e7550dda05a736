"""tools/transfer_study.py on a tiny setting (random + SparK, 1 seed, a few
iterations) through the real tools, interrupted after its first run and
resumed; its table, CSV, chart and result files; refusal to mix settings."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'tools'))

from spark_mm.datasets.synthetic.study_scenes import (  # noqa: E402
    STUDY_SETTINGS, draw_scene, make_study_data, study_data_matches)

import transfer_study  # noqa: E402  (tools/transfer_study.py)

ENV = dict(os.environ, OMP_NUM_THREADS='1')


def study_command(work_dir, data, *extra):
    return [sys.executable, 'tools/transfer_study.py', '--work-dir', str(work_dir),
            '--unlabeled', str(data / 'unlabeled'), '--coco', str(data / 'coco'),
            '--inits', 'random', 'spark', '--seeds', '1', '--pretrain-epochs', '2',
            '--finetune-iters', '3', '--jobs', '2', '--poll', '0.3',
            '--pretrain-options', 'train_dataloader.batch_size=4',
            'model.neck.width=64', 'train_dataloader.persistent_workers=False',
            '--finetune-options', 'custom_hooks.0.num_iters=1', *extra]


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('study') / 'data'
    make_study_data(str(root), num_unlabeled=12, num_train=4, num_val=4,
                    labelled_size=(96, 128))
    return root


def test_generator_is_deterministic_and_annotated(tmp_path, data):
    make_study_data(str(tmp_path / 'again'), num_unlabeled=12, num_train=4,
                    num_val=4, labelled_size=(96, 128))
    for part in ('unlabeled/part_00/000003.jpg', 'coco/train2017/000000000002.png',
                 'coco/annotations/instances_val2017.json'):
        assert (data / part).read_bytes() == (tmp_path / 'again' / part).read_bytes()
    assert study_data_matches(str(data), num_unlabeled=12,
                              unlabeled_size_range=(96, 176), num_train=4,
                              num_val=4, labelled_size=(96, 128), max_objects=4,
                              seed=0)
    assert not study_data_matches(str(data), **STUDY_SETTINGS)
    with open(data / 'coco/annotations/instances_train2017.json') as f:
        coco = json.load(f)
    assert len(coco['images']) == 4 and coco['annotations']
    from pycocotools import mask as mask_utils
    for ann in coco['annotations']:
        assert mask_utils.area(ann['segmentation']) == ann['area'] > 0
    import numpy as np
    image, objects = draw_scene(np.random.RandomState(3), 64, 80, 4)
    assert image.shape == (64, 80, 3) and image.dtype == np.uint8
    visible = np.zeros((64, 80), int)
    for obj in objects:  # visible parts never overlap
        visible += obj['mask']
    assert visible.max() <= 1


@pytest.mark.slow
def test_study_end_to_end_with_resume(tmp_path, data):
    work = tmp_path / 'study'
    # first attempt, one run at a time: stopped (SIGTERM) as soon as its first
    # run (the pretraining) has finished
    first = study_command(work, data)
    first[first.index('--jobs') + 1] = '1'
    process = subprocess.Popen(first, cwd=ROOT, env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    deadline = time.time() + 600
    while not list((work / 'results').glob('*.json')) and time.time() < deadline:
        assert process.poll() is None, process.stdout.read()
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 1
    assert 'run the same command again to continue' in output
    assert 'Traceback' not in output
    done_first = sorted(path.name for path in (work / 'results').glob('*.json'))
    assert done_first == ['pretrain_spark_s0.json']
    assert not (work / 'results.md').exists()

    result = subprocess.run(study_command(work, data), cwd=ROOT, env=ENV,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert f'resuming: {len(done_first)} of 3 runs already done' in out
    for name in done_first:  # finished runs are not run again
        assert f'start {name[:-5]} ' not in out
    assert out.count(' done in ') == 3 - len(done_first)
    assert 'ETA' in out
    lines = out.splitlines()
    header = lines.index('| init | seeds | bbox AP | bbox AP50 | segm AP | segm AP50 |')
    assert lines[header + 2].startswith('| random | 1 | ')
    assert lines[header + 3].startswith('| spark | 1 | ')

    results = {path.stem: json.loads(path.read_text())
               for path in (work / 'results').glob('*.json')}
    assert set(results) == {'pretrain_spark_s0', 'finetune_random_s0',
                            'finetune_spark_s0'}
    assert os.path.isfile(results['pretrain_spark_s0']['backbone'])
    for name in ('finetune_random_s0', 'finetune_spark_s0'):
        assert 0 <= results[name]['bbox_AP'] <= 100
        assert 0 <= results[name]['segm_AP'] <= 100
    # the SparK run fine-tuned from the pretrained backbone, the random one not
    spark_log = (work / 'logs' / 'finetune_spark_s0.log').read_text()
    assert results['pretrain_spark_s0']['backbone'] in spark_log
    assert 'model.backbone.init_cfg=None' in (
        work / 'logs' / 'finetune_random_s0.log').read_text()
    with open(work / 'results.csv') as f:
        rows = list(csv.DictReader(f))
    assert [row['init'] for row in rows] == ['random', 'spark']
    assert float(rows[1]['bbox_AP_mean']) == pytest.approx(
        results['finetune_spark_s0']['bbox_AP'], abs=1e-3)
    assert (work / 'results.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert (work / 'results.md').read_text().startswith('| init |')

    # other settings in the same work dir are refused in one line
    argv = study_command(work, data)[2:]
    argv[argv.index('--finetune-iters') + 1] = '5'
    with pytest.raises(SystemExit) as refused:
        transfer_study.main(argv)
    assert str(refused.value).startswith(
        f'error: {work} holds a study with other settings (finetune_iters)')


def test_table_statistics():
    mean, std = transfer_study.mean_std([10.0, 12.0, 14.0])
    assert mean == 12.0 and std == pytest.approx(2.0)
    assert transfer_study.fmt_duration(3725) == '1h02m'
    assert transfer_study.fmt_duration(65) == '1m05s'
