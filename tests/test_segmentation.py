"""Semantic segmentation transfer: UperNet configs against mmseg's own recipes,
the backbone load check, and the chain SparK pretraining -> UperNet fine-tuning
(tools/train.py, single process and 2 gloo processes) -> mmseg's mIoU."""
import glob
import importlib.util
import json
import logging
import os
import pickle
import re
import subprocess
import sys

import cv2
import mmseg
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'tools'))

import spark_mm.segmentation  # noqa: E402,F401  (registers into mmseg)
from spark_mm.datasets import check_data_roots  # noqa: E402
from spark_mm.errors import one_line_message  # noqa: E402
from spark_mm.errors import CheckpointError  # noqa: E402
from spark_mm.datasets.synthetic import make_synthetic_ade20k  # noqa: E402
from spark_mm.segmentation import CheckedPretrained  # noqa: E402
from spark_mm.apis import revert_sync_bn_in_config  # noqa: E402

import train as train_tool  # noqa: E402  (tools/train.py)

# tools/test.py, under a name that cannot meet the standard library's `test`
_spec = importlib.util.spec_from_file_location(
    'spark_mm_test_tool', os.path.join(ROOT, 'tools', 'test.py'))
test_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_tool)

CONFIGS = os.path.join(ROOT, 'configs', 'upernet')
MMSEG_CONFIGS = os.path.join(os.path.dirname(mmseg.__file__), '.mim',
                             'configs')
FULL_CONFIGS = [
    f'upernet_{arch}-{init}_{sched}-160k_ade20k-512x512.py'
    for arch, sched in (('r50', '4xb4'), ('convnext-s', '8xb2-amp'),
                        ('convnext-b', '8xb2-amp'))
    for init in ('spark', 'scratch', 'supervised')
]


def mmseg_config(name):
    """One of mmseg's own configs, as installed with the package."""
    return Config.fromfile(os.path.join(MMSEG_CONFIGS, name))


def plain(node):
    """A config node as plain python, without the ``_scope_`` keys that
    inheriting from ``mmseg::`` adds."""
    if isinstance(node, dict):
        return {k: plain(v) for k, v in node.items() if k != '_scope_'}
    if isinstance(node, (list, tuple)):
        return type(node)(plain(v) for v in node)
    return node


def build_segmentor(cfg):
    from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(cfg.model)


def group_lrs(model, optim_wrapper_cfg):
    from mmengine.optim import build_optim_wrapper
    optim_wrapper_cfg = dict(optim_wrapper_cfg, type='OptimWrapper')
    optim_wrapper_cfg.pop('loss_scale', None)
    with DefaultScope.overwrite_default_scope('mmseg'):
        optimizer = build_optim_wrapper(model, optim_wrapper_cfg).optimizer
    by_param = {id(p): group for group in optimizer.param_groups
                for p in group['params']}
    return {name: (by_param[id(p)]['lr'], by_param[id(p)]['weight_decay'])
            for name, p in model.named_parameters()}


# -------------------------------------------------- full configs vs. mmseg's
@pytest.mark.parametrize('name', FULL_CONFIGS)
def test_full_config_follows_mmsegs_recipe(name):
    cfg = Config.fromfile(os.path.join(CONFIGS, name))
    convnext = 'convnext' in name
    arch = {'convnext-s': 'small', 'convnext-b': 'base'}.get(
        name.split('_')[1].rsplit('-', 1)[0])
    # model, data and schedule: mmseg's own config of the same architecture
    # (mmseg's UperNet R50 for ResNet); optimizer: mmseg's ConvNeXt UperNet
    ref = mmseg_config(
        f'convnext/convnext-{arch}_upernet_8xb2-amp-160k_ade20k-512x512.py'
        if convnext else 'upernet/upernet_r50_4xb4-160k_ade20k-512x512.py')
    ref_optim = mmseg_config(
        'convnext/convnext-small_upernet_8xb2-amp-160k_ade20k-512x512.py')

    assert cfg.default_scope == 'mmseg'
    assert 'spark_mm.segmentation' in cfg.custom_imports.imports
    assert plain(cfg.train_cfg) == plain(ref.train_cfg)
    assert cfg.train_cfg.max_iters == 160000
    assert cfg.crop_size == ref.crop_size == (512, 512)
    assert plain(cfg.model.data_preprocessor) == plain(
        ref.model.data_preprocessor)
    assert plain(cfg.train_pipeline) == plain(ref.train_pipeline)
    assert plain(cfg.test_pipeline) == plain(ref.test_pipeline)
    for loader in ('train_dataloader', 'val_dataloader'):
        assert plain(cfg[loader].dataset) == plain(ref[loader].dataset)
    assert cfg.train_dataloader.dataset.type == 'ADE20KDataset'
    gpus, per_gpu = map(int, re.search(r'_(\d+)xb(\d+)', name).groups())
    assert cfg.train_dataloader.batch_size == per_gpu
    assert gpus * per_gpu == 16 == cfg.auto_scale_lr.base_batch_size
    assert plain(cfg.val_evaluator) == plain(ref.val_evaluator)
    assert plain(cfg.model.decode_head) == plain(ref.model.decode_head)
    assert plain(cfg.model.auxiliary_head) == plain(
        ref.model.auxiliary_head)
    assert cfg.model.decode_head.num_classes == 150
    assert cfg.model.decode_head.norm_cfg.type == 'SyncBN'
    assert plain(cfg.model.test_cfg) == plain(ref.model.test_cfg)
    assert plain(cfg.param_scheduler) == plain(ref_optim.param_scheduler)

    backbone, init = cfg.model.backbone, cfg.model.backbone.init_cfg
    if convnext:
        assert plain(cfg.optim_wrapper) == plain(ref.optim_wrapper)  # AMP
        init_keys = ('init_cfg', 'layer_scale_init_value')
        assert {k: v for k, v in plain(backbone).items()
                if k not in init_keys} \
            == {k: v for k, v in plain(ref.model.backbone).items()
                if k not in init_keys}
        ref_scale = ref.model.backbone.layer_scale_init_value
        assert backbone.layer_scale_init_value == (
            1e-6 if 'scratch' in name else ref_scale)
    else:
        optim, ref_opt = cfg.optim_wrapper, ref_optim.optim_wrapper
        assert plain(optim.optimizer) == plain(ref_opt.optimizer)  # AdamW
        assert optim.constructor == 'ResNetLayerDecayOptimWrapperConstructor'
        assert optim.paramwise_cfg.decay_rate == \
            ref_opt.paramwise_cfg.decay_rate
        assert cfg.model.pretrained is None  # not mmseg's resnet50_v1c
        assert backbone.type == 'ResNet' and backbone.depth == 50
        assert 'deep_stem' not in backbone  # mmseg's ResNet: False
        assert backbone.norm_cfg.type == 'SyncBN'
        assert {k: v for k, v in plain(backbone).items()
                if k not in ('type', 'init_cfg')} \
            == {k: v for k, v in plain(ref.model.backbone).items()
                if k != 'type'}
    if 'spark' in name:
        assert init.type == 'spark_mm.CheckedPretrained'
        # the export of its pretraining config (tests/test_config_pairing.py)
        assert re.fullmatch(r'work_dirs/\w+_pretrain/backbone\.pth', init.checkpoint)
        assert init.prefix is None
    elif 'supervised' in name:
        assert init.type == 'spark_mm.CheckedPretrained'
        if convnext:  # the weights mmseg's own ConvNeXt UperNet starts from
            assert init.checkpoint == ref.model.backbone.init_cfg.checkpoint
            assert init.prefix == 'backbone.'
    elif convnext:
        assert [c.type for c in init] == ['TruncNormal', 'Constant']
    else:
        assert init is None

    revert_sync_bn_in_config(cfg)
    segmentor = build_segmentor(cfg)
    assert type(segmentor).__name__ == 'EncoderDecoder'
    lrs = group_lrs(segmentor, cfg.optim_wrapper)
    lr = 1e-4
    if convnext:  # mmseg's stage-wise decay: 0.9 ** (13 - stage id)
        assert lrs['backbone.downsample_layers.0.0.weight'][0] == \
            pytest.approx(lr * 0.9**13)
        assert lrs['backbone.stages.3.0.depthwise_conv.weight'][0] == \
            pytest.approx(lr * 0.9**9)
    else:  # ours: R50 N = 5, heads N + 1
        assert type(segmentor.backbone).__module__ == \
            'mmseg.models.backbones.resnet'
        assert 'backbone.stem.0.weight' not in lrs  # no deep stem
        assert lrs['backbone.conv1.weight'] == (pytest.approx(lr * 0.9**6),
                                                0.05)
        assert lrs['backbone.layer3.4.conv1.weight'][0] == \
            pytest.approx(lr * 0.9**2)
        assert lrs['backbone.layer4.2.conv3.weight'][0] == \
            pytest.approx(lr * 0.9)
        assert lrs['backbone.bn1.weight'][1] == 0
        assert lrs['decode_head.conv_seg.bias'] == (pytest.approx(lr), 0)
    assert lrs['decode_head.conv_seg.weight'] == (pytest.approx(lr), 0.05)


def test_amp_recipe_runs_in_fp32_without_a_gpu_and_missing_data_names_the_demo():
    cfg = Config.fromfile(os.path.join(
        CONFIGS, 'upernet_convnext-s-spark_8xb2-amp-160k_ade20k-512x512.py'))
    train_tool.amp_wrapper_to_fp32_on_cpu(cfg)
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    assert 'loss_scale' not in cfg.optim_wrapper
    assert cfg.optim_wrapper.constructor == \
        'LearningRateDecayOptimizerConstructor'
    with pytest.raises(FileNotFoundError) as error:
        check_data_roots(cfg)
    assert 'data/ade/ADEChallengeData2016' in str(error.value)
    assert 'configs/upernet/demo_r18_synthetic_ade20k.py' in str(error.value)


def test_docs_reference_numbers_are_mmsegs_published_ones():
    import yaml
    with open(os.path.join(ROOT, 'docs', 'segmentation.md'), encoding='utf-8') as f:
        readme = f.read()
    rows = re.findall(r'^\| `([\w-]+_ade20k-512x512)` \|[^|]*\| ([\d.]+) \| '
                      r'([\d.]+) \|$', readme, flags=re.M)
    assert len(rows) == 3
    for name, miou, miou_ms in rows:
        family = 'upernet' if name.startswith('upernet') else 'convnext'
        with open(os.path.join(MMSEG_CONFIGS, family, 'metafile.yaml')) as f:
            models = {m['Name']: m for m in yaml.safe_load(f)['Models']}
        metrics = models[name]['Results']['Metrics']
        assert float(miou) == metrics['mIoU'], name
        assert float(miou_ms) == metrics['mIoU(ms+flip)'], name
        assert models[name]['Metadata']['Batch Size'] == 16


# ------------------------------------------------------------ the load check
def mmpretrain_backbone_checkpoint(path, backbone, drop=(), prefix='backbone.'):
    state = {prefix + k: v.clone() for k, v in backbone.state_dict().items()
             if k not in drop}
    state['neck.decoder.0.weight'] = torch.zeros(2)  # SparK's decoder
    torch.save({'state_dict': state, 'meta': {}}, path)
    return {k[len(prefix):]: v for k, v in state.items()
            if k.startswith(prefix)}


@pytest.fixture
def log_lines():
    logger = MMLogger.get_current_instance()
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def test_checked_pretrained_survives_timm_init_weights(tmp_path):
    """A timm model has an init_weights of its own, which mmengine runs after
    a non-'Pretrained' init_cfg: the loaded weights must stay loaded."""
    from mmpretrain.models import TIMMBackbone
    torch.manual_seed(1)
    source = TIMMBackbone(model_name='resnet18', pretrained=False)
    with torch.no_grad():  # far from any initialisation
        for value in source.state_dict().values():
            if value.is_floating_point():
                value.add_(0.5)
    path = str(tmp_path / 'timm_backbone.pth')
    torch.save({'state_dict': source.state_dict()}, path)
    torch.manual_seed(2)
    backbone = TIMMBackbone(
        model_name='resnet18', pretrained=False,
        init_cfg=dict(type='spark_mm.CheckedPretrained', checkpoint=path))
    assert hasattr(backbone.timm_model, 'init_weights')  # the trap
    backbone.init_weights()
    for key, value in source.state_dict().items():
        assert torch.equal(backbone.state_dict()[key], value), key


def test_spark_resnet_loads_into_plain_resnet_and_refuses_v1c(tmp_path,
                                                              log_lines):
    from mmpretrain.models import ResNet as PretrainResNet
    from mmseg.models.backbones import ResNet, ResNetV1c
    path = str(tmp_path / 'spark.pth')
    state = mmpretrain_backbone_checkpoint(
        path, PretrainResNet(depth=18, out_indices=(0, 1, 2, 3)))
    backbone = ResNet(depth=18)
    CheckedPretrained(path, prefix='backbone.')(backbone)
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert any('ResNet loaded' in line and '0 missing, 0 unused' in line
               for line in log_lines)

    with pytest.raises(CheckpointError) as error:
        CheckedPretrained(path, prefix='backbone.')(ResNetV1c(depth=18))
    message = one_line_message(error.value)  # what tools/train.py prints
    assert '\n' not in message
    assert 'do not fit ResNetV1c' in message and 'stem.0.weight' in message
    assert 'missing' in message

    del state['layer2.1.bn2.running_var']
    torch.save({'state_dict': state}, tmp_path / 'cut.pth')
    with pytest.raises(CheckpointError,
                       match='1 missing: layer2.1.bn2.running_var'):
        CheckedPretrained(str(tmp_path / 'cut.pth'))(ResNet(depth=18))
    with pytest.raises(CheckpointError, match="holds no 'model.' weights"):
        CheckedPretrained(path, prefix='model.')(ResNet(depth=18))
    with pytest.raises(CheckpointError, match='does not exist'):
        CheckedPretrained(str(tmp_path / 'absent.pth'))(ResNet(depth=18))


def test_torchvision_weights_load_with_fc_unused(tmp_path, log_lines):
    import torchvision
    from mmseg.models.backbones import ResNet
    weights = torchvision.models.resnet18(weights=None).state_dict()
    # ImageNet releases predate BN's num_batches_tracked
    weights = {k: v for k, v in weights.items()
               if not k.endswith('num_batches_tracked')}
    torch.save(weights, tmp_path / 'tv.pth')
    backbone = ResNet(depth=18)
    CheckedPretrained(str(tmp_path / 'tv.pth'))(backbone)
    assert torch.equal(backbone.layer3[1].conv2.weight,
                       weights['layer3.1.conv2.weight'])
    assert any('0 missing, 2 unused: fc.weight, fc.bias' in line
               for line in log_lines)


def test_spark_convnext_may_lack_exactly_the_stage_output_norms(tmp_path,
                                                                log_lines):
    from mmpretrain.models import ConvNeXt

    def convnext():
        return ConvNeXt(arch='atto', out_indices=(0, 1, 2, 3),
                        gap_before_final_norm=False)

    norms = [f'norm{i}.{p}' for i in range(4) for p in ('weight', 'bias')]
    path = str(tmp_path / 'cnx.pth')
    state = mmpretrain_backbone_checkpoint(path, convnext(), drop=norms)
    backbone = convnext()
    with torch.no_grad():  # anything but the fresh values
        for key in norms:
            backbone.get_parameter(key).uniform_(2, 3)
    CheckedPretrained(path, prefix='backbone.')(backbone)
    loaded = backbone.state_dict()
    for key in state:
        assert torch.equal(loaded[key], state[key]), key
    for key in norms:
        expected = 1.0 if key.endswith('weight') else 0.0
        assert (loaded[key] == expected).all(), key
    fresh = [line for line in log_lines if 'initialised fresh' in line]
    assert len(fresh) == 1
    assert 'norm0.weight, norm0.bias' in fresh[0]
    assert 'SparK pretraining does not train' in fresh[0]

    state.pop('stages.1.0.gamma')
    torch.save({'state_dict': state}, tmp_path / 'cnx_cut.pth')
    with pytest.raises(CheckpointError) as error:
        CheckedPretrained(str(tmp_path / 'cnx_cut.pth'))(convnext())
    assert '1 missing: stages.1.0.gamma;' in str(error.value)


def test_released_weights_converted_by_export_backbone_load(tmp_path,
                                                           log_lines):
    """Official SparK releases (timm ResNet names; the ConvNeXt authors'
    names, no norm0..norm3) -> tools/export_backbone.py -> the UperNet
    backbones, through the load check."""
    import timm
    from mmpretrain.models import ConvNeXt
    from mmseg.models.backbones import ResNet

    import export_backbone  # tools/export_backbone.py

    resnet = {k: v for k, v in timm.create_model('resnet18').state_dict()
              .items() if not k.startswith('fc.')}
    torch.save(resnet, tmp_path / 'res18_official.pth')

    def convnext():
        return ConvNeXt(arch='atto', out_indices=(0, 1, 2, 3),
                        gap_before_final_norm=False)

    official_names = (('.depthwise_conv.', '.dwconv.'),
                      ('.pointwise_conv1.', '.pwconv1.'),
                      ('.pointwise_conv2.', '.pwconv2.'))
    cnx = {}
    for key, value in convnext().state_dict().items():
        if re.match(r'norm\d\.', key):
            continue
        for ours, theirs in official_names:
            key = key.replace(ours, theirs)
        cnx[key] = value
    torch.save(cnx, tmp_path / 'cnx_official.pth')

    for release, backbone, probe in (
            ('res18_official.pth', ResNet(depth=18), 'layer3.1.conv2.weight'),
            ('cnx_official.pth', convnext(), 'stages.1.0.pwconv1.weight')):
        written = export_backbone.export(
            str(tmp_path / release), str(tmp_path / release[:3]),
            formats=['mmdet'])
        CheckedPretrained(written['mmdet'])(backbone)
        ours = probe
        for official, theirs in official_names:
            ours = ours.replace(theirs, official)
        weights = resnet if release.startswith('res') else cnx
        assert torch.equal(backbone.state_dict()[ours], weights[probe])
    loaded = [line for line in log_lines if 'loaded from' in line]
    assert '120 of 120 tensors, 0 missing' in loaded[0]
    assert '124 of 132 tensors, 0 missing' in loaded[1]
    assert any('initialised fresh' in line for line in log_lines)


# -------------------------------------------------------------- the chain
def keep_default_scope():
    """Runs of the tools in this process set mmseg as mmengine's default
    scope; this puts back what the other tests expect afterwards."""
    return DefaultScope.overwrite_default_scope('mmseg')


def run_tool(args, cwd, timeout=600, tool='train.py'):
    # one intra-op thread: on a loaded 2-core machine two threads per process
    # make every small op wait
    env = dict(os.environ, OMP_NUM_THREADS='1')
    if tool == 'dist_train.sh':
        env.update(PYTHON=sys.executable, PORT='29613')
        command = ['bash', os.path.join(ROOT, 'tools', tool)] + args
    else:
        command = [sys.executable, os.path.join(ROOT, 'tools', tool)] + args
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, (result.stdout[-3000:] +
                                    result.stderr[-3000:])
    return result


DEMO = os.path.join(CONFIGS, 'demo_r18_synthetic_ade20k.py')
NO_WORKERS = ['train_dataloader.num_workers=0',
              'train_dataloader.persistent_workers=False',
              'val_dataloader.num_workers=0',
              'val_dataloader.persistent_workers=False',
              'test_dataloader.num_workers=0',
              'test_dataloader.persistent_workers=False']


@pytest.fixture(scope='module')
def chain(tmp_path_factory):
    """Tiny SparK pretraining, then the demo UperNet fine-tuning from it."""
    tmp = tmp_path_factory.mktemp('segmentation')
    run_tool([
        os.path.join(ROOT, 'configs', 'spark', 'demo_r18.py'),
        '--work-dir', str(tmp / 'pretrain'), '--cfg-options',
        'train_cfg.max_epochs=1', 'train_dataloader.batch_size=8',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        f'train_dataloader.dataset.data_root={tmp / "images"}',
        'train_dataloader.dataset.num_images=16',
        'default_hooks.checkpoint.interval=1'
    ], cwd=tmp)
    backbone = tmp / 'pretrain' / 'backbone.pth'
    assert backbone.is_file()
    ade = tmp / 'ade'
    make_synthetic_ade20k(str(ade), num_train=32, num_val=8, size=64)
    data = [f'{loader}.dataset.data_root={ade}' for loader in
            ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    options = [f'model.backbone.init_cfg.checkpoint={backbone}'] + data + \
        NO_WORKERS
    result = run_tool([DEMO, '--work-dir', str(tmp / 'upernet'),
                       '--cfg-options'] + options, cwd=tmp)
    return dict(tmp=tmp, ade=ade, backbone=backbone, options=options,
                log=result.stdout + result.stderr, work=tmp / 'upernet')


def constant_prediction_bound(ade):
    """mIoU and aAcc (%) of the best constant prediction on the validation set."""
    labels = np.concatenate([
        cv2.imread(path, cv2.IMREAD_GRAYSCALE).ravel() for path in
        sorted(glob.glob(str(ade / 'annotations' / 'validation' / '*.png')))])
    counts = np.bincount(labels[labels > 0])[1:]  # 0 is ignored (ADE "other")
    shares = counts / counts.sum()
    present = (counts > 0).sum()
    return 100 * shares.max() / present, 100 * shares.max()


@pytest.mark.slow
def test_chain_fine_tunes_spark_weights_to_a_real_miou(chain, monkeypatch):
    log = chain['log']
    assert 'SyncBN replaced by BN in' in log  # single process
    assert re.search(r'CheckedPretrained: ResNet loaded from \S+backbone.pth '
                     r'\(prefix None\): 120 of 120 tensors, 0 missing', log)
    assert 'ResNet layer-wise lr decay 0.9, N=4' in log
    scalars, = glob.glob(str(chain['work'] / '*' / 'vis_data' /
                             'scalars.json'))
    with open(scalars) as f:
        rows = [json.loads(line) for line in f]
    val = [row for row in rows if 'mIoU' in row][-1]
    miou_bound, acc_bound = constant_prediction_bound(chain['ade'])
    # 5 classes, background ~70% of pixels: a constant (or collapsed) model
    # gets mIoU <= ~14 and aAcc <= ~70; the fine-tuned one must do much better
    assert val['mIoU'] > 2 * miou_bound, (val, miou_bound)
    assert val['aAcc'] > acc_bound, (val, acc_bound)
    assert val['mIoU'] <= 100

    # training started from the SparK weights, a few AdamW steps away
    pretrained = torch.load(chain['backbone'])['state_dict']
    tuned = torch.load(chain['work'] / 'iter_40.pth', map_location='cpu',
                       weights_only=False)['state_dict']
    delta = (tuned['backbone.layer2.0.conv1.weight'] -
             pretrained['layer2.0.conv1.weight']).abs().max()
    assert 0 < delta < 0.1

    # tools/test.py (its main in this process: a subprocess costs its imports)
    out = chain['tmp'] / 'test' / 'results.pkl'
    monkeypatch.chdir(chain['tmp'])
    with keep_default_scope():
        metrics = test_tool.main([DEMO, str(chain['work'] / 'iter_40.pth'),
                                  '--work-dir', str(chain['tmp'] / 'test'),
                                  '--out', str(out), '--cfg-options'] +
                                 chain['options'])
    assert metrics['mIoU'] == pytest.approx(val['mIoU'], abs=1e-2)
    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == 8
    assert tuple(predictions[0]['pred_sem_seg']['data'].shape) == (1, 64, 64)


@pytest.mark.slow
def test_wrong_backbone_variant_stops_with_one_line(chain, monkeypatch):
    # tools/train.py's main in this process (a subprocess costs its imports)
    monkeypatch.chdir(chain['tmp'])
    monkeypatch.setattr(sys, 'argv', [
        'train.py', DEMO, '--work-dir', str(chain['tmp'] / 'v1c'),
        '--cfg-options', 'model.backbone.type=ResNetV1c'] + chain['options'])
    with pytest.raises(SystemExit) as error, keep_default_scope():
        train_tool.main()
    message = str(error.value)
    assert message.startswith('error: backbone weights ') and '\n' not in message
    assert 'do not fit ResNetV1c' in message and 'stem.0.weight' in message


@pytest.mark.slow
@pytest.mark.dist
def test_two_gloo_processes_train_with_syncbn(chain):
    work = chain['tmp'] / 'dist'
    run_tool([DEMO, '2', '--work-dir', str(work), '--cfg-options',
              'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
              'default_hooks.checkpoint.interval=2',
              'train_dataloader.batch_size=4'] + chain['options'],
             cwd=chain['tmp'], tool='dist_train.sh')
    dumped = Config.fromfile(str(work / os.path.basename(DEMO)))
    assert dumped.model.backbone.norm_cfg.type == 'SyncBN'  # kept: 2 ranks
    assert dumped.model_wrapper_cfg.type == \
        'spark_mm.engine.CPUDistributedDataParallel'
    assert (work / 'iter_2.pth').is_file()
    scalars, = glob.glob(str(work / '*' / 'vis_data' / 'scalars.json'))
    with open(scalars) as f:
        assert any('mIoU' in json.loads(line) for line in f)
