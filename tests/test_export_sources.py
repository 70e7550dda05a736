"""tools/export_backbone.py on every SparK checkpoint a user may hold, proven by outputs.

For each source, the source model is built the way its owner builds it
(timm's ``resnet50`` as the official SparK ResNet; timm's ConvNeXt with the
ConvNeXt authors' names, those names checked by timm's own converter
``timm.models.convnext.checkpoint_filter_fn``; mmpretrain 1.2.0's SparK with
``SparseResNet`` / ``SparseConvNeXt``; our SparK), with random weights and BN
running statistics, and saved in its released layout (wrappers, prefixes and
extra entries included). The tool converts it; each target model (mmdet
``ResNet``, mmpretrain ``ConvNeXt``, torchvision and timm ``ResNet``, timm
``ConvNeXt``, and the Detectron2 names read by a Detectron2-structured
forward) loads the file strictly (only the documented absent keys allowed)
and computes the same features of every stage as the source model on the same
image, in float64.
"""
import os
import pickle
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
import torchvision
from mmdet.models.backbones import ResNet
from mmpretrain.models.backbones import ConvNeXt as MMPretrainConvNeXt
from timm.models.convnext import ConvNeXt as TimmConvNeXt
from torchvision.models.convnext import CNBlockConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'tools'))

import spark_mm  # noqa: E402,F401
from spark_mm.checkpoint.architecture import RESNET_DEPTHS  # noqa: E402
from spark_mm.checkpoint.load_checks import \
    expected_detectron2_names  # noqa: E402
from spark_mm.checkpoint.names import (  # noqa: E402
    CONVNEXT_STAGE_NORM, CONVNEXT_TIMM, CONVNEXT_TORCHVISION, RESNET_DETECTRON2)
from spark_mm.errors import CheckpointError  # noqa: E402

import export_backbone  # noqa: E402  (tools/export_backbone.py)

TOL = 1e-10
TINY_DEPTHS, TINY_DIMS = (1, 1, 2, 1), (16, 32, 64, 128)
NORM_SENTENCE = ('norm0..norm3 absent: initialised fresh by the downstream '
                 'model (weight 1, bias 0), as in the official SparK/ConvNeXt '
                 'detection code')


# ------------------------------------------------------------------ helpers
def randomise(model, seed=0):
    """Random weights, norm affines, layer scales and BN running statistics,
    all of order one, so that any misplaced tensor changes the outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(
                model.named_buffers()):
            if not tensor.is_floating_point():
                continue
            if 'running_var' in name:
                value = 0.5 + torch.rand(tensor.shape, generator=gen)
            elif tensor.dim() > 1:  # conv / linear weights
                fan_in = tensor[0].numel()
                value = torch.randn(tensor.shape, generator=gen) / fan_in**0.5
            elif name.endswith('weight') or name.endswith('gamma'):
                value = 0.5 + torch.rand(tensor.shape, generator=gen)
            else:  # biases, running means, GRN betas
                value = 0.1 * torch.randn(tensor.shape, generator=gen)
            tensor.copy_(value.to(tensor.dtype))
    return evaluating(model)


def evaluating(model, dtype=None):
    """``model`` in eval mode (mmdet's ``ResNet.train`` returns None)."""
    if dtype is not None:
        model.to(dtype)
    model.eval()
    return model


def image(seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, 64, 64, generator=gen, dtype=torch.float64)


def hooked(model, names, run):
    """Outputs of the named submodules while ``run()`` runs ``model``."""
    outputs, handles = {}, []
    modules = dict(model.named_modules())
    for name in names:
        handles.append(modules[name].register_forward_hook(
            lambda _m, _i, out, name=name: outputs.__setitem__(name, out)))
    with torch.no_grad():
        run()
    for handle in handles:
        handle.remove()
    return [outputs[name] for name in names]


RESNET_STAGES = [f'layer{i}' for i in range(1, 5)]
CONVNEXT_STAGES = [f'stages.{i}' for i in range(4)]


def resnet_stages(model, x):
    """Stage outputs of a torchvision/timm ResNet (forward hooks)."""
    model = evaluating(model, torch.float64)
    return hooked(model, RESNET_STAGES, lambda: model(x))


def convnext_stages(model, x):
    """Raw stage outputs of an mmpretrain or timm ConvNeXt (forward hooks)."""
    model = evaluating(model, torch.float64)
    return hooked(model, CONVNEXT_STAGES, lambda: model(x))


def assert_same(outputs, reference, what):
    assert len(outputs) == len(reference) == 4, what
    for stage, (out, ref) in enumerate(zip(outputs, reference)):
        assert out.dtype == ref.dtype == torch.float64, what
        assert out.shape == ref.shape, f'{what} stage {stage}'
        scale = ref.abs().max().item()
        assert scale > 1e-3, f'{what}: degenerate reference at stage {stage}'
        error = ((out - ref).abs().max() / scale).item()
        assert error <= TOL, f'{what} stage {stage}: relative error {error:g}'


def detectron2_stages(weights, depth, x):
    """ResNet forward reading Detectron2 names, structured as Detectron2's
    ``build_resnet_backbone`` with the official SparK settings: ``BasicStem``
    (conv1 7x7/2 + norm + ReLU, max-pool 3x3/2 pad 1), ``res2..res5`` of
    ``BottleneckBlock`` (``STRIDE_IN_1X1: False``: stride in conv2) or
    ``BasicBlock``, ``shortcut`` (1x1 conv + norm) where shapes change."""
    w = {key: torch.from_numpy(value).double() for key, value in
         weights.items() if value.dtype.kind == 'f'}

    def conv_norm(name, x, stride, padding):
        x = F.conv2d(x, w[f'{name}.weight'], stride=stride, padding=padding)
        return F.batch_norm(x, w[f'{name}.norm.running_mean'],
                            w[f'{name}.norm.running_var'],
                            w[f'{name}.norm.weight'], w[f'{name}.norm.bias'],
                            training=False, eps=1e-5)

    bottleneck, counts = RESNET_DEPTHS[depth]
    x = F.relu(conv_norm('stem.conv1', x, 2, 3))
    x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
    outputs = []
    for stage, count in enumerate(counts, start=2):
        for block in range(count):
            name = f'res{stage}.{block}'
            stride = 2 if block == 0 and stage > 2 else 1
            shortcut = (conv_norm(f'{name}.shortcut', x, stride, 0)
                        if f'{name}.shortcut.weight' in w else x)
            if bottleneck:
                y = F.relu(conv_norm(f'{name}.conv1', x, 1, 0))
                y = F.relu(conv_norm(f'{name}.conv2', y, stride, 1))
                y = conv_norm(f'{name}.conv3', y, 1, 0)
            else:
                y = F.relu(conv_norm(f'{name}.conv1', x, stride, 1))
                y = conv_norm(f'{name}.conv2', y, 1, 1)
            x = F.relu(y + shortcut)
        outputs.append(x)
    return outputs


def check_resnet_targets(written, depth, reference, x, report):
    """Every ResNet file loads strictly into its real model and gives the
    reference stage outputs; the report's counts are those of the load."""
    import timm
    import torchvision
    from mmdet.models.backbones import ResNet

    assert sorted(written) == ['detectron2', 'mmdet', 'timm', 'torchvision']
    mmdet_weights = torch.load(written['mmdet'])['state_dict']
    model = ResNet(depth, out_indices=(0, 1, 2, 3))
    model.load_state_dict(mmdet_weights, strict=True)
    with torch.no_grad():
        assert_same(list(evaluating(model, torch.float64)(x)), reference,
                    'mmdet ResNet')
    assert re.search(r'\[mmdet\] mmdet\.models\.backbones\.resnet\.ResNet: '
                     r'0 missing, 0 unexpected keys', report)

    for fmt, build in (('torchvision', lambda: getattr(
            torchvision.models, f'resnet{depth}')(weights=None)),
                       ('timm', lambda: timm.create_model(
                           f'resnet{depth}', pretrained=False))):
        weights = torch.load(written[fmt])
        model = build()
        result = model.load_state_dict(weights, strict=False)
        assert sorted(result.missing_keys) == ['fc.bias', 'fc.weight'], fmt
        assert result.unexpected_keys == [], fmt
        assert f'[{fmt}] resnet{depth}: 2 missing (fc.weight, fc.bias), ' \
               '0 unexpected keys' in report
        assert_same(resnet_stages(model, x), reference, f'{fmt} resnet{depth}')

    with open(written['detectron2'], 'rb') as f:
        d2 = pickle.load(f)
    assert d2['matching_heuristics'] is True
    assert_same(detectron2_stages(d2['model'], depth, x), reference,
                'Detectron2 names')
    assert f'[detectron2] ResNet-{depth}: {len(d2["model"])} tensors' in report


def check_convnext_targets(written, reference, x, report, v2=False):
    """mmpretrain ConvNeXt (as mmdet uses it), torchvision ConvNeXt and timm
    ConvNeXt from the written files: same raw stage outputs; absent keys
    exactly the documented ones, and counted as the real load counts them.
    ``v2``: ConvNeXt V2 blocks (GRN, no layer scale; not in torchvision)."""
    from mmpretrain.models import ConvNeXt as MMPretrainConvNeXt
    from timm.models.convnext import ConvNeXt as TimmConvNeXt
    from torchvision.models.convnext import CNBlockConfig
    from torchvision.models.convnext import ConvNeXt as TorchvisionConvNeXt

    assert sorted(written) == (['mmdet', 'timm'] if v2 else
                               ['mmdet', 'timm', 'torchvision'])
    if not v2:
        dims = list(TINY_DIMS) + [None]
        model = TorchvisionConvNeXt([CNBlockConfig(dims[i], dims[i + 1], d)
                                     for i, d in enumerate(TINY_DEPTHS)])
        result = model.load_state_dict(torch.load(written['torchvision']),
                                       strict=False)
        assert sorted(result.missing_keys) == [
            'classifier.0.bias', 'classifier.0.weight', 'classifier.2.bias',
            'classifier.2.weight']
        assert result.unexpected_keys == []
        assert re.search(r'\[torchvision\] ConvNeXt\(depths=\(1, 1, 2, 1\), '
                         r'dims=\(16, 32, 64, 128\)\): 4 missing '
                         r'\(classifier\.', report)
        model = evaluating(model, torch.float64)
        # features: stem, stage 0, downsample, stage 1, ...
        assert_same(hooked(model, [f'features.{2 * i + 1}' for i in range(4)],
                           lambda: model(x)), reference,
                    'torchvision ConvNeXt')

    weights = torch.load(written['mmdet'])['state_dict']
    model = MMPretrainConvNeXt(
        arch=dict(depths=list(TINY_DEPTHS), channels=list(TINY_DIMS)),
        out_indices=(0, 1, 2, 3), gap_before_final_norm=False, use_grn=v2,
        layer_scale_init_value=0. if v2 else 1e-6)
    result = model.load_state_dict(weights, strict=False)
    assert result.unexpected_keys == []
    assert all(re.match(r'^norm[0-3]\.(weight|bias)$', key)
               for key in result.missing_keys)
    assert len(result.missing_keys) == 8
    assert '[mmdet] mmpretrain.models.backbones.convnext.ConvNeXt: 8 missing ' \
           '(norm0.weight, norm0.bias, norm1.weight' in report
    assert NORM_SENTENCE in report
    raw = convnext_stages(model, x)
    assert_same(raw, reference, 'mmpretrain ConvNeXt')
    with torch.no_grad():  # the outputs mmdet sees: fresh norms on raw stages
        normed = model(x)
    fresh = [F.layer_norm(r.permute(0, 2, 3, 1), r.shape[1:2],
                          eps=1e-6).permute(0, 3, 1, 2) for r in raw]
    assert_same(list(normed), fresh, 'mmpretrain ConvNeXt output norms')

    weights = torch.load(written['timm'])
    model = TimmConvNeXt(depths=TINY_DEPTHS, dims=TINY_DIMS, num_classes=0,
                         use_grn=v2, ls_init_value=None if v2 else 1e-6)
    result = model.load_state_dict(weights, strict=False)
    assert sorted(result.missing_keys) == ['head.norm.bias', 'head.norm.weight']
    assert result.unexpected_keys == []
    assert '(head.norm.weight, head.norm.bias), 0 unexpected keys' in report
    assert_same(convnext_stages(model, x), reference, 'timm ConvNeXt')


def run_export(path, out_dir, capsys, **kwargs):
    written = export_backbone.export(str(path), str(out_dir), **kwargs)
    return written, capsys.readouterr().out


# ------------------------------------------------- official SparK ResNet
def official_resnet(name='resnet50'):
    """The encoder as the official SparK pretraining builds it
    (``pretrain/models/__init__.py``: no classifier, no pooling)."""
    import timm
    return randomise(timm.create_model(name, pretrained=False, num_classes=0,
                                       global_pool=''))


@pytest.mark.slow
def test_official_resnet50_release_by_the_real_tool(tmp_path):
    """``res50_1kpretrained_timm_style.pth`` is the bare timm state dict of
    the sparse encoder (``misc.save_checkpoint_model_weights_only``); the
    tool runs as a subprocess, all formats."""
    model = official_resnet('resnet50')
    release = tmp_path / 'res50_1kpretrained_timm_style.pth'
    torch.save(model.state_dict(), release)
    out_dir = tmp_path / 'export'
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'export_backbone.py'),
         str(release), '--out-dir', str(out_dir)],
        capture_output=True, text=True, timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert result.returncode == 0, result.stdout + result.stderr
    report = result.stdout
    assert 'source: official SparK ResNet release (timm ResNet names); ' \
           f'ResNet-50, {len(model.state_dict())} backbone tensors' in report
    written = {fmt: str(out_dir / name) for fmt, name in (
        ('mmdet', 'backbone_mmdet.pth'),
        ('torchvision', 'backbone_torchvision.pth'),
        ('timm', 'backbone_timm.pth'),
        ('detectron2', 'backbone_detectron2.pkl'))}
    assert sorted(os.listdir(out_dir)) == sorted(
        os.path.basename(path) for path in written.values())
    x = image()
    check_resnet_targets(written, 50, resnet_stages(model, x), x, report)


@pytest.mark.parametrize('layout', ['wrapped', 'spark_style_with_decoder'])
def test_official_resnet_wrapped_layouts(tmp_path, capsys, layout):
    """The same release wrapped as users hold it: ``module`` with
    ``module.`` prefixes and extra entries (``arch``, ``is_pretrain``: the
    "Unexpected key(s)" of SparK #58), and the official checkpoint with its
    decoder (``*_withdecoder_1kpretrained_spark_style.pth``)."""
    model = official_resnet('resnet18')
    weights = model.state_dict()
    if layout == 'wrapped':
        checkpoint = {'module': {f'module.{k}': v for k, v in weights.items()},
                      'arch': 'resnet18', 'is_pretrain': True, 'epoch': 1599}
        expected_source = ('official SparK ResNet release (timm ResNet '
                           'names); ResNet-18')
    else:
        module = {f'sparse_encoder.sp_cnn.{k}': v for k, v in weights.items()}
        module.update({
            'dense_decoder.dec.0.up_sample.weight': torch.randn(512, 256, 4, 4),
            'densify_norms.0.weight': torch.rand(512),
            'densify_projs.1.weight': torch.randn(256, 256, 3, 3),
            'mask_tokens.0': torch.randn(1, 512, 1, 1),
            'imn_m': torch.zeros(1, 3, 1, 1),
            'config': {'mask_ratio': 0.6, 'densify_norm_str': 'bn'}})
        checkpoint = {'args': 'Args(...)', 'input_size': 224,
                      'arch': 'resnet18', 'epoch': 1599,
                      'performance_desc': '0.51 0.52', 'module': module,
                      'optimizer': {'state': {}, 'param_groups': [
                          {'lr': 1e-4, 'params': [0, 1]}]},
                      'is_pretrain': True}
        expected_source = "under 'sparse_encoder.sp_cnn.'; ResNet-18"
    path = tmp_path / f'{layout}.pth'
    torch.save(checkpoint, path)
    written, report = run_export(path, tmp_path / 'out', capsys)
    assert expected_source in report
    assert 'left out (not weights): ' in report and 'arch' in report
    x = image()
    check_resnet_targets(written, 18, resnet_stages(model, x), x, report)


# ----------------------------------------------- official SparK ConvNeXt
def authors_names(timm_weights):
    """The ConvNeXt authors' names of a timm ConvNeXt state dict
    (``downsample_layers.i.j``, ``stages.i.j.{dwconv,norm,pwconv1,pwconv2,
    gamma}``), without the classifier (official SparK: ``num_classes=0``)."""
    renamed = {}
    for key, value in timm_weights.items():
        if key.startswith('head.'):
            continue
        key = re.sub(r'^stem\.', 'downsample_layers.0.', key)
        key = re.sub(r'^stages\.(\d)\.downsample\.', r'downsample_layers.\1.',
                     key)
        key = re.sub(r'^stages\.(\d)\.blocks\.(\d+)\.', r'stages.\1.\2.', key)
        key = key.replace('.conv_dw.', '.dwconv.').replace('.mlp.fc', '.pwconv')
        renamed[key] = value
    return renamed


def official_convnext():
    """A tiny ConvNeXt in the ConvNeXt authors' naming, and the timm model
    that computes it. The naming is checked by timm's own converter for the
    authors' checkpoints, not by ours."""
    from timm.models.convnext import ConvNeXt, checkpoint_filter_fn
    model = randomise(ConvNeXt(depths=TINY_DEPTHS, dims=TINY_DIMS,
                               num_classes=0))
    official = authors_names(model.state_dict())
    assert any('.dwconv.' in key for key in official)
    assert any(key.startswith('downsample_layers.3.1.') for key in official)
    fresh = ConvNeXt(depths=TINY_DEPTHS, dims=TINY_DIMS, num_classes=0)
    by_timm = checkpoint_filter_fn(dict(official), fresh)
    expected = {k: v for k, v in model.state_dict().items()
                if not k.startswith('head.')}
    assert set(by_timm) == set(expected)
    for key, value in expected.items():
        assert torch.equal(by_timm[key], value), key
    return model, official


@pytest.mark.parametrize('layout', ['bare', 'wrapped_with_classifier'])
def test_official_convnext_release(tmp_path, capsys, layout):
    """``cnx*_1kpretrained_official_style.pth``: mmpretrain/mmdet ConvNeXt
    (norm0..norm3 absent, said so and counted) and timm ConvNeXt."""
    model, official = official_convnext()
    if layout == 'bare':
        checkpoint = official
    else:
        official = dict(official, **{
            'norm.weight': torch.rand(128), 'norm.bias': torch.rand(128),
            'head.weight': torch.rand(10, 128), 'head.bias': torch.rand(10)})
        checkpoint = {'model': {f'module.{k}': v for k, v in official.items()},
                      'arch': 'convnext_small', 'is_pretrain': True}
    path = tmp_path / 'convnextS_1kpretrained_official_style.pth'
    torch.save(checkpoint, path)
    written, report = run_export(path, tmp_path / 'out', capsys)
    assert "official SparK ConvNeXt release (the ConvNeXt authors' names); " \
           f'ConvNeXt depths {TINY_DEPTHS} channels {TINY_DIMS}' in report
    if layout != 'bare':
        assert 'left out (classifier head): norm.weight, norm.bias, ' \
               'head.weight, head.bias' in report
    x = image()
    check_convnext_targets(written, convnext_stages(model, x), x, report)


def test_counts_come_from_the_load(tmp_path, capsys):
    """An mmpretrain-named ConvNeXt holding only ``norm3`` (as mmpretrain's
    classifiers do): 6 keys absent, not a fixed 8."""
    _, official = official_convnext()
    path = tmp_path / 'official.pth'
    torch.save(official, path)
    written, _ = run_export(path, tmp_path / 'a', capsys, formats=['mmdet'])
    weights = torch.load(written['mmdet'])['state_dict']
    weights['norm3.weight'] = torch.rand(128)
    weights['norm3.bias'] = torch.rand(128)
    torch.save({'state_dict': weights, 'meta': {}}, tmp_path / 'norm3.pth')
    written, report = run_export(tmp_path / 'norm3.pth', tmp_path / 'b', capsys)
    assert 'ConvNeXt: 6 missing (norm0.weight, norm0.bias, norm1.weight, ' \
           'norm1.bias, norm2.weight, norm2.bias), 0 unexpected' in report
    assert 'norm0..norm2 absent: initialised fresh' in report
    assert "norm3.weight, norm3.bias not written: timm's ConvNeXt has no " \
           'per-stage output norms' in report


# ------------------------------------------------ mmpretrain 1.2.0 SparK
def mmpretrain_spark(backbone, norm, norm_dim):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('spark_mm')  # mmpretrain's sparse norms resolve
    return randomise(MODELS.build(dict(
        type='mmpretrain.SparK', input_size=64, downsample_raito=32,
        mask_ratio=0.6, enc_dec_norm_cfg=norm, enc_dec_norm_dim=norm_dim,
        backbone=backbone,
        neck=dict(type='SparKLightDecoder', feature_dim=64,
                  upsample_ratio=32, mid_channels=0, last_act=False),
        head=dict(type='SparKPretrainHead', loss=dict(
            type='PixelReconstructionLoss', criterion='L2')))))


def sparse_backbone_dense_outputs(backbone, x):
    """mmpretrain's sparse backbone computing densely: every patch visible
    (its masked forward would otherwise need the SparK model's mask)."""
    from mmpretrain.models.utils.sparse_modules import SparseHelper
    backbone = evaluating(backbone, torch.float64)
    SparseHelper._cur_active = torch.ones(x.shape[0], 1, x.shape[2] // 32,
                                          x.shape[3] // 32, dtype=torch.bool)
    try:
        with torch.no_grad():
            return list(backbone(x))
    finally:
        SparseHelper._cur_active = None


def save_mmengine(path, model, **meta):
    torch.save({'meta': dict(meta, epoch=800), 'state_dict': model.state_dict(),
                'optimizer': {'state': {}, 'param_groups': [{'lr': 1e-4}]}},
               path)


def test_mmpretrain_spark_resnet(tmp_path, capsys):
    spark = mmpretrain_spark(
        dict(type='SparseResNet', depth=18, out_indices=(0, 1, 2, 3),
             norm_cfg=dict(type='SparseBatchNorm2d')),
        dict(type='SparseBatchNorm2d'), 512)
    path = tmp_path / 'spark_sparse-resnet18_epoch_800.pth'
    save_mmengine(path, spark, mmpretrain_version='1.2.0')
    written, report = run_export(path, tmp_path / 'out', capsys,
                                 source='mmpretrain-spark')
    assert "mmpretrain 1.2.0 SparK checkpoint (backbone.*) under " \
           "'backbone.'; ResNet-18" in report
    assert re.search(r'left out \(not the backbone\): .*enc_dec_norms', report)
    x = image()
    check_resnet_targets(written, 18,
                         sparse_backbone_dense_outputs(spark.backbone, x), x,
                         report)


@pytest.mark.parametrize('v2', [False, True], ids=['convnext', 'convnextv2'])
def test_mmpretrain_spark_convnext(tmp_path, capsys, v2):
    """mmpretrain's SparK ConvNeXt, and its ConvNeXt V2 recipe (GRN, no
    layer scale: ``spark_sparse-convnextv2-tiny_...py``)."""
    v2_options = dict(use_grn=True, layer_scale_init_value=0.) if v2 else {}
    spark = mmpretrain_spark(
        dict(type='SparseConvNeXt', arch=dict(depths=list(TINY_DEPTHS),
                                              channels=list(TINY_DIMS)),
             out_indices=(0, 1, 2, 3), gap_before_output=False, **v2_options),
        dict(type='SparseLN2d', eps=1e-6), 128)
    path = tmp_path / 'spark_sparse-convnext_epoch_800.pth'
    save_mmengine(path, spark)
    written, report = run_export(path, tmp_path / 'out', capsys)
    assert 'mmpretrain 1.2.0 SparK checkpoint' in report
    assert any('.grn.' in key for key in torch.load(
        written['mmdet'])['state_dict']) == v2
    x = image()
    check_convnext_targets(
        written, sparse_backbone_dense_outputs(spark.backbone, x), x, report,
        v2=v2)
    if v2:
        with pytest.raises(CheckpointError, match='ConvNeXt V2 .GRN.'):
            export_backbone.export(str(path), str(tmp_path / 'tv'),
                                   formats=['torchvision'])
        assert not (tmp_path / 'tv').exists()


# --------------------------------------------------------------- spark_mm
def our_spark(backbone, **kwargs):
    from spark_mm.registry import MODELS
    model = MODELS.build(dict(type='SparK', backbone=backbone, input_size=64,
                              neck=dict(type='LightUNetDecoder', width=64),
                              **kwargs))
    return randomise(model)


@pytest.mark.slow
def test_spark_mm_checkpoints(tmp_path, capsys):
    """Ours: ResNet-18 (all formats) and ConvNeXt (output norms not trained,
    so absent), against our backbone with no mask active (= dense)."""
    x = image()
    spark = our_spark(dict(type='ResNet', depth=18, out_indices=(0, 1, 2, 3)))
    save_mmengine(tmp_path / 'r18.pth', spark)
    written, report = run_export(tmp_path / 'r18.pth', tmp_path / 'r18',
                                 capsys, source='spark_mm')
    assert "spark_mm checkpoint under 'backbone.'; ResNet-18" in report
    with torch.no_grad():
        reference = list(evaluating(spark.backbone, torch.float64)(x))
    check_resnet_targets(written, 18, reference, x, report)

    # timm's ResNet inside mmpretrain's TIMMBackbone (the R200 recipe)
    spark = our_spark(dict(type='TIMMBackbone', model_name='resnet18',
                           features_only=True, out_indices=(1, 2, 3, 4)))
    save_mmengine(tmp_path / 'timm_r18.pth', spark)
    written, report = run_export(tmp_path / 'timm_r18.pth',
                                 tmp_path / 'timm_r18', capsys)
    assert "spark_mm checkpoint under 'backbone.timm_model.'" in report
    with torch.no_grad():
        reference = list(evaluating(spark.backbone, torch.float64)(x))
    check_resnet_targets(written, 18, reference, x, report)

    spark = our_spark(dict(type='ConvNeXt', arch=dict(
        depths=list(TINY_DEPTHS), channels=list(TINY_DIMS)),
        out_indices=(0, 1, 2, 3), gap_before_final_norm=False),
        densify_norm_cfg=dict(type='LN2d', eps=1e-6))
    save_mmengine(tmp_path / 'cnx.pth', spark)
    written, report = run_export(tmp_path / 'cnx.pth', tmp_path / 'cnx',
                                 capsys)
    with torch.no_grad():
        reference = list(evaluating(spark.backbone, torch.float64)(x))
    check_convnext_targets(written, reference, x, report)


# -------------------------------------------------------------- bad inputs
def tool_error(argv):
    with pytest.raises(SystemExit) as error:
        export_backbone.main(argv)
    message = str(error.value.code)
    assert message.startswith('error: ') and '\n' not in message, message
    return message


@pytest.mark.slow
def test_bad_inputs_end_in_one_line_and_write_nothing(tmp_path):
    _, official = official_convnext()
    convnext = tmp_path / 'cnx_official_style.pth'
    torch.save(official, convnext)
    resnet = tmp_path / 'res50_1kpretrained_timm_style.pth'
    torch.save(official_resnet('resnet18').state_dict(), resnet)
    out = tmp_path / 'out'

    message = tool_error([str(convnext), '--formats', 'mmdet', 'detectron2',
                          '--out-dir', str(out)])
    assert 'Detectron2 format is for ResNet' in message
    assert not out.exists(), 'mmdet was fine but nothing may be written'
    message = tool_error([str(resnet), '--source', 'official-convnext',
                          '--out-dir', str(out)])
    assert 'holds a ResNet' in message and 'official-convnext' in message
    message = tool_error([str(convnext), '--source', 'mmpretrain-spark',
                          '--out-dir', str(out)])
    assert "ConvNeXt authors' names" in message

    unknown = tmp_path / 'unknown.pth'
    torch.save({'state_dict': {'encoder.blocks.0.attn.qkv.weight':
                               torch.zeros(3, 3)}, 'meta': {}}, unknown)
    message = tool_error([str(unknown), '--out-dir', str(out)])
    assert 'cannot tell which backbone' in message
    assert 'encoder.blocks.0.attn.qkv.weight' in message

    cut = tmp_path / 'cut.pth'
    data = resnet.read_bytes()
    cut.write_bytes(data[:len(data) // 3])
    assert 'truncated' in tool_error([str(cut), '--out-dir', str(out)])

    weights = torch.load(resnet)
    del weights['layer4.1.bn2.running_var']
    torch.save({'module': weights, 'arch': 'resnet18'}, tmp_path / 'hole.pth')
    message = tool_error([str(tmp_path / 'hole.pth'), '--out-dir', str(out)])
    assert '1 missing: layer4.1.bn2.running_var' in message
    assert not out.exists()

    # the real tool: exit status 1, one line on stderr, no traceback
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'export_backbone.py'),
         str(unknown), '--out-dir', str(out)], capture_output=True, text=True,
        timeout=300, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert result.returncode == 1
    assert result.stdout == ''
    assert result.stderr.count('\n') == 1 and result.stderr.startswith(
        'error: cannot tell which backbone'), result.stderr
    assert not out.exists()


@pytest.mark.slow
def test_official_resnet200_release_goes_to_timm(tmp_path, capsys):
    """``res200_1kpretrained_timm_style.pth``: timm is the only toolbox with
    ResNet-200, so that is the default and only format; asking mmdet or
    Detectron2 for it is a one-line error."""
    import timm
    model = official_resnet('resnet200')
    path = tmp_path / 'res200_1kpretrained_timm_style.pth'
    torch.save({'module': model.state_dict(), 'arch': 'resnet200',
                'is_pretrain': True}, path)
    written, report = run_export(path, tmp_path / 'out', capsys)
    assert list(written) == ['timm']
    assert '[timm] resnet200: 2 missing (fc.weight, fc.bias), 0 unexpected' \
        in report
    target = timm.create_model('resnet200', pretrained=False)
    result = target.load_state_dict(torch.load(written['timm']), strict=False)
    assert sorted(result.missing_keys) == ['fc.bias', 'fc.weight']
    assert result.unexpected_keys == []
    x = image()
    assert_same(resnet_stages(target, x), resnet_stages(model, x),
                'timm resnet200')

    message = tool_error([str(path), '--formats', 'mmdet',
                          '--out-dir', str(tmp_path / 'bad')])
    assert 'no depth 200' in message and '--formats timm' in message
    with pytest.raises(CheckpointError, match='Detectron2 has no ResNet-200'):
        export_backbone.export(str(path), str(tmp_path / 'bad'),
                               formats=['detectron2'])
    assert not (tmp_path / 'bad').exists()


def test_name_tables_map_the_real_models_keys_both_ways():
    """Every key of torchvision's and timm's ConvNeXt and of Detectron2's
    ResNet maps to a key of the canonical model (mmpretrain ConvNeXt, mmdet
    ResNet) and back: the tables cover both namings, in both directions."""
    canonical = {key for key in MMPretrainConvNeXt(
        arch=dict(depths=list(TINY_DEPTHS), channels=list(TINY_DIMS)),
        out_indices=(0, 1, 2, 3)).state_dict()
        if not CONVNEXT_STAGE_NORM.match(key)}
    dims = list(TINY_DIMS) + [None]
    torchvision_keys = {key for key in torchvision.models.convnext.ConvNeXt(
        [CNBlockConfig(dims[i], dims[i + 1], depth)
         for i, depth in enumerate(TINY_DEPTHS)]).state_dict()
        if not key.startswith('classifier.')}
    timm_keys = {key for key in TimmConvNeXt(
        depths=TINY_DEPTHS, dims=TINY_DIMS, num_classes=0).state_dict()
        if not key.startswith('head.')}
    resnet = set(ResNet(depth=50).state_dict())
    detectron2 = set(expected_detectron2_names(50))
    for table, other, mine in ((CONVNEXT_TORCHVISION, torchvision_keys, canonical),
                               (CONVNEXT_TIMM, timm_keys, canonical),
                               (RESNET_DETECTRON2, detectron2, resnet)):
        assert {table.to_canonical(key) for key in other} == mine
        assert {table.from_canonical(key) for key in mine} == other
