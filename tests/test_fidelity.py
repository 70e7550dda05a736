"""Our SparK is the SparK the paper measured: float64 equality and recipe checks.

- The whole model (sparse ResNet-50 encoder, densify, decoder, loss, every
  gradient, running statistics) against an independent implementation that is
  installed here: mmpretrain 1.2.0's ``SparK`` with ``SparseResNet`` and the
  decoder options that reproduce the official ``LightDecoder`` (whose sparse
  encoder follows the official code line by line). Weights are copied, BN
  affines, running statistics and mask tokens randomised (so a wrong statistic
  cannot hide), the same input and mask, float64: <= 1e-9 relative.
- A float64 step runs for every backbone family we support.
- What mmpretrain cannot reproduce (ConvNeXt's densify, inits, weight-decay
  groups, the per-iteration schedule, drop-path rates) is checked against
  reference code written here from the official definitions
  (keyu-tian/SparK: pretrain/spark.py, pretrain/decoder.py,
  pretrain/utils/lr_control.py, pretrain/main.py, pretrain/models/).
"""
import math

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS

from spark_mm.registry import MODELS, PARAM_SCHEDULERS
from _official_schedule import official_lr_wd

SIZE, WIDTH, BATCH = 96, 256, 4  # a 3x3 patch grid: 4 visible, 5 masked
FLOAT64 = dict(rel=1e-9)


def relative_error(value, reference):
    return ((value - reference).abs().max()
            / reference.abs().max().clamp_min(1e-300)).item()


# ---- the whole model against mmpretrain's SparK ------------------------------
def build_mmpretrain_spark():
    init_default_scope('spark_mm')  # mmpretrain's norms resolve through ours
    return MMPRETRAIN_MODELS.build(dict(
        type='mmpretrain.SparK',
        backbone=dict(type='SparseResNet', depth=50, out_indices=(0, 1, 2, 3),
                      norm_cfg=dict(type='SparseBatchNorm2d')),
        # mid_channels=0 (= in), ReLU6, no last activation, dense BN: the
        # official UNetBlock.
        neck=dict(type='SparKLightDecoder', feature_dim=WIDTH, upsample_ratio=32,
                  mid_channels=0, norm_cfg=dict(type='BN'), last_act=False),
        head=dict(type='SparKPretrainHead',
                  loss=dict(type='PixelReconstructionLoss', criterion='L2')),
        input_size=SIZE, downsample_raito=32, mask_ratio=0.6,
        enc_dec_norm_cfg=dict(type='SparseBatchNorm2d'), enc_dec_norm_dim=2048))


def our_name(mmpretrain_name: str) -> str:
    """mmpretrain's SparK parameter name -> ours (the backbone's are equal)."""
    for theirs, ours in (('enc_dec_norms', 'densify.norms'),
                         ('enc_dec_projectors', 'densify.projections'),
                         ('mask_tokens', 'densify.mask_tokens'),
                         ('neck.decoder.', 'neck.blocks.'),
                         ('.conv_blocks.0.', '.'), ('neck.proj.', 'neck.predict.')):
        mmpretrain_name = mmpretrain_name.replace(theirs, ours)
    return mmpretrain_name


def randomise(model, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=gen, dtype=param.dtype)
            if param.dim() == 1 and name.endswith('weight'):
                param.copy_(1 + 0.5 * noise)  # BN scales around 1
            else:
                param.copy_(noise * (0.05 if param.dim() > 1 else 0.5))
        for name, buffer in model.named_buffers():
            if 'running_var' in name:
                buffer.copy_(torch.rand(buffer.shape, generator=gen) + 0.5)
            elif 'running_mean' in name:
                buffer.copy_(torch.randn(buffer.shape, generator=gen))


class PresetMask:
    """A mask generator that returns the mask the test chose."""

    def __init__(self, active_b1hw):
        self.active_b1hw = active_b1hw

    def __call__(self, batch, grid_h, grid_w, device=None):
        return self.active_b1hw

    def num_visible(self, grid_h, grid_w):
        return int(self.active_b1hw[0].sum())


# SparK's fast_path: the plain algorithm, and the plug-in taking every
# implementation that is not the plain one (channels_last).
PATHS = dict(plain=False, fast=dict(type='SparKFastPath',
                                    tuner=dict(mode='fast', cache_file='')))


@pytest.mark.slow
@pytest.mark.parametrize('path', list(PATHS))
def test_spark_r50_equals_mmpretrain_spark_in_float64(path):
    torch.manual_seed(0)
    reference = build_mmpretrain_spark()
    ours = MODELS.build(dict(
        type='SparK', backbone=dict(type='ResNet', depth=50, out_indices=(0, 1, 2, 3)),
        neck=dict(type='LightUNetDecoder', width=WIDTH), input_size=SIZE,
        mask_ratio=0.6, fast_path=PATHS[path]))
    randomise(reference)
    weights = {our_name(key): value for key, value in reference.state_dict().items()}
    assert weights.keys() == ours.state_dict().keys()
    ours.load_state_dict(weights)
    reference.double().train()
    ours.double().train()
    if path == 'fast':
        ours.to(memory_format=torch.channels_last)

    gen = torch.Generator().manual_seed(2)
    images = torch.randn(BATCH, 3, SIZE, SIZE, generator=gen, dtype=torch.float64)
    active = reference.mask(images.shape, images.device,
                            generator=torch.Generator().manual_seed(5))
    reference.mask = lambda shape, device, generator=None: active
    ours.mask_generator = PresetMask(active)

    reference_loss = reference.loss(images, [])['loss']
    reference_loss.backward()
    loss = ours.loss(images, [])['loss']
    loss.backward()

    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(reference_loss.item(), **FLOAT64)
    ours_params = dict(ours.named_parameters())
    assert len(ours_params) == 221
    for name, param in reference.named_parameters():
        error = relative_error(ours_params[our_name(name)].grad, param.grad)
        assert error <= 1e-9, f'{name}: gradient off by {error:.2e}'
    ours_buffers = dict(ours.named_buffers())
    for name, buffer in reference.named_buffers():
        if buffer.is_floating_point():
            error = relative_error(ours_buffers[our_name(name)], buffer)
            assert error <= 1e-9, f'{name}: off by {error:.2e}'


# ---- float64 for every backbone family -----------------------------------------
BACKBONES = {
    'mmpretrain ResNet': dict(type='ResNet', depth=18, base_channels=8,
                              stem_channels=8, out_indices=(0, 1, 2, 3)),
    'mmdet ResNet': dict(type='mmdet.ResNet', depth=18, base_channels=8,
                         stem_channels=8, out_indices=(0, 1, 2, 3)),
    'mmpretrain ConvNeXt': dict(type='ConvNeXt',
                                arch=dict(depths=[1, 1, 1, 1], channels=[16, 32, 64, 128]),
                                out_indices=(0, 1, 2, 3), gap_before_final_norm=False),
    'timm ResNet': dict(type='TIMMBackbone', model_name='resnet18', features_only=True,
                        pretrained=False, out_indices=(1, 2, 3, 4)),
}


@pytest.mark.parametrize('path', list(PATHS))
@pytest.mark.parametrize('family', list(BACKBONES))
def test_float64_step_runs_for_every_backbone_family(family, path):
    densify_norm = (dict(type='LN2d', eps=1e-6) if 'ConvNeXt' in family
                    else dict(type='BN'))
    model = MODELS.build(dict(
        type='SparK', backbone=BACKBONES[family],
        neck=dict(type='LightUNetDecoder', width=64), densify_norm_cfg=densify_norm,
        input_size=64, mask_ratio=0.5, fast_path=PATHS[path]))
    model.init_weights()
    model.double().train()
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    loss = model.loss(images, [])['loss']
    loss.backward()
    assert loss.dtype == torch.float64 and torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float64 for g in grads)
    samples = model.predict(images)
    assert samples[0].pred_img.dtype == torch.float64


# ---- ConvNeXt: densify and output norms as the official code ---------------------
def test_convnext_s_config_is_the_official_densify():
    cfg = Config.fromfile('configs/spark/convnext_s_pretrain.py')
    model = MODELS.build(cfg.model)
    projections = model.densify.projections
    # official pretrain/spark.py: Identity only at i == 0 when the widths
    # match; a 3x3 conv at every finer scale.
    assert isinstance(projections[0], nn.Identity)
    for scale, (cin, cout) in enumerate([(384, 384), (192, 192), (96, 96)], 1):
        conv = projections[scale]
        assert isinstance(conv, nn.Conv2d)
        assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (cin, cout, (3, 3))
        assert conv.bias is not None
    # the official encoder returns raw stage outputs: no output norms
    assert not any(key.startswith('backbone.norm') for key in model.state_dict())
    assert cfg.optim_wrapper.optimizer.betas == (0.9, 0.999)  # arg_util.py: ada 0.999


def test_r50_densify_is_one_1x1_then_3x3_convs():
    model = MODELS.build(dict(type='SparK', backbone=dict(
        type='ResNet', depth=50, out_indices=(0, 1, 2, 3)),
        neck=dict(type='LightUNetDecoder', width=768)))
    kernels = [p.kernel_size for p in model.densify.projections]
    widths = [(p.in_channels, p.out_channels) for p in model.densify.projections]
    assert kernels == [(1, 1), (3, 3), (3, 3), (3, 3)]
    assert widths == [(2048, 768), (1024, 384), (512, 192), (256, 96)]


def test_convnext_raw_stage_outputs_reach_the_densify_step():
    """With output_norms=False the encoder features are the stage outputs."""
    arch = dict(depths=[1, 1, 1, 1], channels=[16, 32, 64, 128])
    model = MODELS.build(dict(
        type='SparK', backbone=dict(type='ConvNeXt', arch=arch, out_indices=(0, 1, 2, 3),
                                    gap_before_final_norm=False),
        neck=dict(type='LightUNetDecoder', width=128),
        densify_norm_cfg=dict(type='LN2d', eps=1e-6), input_size=64)).double()
    backbone = model.backbone
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    features = backbone(images)
    x = images
    for index in range(4):  # the official hierarchical forward, by hand
        x = backbone.stages[index](backbone.downsample_layers[index](x))
        torch.testing.assert_close(features[index], x, rtol=1e-12, atol=1e-12)
    kept = MODELS.build(dict(
        type='SparK', backbone=dict(type='ConvNeXt', arch=arch, out_indices=(0, 1, 2, 3),
                                    gap_before_final_norm=False),
        neck=dict(type='LightUNetDecoder', width=128), output_norms=True,
        densify_norm_cfg=dict(type='LN2d', eps=1e-6), input_size=64))
    assert 'backbone.norm3.weight' in kept.state_dict()


# ---- initialisation as the official code ------------------------------------------
def test_decoder_and_mask_token_init_follow_the_official_code():
    torch.manual_seed(0)
    model = MODELS.build(dict(type='SparK', backbone=dict(
        type='ResNet', depth=18, out_indices=(0, 1, 2, 3)),
        neck=dict(type='LightUNetDecoder', width=768)))
    model.init_weights()
    first = model.neck.blocks[0]
    # Kaiming normal, fan_out, ReLU gain: a (cin, cout, 4, 4) transposed-conv
    # weight has fan_out = cin * 16 in torch's convention.
    upsample = first.upsample.weight
    expected_std = math.sqrt(2.0 / (upsample.shape[0] * 16))
    assert upsample.std().item() == pytest.approx(expected_std, rel=0.01)
    assert expected_std == pytest.approx(0.0128, abs=1e-4)
    assert torch.count_nonzero(first.upsample.bias) == 0
    # convolutions: trunc_normal(std .02), biases zero; norms 1 / 0
    assert first.conv1.weight.std().item() == pytest.approx(0.02, rel=0.01)
    assert torch.count_nonzero(model.neck.predict.bias) == 0
    assert torch.equal(first.norm1.weight, torch.ones_like(first.norm1.weight))
    # mask tokens: trunc_normal(std .02) truncated at +-.02 (absolute)
    tokens = torch.cat([t.flatten() for t in model.densify.mask_tokens])
    assert tokens.abs().max() <= 0.02
    assert tokens.abs().max() > 0.019 and tokens.std() > 0.009


# ---- weight decay groups: official get_param_groups ---------------------------------
def official_no_decay(name: str, param: torch.Tensor) -> bool:
    """pretrain/utils/lr_control.py with main.py's nowd_keys."""
    nowd_keys = {'cls_token', 'pos_embed', 'mask_token', 'gamma'}
    return (len(param.shape) == 1 or name.endswith('.bias')
            or any(key in name for key in nowd_keys))


@pytest.mark.parametrize('config', ['configs/spark/r50_pretrain.py',
                                    'configs/spark/convnext_s_pretrain.py'])
def test_weight_decay_groups_are_the_official_ones(config):
    cfg = Config.fromfile(config)
    model_cfg = cfg.model
    model_cfg.use_pos_embed = True  # its embeddings must not decay either
    if model_cfg.backbone.type == 'ResNet':
        model_cfg.backbone.update(depth=18)
    else:
        model_cfg.backbone.update(arch=dict(depths=[1, 1, 2, 1],
                                            channels=[16, 32, 64, 128]))
        model_cfg.neck.width = 128
    for key in ('norm_cfg',):
        model_cfg.backbone.pop(key, None)
    model_cfg.neck.norm_cfg = dict(type='BN')
    if model_cfg.densify_norm_cfg.type == 'SyncBN':
        model_cfg.densify_norm_cfg = dict(type='BN')
    model = MODELS.build(model_cfg)
    init_default_scope('spark_mm')
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    decay_of = {}
    for group in optim_wrapper.optimizer.param_groups:
        for param in group['params']:
            decay_of[id(param)] = group['weight_decay']
    checked = 0
    for name, param in model.named_parameters():
        expected = 0.0 if official_no_decay(name, param) else 0.04
        assert decay_of[id(param)] == pytest.approx(expected), name
        checked += 1
    assert checked == len(decay_of)
    if 'convnext' in config:
        gammas = [n for n, _ in model.named_parameters() if n.endswith('gamma')]
        assert gammas and all(decay_of[id(dict(model.named_parameters())[n])] == 0
                              for n in gammas)


# ---- the per-iteration schedule: official lr_wd_annealing ----------------------------
def test_schedule_is_the_official_per_iteration_formula():
    cfg = Config.fromfile('configs/spark/ablations/convnext_s_800e.py')
    epochs, warmup, iters_per_epoch = 10, 3, 7
    schedulers_cfg = []
    for scheduler in cfg.param_scheduler:  # the configs' own schedulers, shortened
        scheduler = dict(scheduler)
        scheduler['end'] = epochs
        if 'warmup' in scheduler:
            scheduler['warmup'] = warmup
        schedulers_cfg.append(scheduler)
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    optimizer = torch.optim.SGD([
        dict(params=[model[0].weight], weight_decay=0.04),
        dict(params=[model[0].bias, *model[1].parameters()], weight_decay=0.0)],
        lr=0.5, weight_decay=0.04)
    schedulers = [PARAM_SCHEDULERS.build(dict(s, optimizer=optimizer),
                                         default_args=dict(epoch_length=iters_per_epoch))
                  for s in schedulers_cfg]
    total = epochs * iters_per_epoch
    for iteration in range(total):
        lr, wd = official_lr_wd(0.5, 0.04, 0.2, iteration, warmup * iters_per_epoch,
                                total)
        for group in optimizer.param_groups:
            assert group['lr'] == pytest.approx(lr, rel=1e-12, abs=1e-15)
        assert optimizer.param_groups[0]['weight_decay'] == pytest.approx(wd, rel=1e-12)
        assert optimizer.param_groups[1]['weight_decay'] == 0.0
        optimizer.step()
        for scheduler in schedulers:
            scheduler.step()
    assert lr == pytest.approx(0.5 * 0.001) and wd == pytest.approx(0.2)


# ---- drop path per block: the official encoders are timm / authors' models ----------
def test_drop_path_rates_per_block_match_the_official_encoders():
    timm = pytest.importorskip('timm')
    from mmpretrain.models import ConvNeXt, ResNet

    ours = ResNet(depth=50, drop_path_rate=0.05)
    ours_rates = [float(block.drop_path.drop_prob) if hasattr(block.drop_path, 'drop_prob')
                  else 0.0 for layer in (ours.layer1, ours.layer2, ours.layer3, ours.layer4)
                  for block in layer]
    reference = timm.create_model('resnet50', drop_path_rate=0.05)
    timm_rates = [float(block.drop_path.drop_prob) if block.drop_path is not None
                  else 0.0 for layer in (reference.layer1, reference.layer2,
                                         reference.layer3, reference.layer4)
                  for block in layer]
    assert ours_rates == pytest.approx(timm_rates, abs=1e-7)
    # official ConvNeXt: linspace(0, rate, sum(depths)) over the blocks
    convnext = ConvNeXt(arch='small', drop_path_rate=0.2)
    blocks = [block for stage in convnext.stages for block in stage]
    convnext_rates = [float(getattr(block.drop_path, 'drop_prob', 0.0)) for block in blocks]
    expected = torch.linspace(0, 0.2, 36).tolist()
    assert convnext_rates == pytest.approx(expected, abs=1e-7)


# ---- the optimizer step: timm's LAMB with max_grad_norm=5 (official main.py) --------
def test_lamb_step_equals_timm_lamb_with_the_official_clip():
    timm_optim = pytest.importorskip('timm.optim')
    cfg = Config.fromfile('configs/spark/r50_pretrain.py')
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 1)).double()
    reference = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8),
                              nn.Conv2d(8, 4, 1)).double()
    reference.load_state_dict(model.state_dict())
    init_default_scope('spark_mm')
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    lr = cfg.optim_wrapper.optimizer.lr
    no_decay = [p for n, p in reference.named_parameters() if official_no_decay(n, p)]
    decay = [p for n, p in reference.named_parameters() if not official_no_decay(n, p)]
    timm_lamb = timm_optim.Lamb([dict(params=decay, weight_decay=0.04),
                                 dict(params=no_decay, weight_decay=0.0)],
                                lr=lr, betas=(0.9, 0.95), max_grad_norm=5.0)
    images = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    for step in range(3):
        for net in (model, reference):
            net.zero_grad()
            (net(images).square().sum() * 100).backward()  # gradient norm >> 5
        total_norm = torch.cat([p.grad.flatten() for p in model.parameters()]).norm()
        assert total_norm > 5
        optim_wrapper.step()
        timm_lamb.step()
        for (name, ours), theirs in zip(model.named_parameters(), reference.parameters()):
            assert relative_error(ours, theirs) <= 1e-9, (step, name)


@pytest.mark.slow
@pytest.mark.parametrize('config', ['configs/spark/r50_pretrain.py',
                                    'configs/spark/convnext_s_pretrain.py'])
def test_full_size_config_takes_a_float64_step(config):
    """The recipes' own models (ResNet-50, ConvNeXt-S with its official densify)
    train in float64: a step at 64 px, single-process norms."""
    cfg = Config.fromfile(config)
    model_cfg = cfg.model
    model_cfg.backbone.pop('norm_cfg', None)
    model_cfg.neck.norm_cfg = dict(type='BN')
    if model_cfg.densify_norm_cfg.type == 'SyncBN':
        model_cfg.densify_norm_cfg = dict(type='BN')
    model_cfg.input_size = 64
    model = MODELS.build(model_cfg)
    model.init_weights()
    model.double().train()
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64).contiguous(
        memory_format=torch.channels_last)
    loss = model.loss(images, [])['loss']
    loss.backward()
    assert loss.dtype == torch.float64 and torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads) > 100 and all(g.dtype == torch.float64 for g in grads)
