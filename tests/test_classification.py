"""Classification transfer: the ImageNet fine-tuning recipe against the official
SparK values, the layer-wise lr decay against the official rule (every
parameter), the pieces mmpretrain lacked (pixel random erasing, kNN), and the
real chain on CPU: SparK pretraining -> fine-tune / linear probe / kNN on a
generated labelled folder -> accuracy from mmpretrain's evaluator."""
import glob
import importlib.util
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import spark_mm  # noqa: E402,F401
import spark_mm.classification  # noqa: E402,F401
from spark_mm.apis import revert_sync_bn_in_config  # noqa: E402
from spark_mm.classification import PixelRandomErasing  # noqa: E402
from spark_mm.classification.layer_decay import resnet_cls_layer_ids  # noqa: E402
from spark_mm.datasets.synthetic import make_labelled_folder  # noqa: E402
from spark_mm.registry import MODELS  # noqa: E402

from _reliability import free_port  # noqa: E402

CONFIGS = os.path.join(ROOT, 'configs', 'imagenet')

# keyu-tian/SparK downstream_imagenet/arg.py, HP_DEFAULT_VALUES, as read there:
# (bs, ep, wp_ep, opt, base_lr, lr_scale, wd, mixup, rep_aug, drop_path, ema)
OFFICIAL = {
    'convnext_small': (4096, 400, 20, 'adam', 0.0002, 0.7, 0.01, 0.8, 3, 0.3, 0.9999),
    'convnext_base': (4096, 400, 20, 'adam', 0.0001, 0.7, 0.01, 0.8, 3, 0.4, 0.9999),
    'convnext_large': (4096, 200, 10, 'adam', 0.0001, 0.7, 0.02, 0.8, 3, 0.5, 0.9999),
    'resnet50': (4096, 300, 5, 'lamb', 0.002, 0.7, 0.02, 0.1, 0, 0.05, 0.9999),
    'resnet101': (4096, 300, 5, 'lamb', 0.001, 0.8, 0.02, 0.1, 0, 0.2, 0.9999),
    'resnet152': (4096, 300, 5, 'lamb', 0.001, 0.8, 0.02, 0.1, 0, 0.2, 0.9999),
    'resnet200': (4096, 300, 5, 'lamb', 0.001, 0.8, 0.02, 0.1, 0, 0.2, 0.9999),
}
RECIPE_CONFIGS = {
    'resnet50': 'resnet50_spark-ft_8xb512-lamb-coslr-300e_in1k.py',
    'resnet101': 'resnet101_spark-ft_8xb512-lamb-coslr-300e_in1k.py',
    'resnet152': 'resnet152_spark-ft_8xb512-lamb-coslr-300e_in1k.py',
    'resnet200': 'resnet200_spark-ft_8xb512-lamb-coslr-300e_in1k.py',
    'convnext_small': 'convnext-s_spark-ft_8xb512-adamw-coslr-400e_in1k.py',
    'convnext_base': 'convnext-b_spark-ft_8xb512-adamw-coslr-400e_in1k.py',
    'convnext_large': 'convnext-l_spark-ft_8xb512-adamw-coslr-200e_in1k.py',
}
NUM_GPUS = 8  # the '8xb512' of the names


def load(name, **overrides):
    cfg = Config.fromfile(os.path.join(CONFIGS, name))
    cfg.merge_from_dict(overrides)
    revert_sync_bn_in_config(cfg)
    return cfg


def build(cfg):
    with DefaultScope.overwrite_default_scope('spark_mm'):
        model = MODELS.build(cfg.model)
        return model, build_optim_wrapper(model, cfg.optim_wrapper)


def per_param(model, optim_wrapper):
    by_param = {id(p): (group['lr'], group['weight_decay'])
                for group in optim_wrapper.optimizer.param_groups
                for p in group['params']}
    assert len(by_param) == sum(1 for _ in model.parameters())
    return {name: by_param[id(p)] for name, p in model.named_parameters()}


# ------------------------------------------------- the official rules, restated
def official_no_decay(name, param):
    """downstream_imagenet/lr_decay.py get_param_groups, nowd_keys of util.py."""
    return (param.ndim == 1 or name.endswith('.bias') or
            any(k in name for k in ('cls_token', 'pos_embed', 'mask_token',
                                    'gamma')))


def official_resnet_scale_exp(model, name, fallback=None):
    """downstream_imagenet/models/__init__.py resnets_get_layer_id_and_scale_exp
    on a timm ResNet's parameter names (``fallback``: the block groups of a
    depth its table lacks)."""
    L2, L3 = len(model.layer2), len(model.layer3)
    table = {(4, 6): (2, 3), (4, 23): (2, 3), (8, 36): (4, 4),
             (24, 36): (4, 4), (30, 48): (5, 6)}
    blk2, blk3 = table[(L2, L3)] if fallback is None else fallback
    N2, N3 = math.ceil(L2 / blk2 - 1e-5), math.ceil(L3 / blk3 - 1e-5)
    N = 2 + N2 + N3
    if name.startswith('layer'):
        stage, block = int(name.split('.')[0][5:]), int(name.split('.')[1])
        layer_id = {1: 1, 2: 2 + block // blk2, 3: 2 + N2 + block // blk3,
                    4: N}[stage]
    elif name.startswith('fc.'):
        layer_id = N + 1
    else:
        layer_id = 0
    return N + 1 - layer_id


def official_convnext_scale_exp(depths, name):
    """downstream_imagenet/models/__init__.py convnext_get_layer_id_and_scale_exp
    on the ConvNeXt authors' parameter names."""
    N = 12 if depths[-2] > 9 else 6
    if name.startswith('downsample_layers'):
        stage = int(name.split('.')[1])
        layer_id = 0 if stage == 0 else stage + 1 if stage in (1, 2) else N
    elif name.startswith('stages'):
        stage, block = int(name.split('.')[1]), int(name.split('.')[2])
        layer_id = stage + 1 if stage in (0, 1) else \
            3 + block // 3 if stage == 2 else N
    else:
        layer_id = N + 1
    return N + 1 - layer_id


def official_convnext_names(depths):
    """Parameter names of downstream_imagenet/models/convnext_official.py."""
    names = ['downsample_layers.0.0.weight', 'downsample_layers.0.0.bias',
             'downsample_layers.0.1.weight', 'downsample_layers.0.1.bias']
    for i in range(1, 4):
        names += [f'downsample_layers.{i}.{j}.{p}' for j in (0, 1)
                  for p in ('weight', 'bias')]
    for i, depth in enumerate(depths):
        for j in range(depth):
            names += [f'stages.{i}.{j}.{p}' for p in (
                'gamma', 'dwconv.weight', 'dwconv.bias', 'norm.weight',
                'norm.bias', 'pwconv1.weight', 'pwconv1.bias',
                'pwconv2.weight', 'pwconv2.bias')]
    return names + ['norm.weight', 'norm.bias', 'head.weight', 'head.bias']


def to_official_convnext(name):
    """mmpretrain ImageClassifier(ConvNeXt) name -> the authors' name."""
    name = re.sub(r'^backbone\.norm3\.', 'norm.', name)
    name = re.sub(r'^head\.fc\.', 'head.', name)
    name = name.replace('backbone.', '', 1)
    for ours, theirs in (('depthwise_conv', 'dwconv'),
                         ('pointwise_conv1', 'pwconv1'),
                         ('pointwise_conv2', 'pwconv2')):
        name = name.replace(ours, theirs)
    return name


# ----------------------------------------------------------- layer-wise decay
# every ResNet fine-tuning config: (config, timm model, its (L2, L3) block groups
# when the official table lacks them: R18 takes R50's, as documented)
RESNET_DECAY_CONFIGS = {
    'resnet50': (RECIPE_CONFIGS['resnet50'], 'resnet50', None),
    'resnet101': (RECIPE_CONFIGS['resnet101'], 'resnet101', None),
    'resnet152': (RECIPE_CONFIGS['resnet152'], 'resnet152', None),
    'resnet200': (RECIPE_CONFIGS['resnet200'], 'resnet200', None),
    'custom_r50': ('custom_r50_finetune.py', 'resnet50', None),
    'demo_r18': ('demo_r18_finetune.py', 'resnet18', (2, 3)),
}


@pytest.mark.parametrize('key', sorted(RESNET_DECAY_CONFIGS))
def test_resnet_layer_decay_equals_the_official_rule_for_every_parameter(key):
    """The config's own constructor (mmpretrain's for R50/101/152, ours for
    R18 and timm's R200) gives every parameter the official lr and wd."""
    import timm
    config, timm_name, fallback = RESNET_DECAY_CONFIGS[key]
    cfg = load(config)
    base_lr = cfg.optim_wrapper.optimizer.lr
    decay = cfg.optim_wrapper.paramwise_cfg.layer_decay_rate
    wd = cfg.optim_wrapper.optimizer.weight_decay
    model, optim_wrapper = build(cfg)
    lrs = per_param(model, optim_wrapper)
    reference = timm.create_model(timm_name, num_classes=1000)
    official = dict(reference.named_parameters())
    ours = {}
    for name, param in model.named_parameters():
        timm_name = re.sub(r'^(backbone\.(timm_model\.)?|head\.)', '', name)
        ours[timm_name] = name
        if not timm_name.startswith('fc.'):
            assert official[timm_name].shape == param.shape, name
        lr, weight_decay = lrs[name]
        exp = official_resnet_scale_exp(reference, timm_name, fallback)
        assert lr == pytest.approx(base_lr * decay**exp, rel=1e-12), name
        expected_wd = 0.0 if official_no_decay(timm_name, param) else wd
        assert weight_decay == expected_wd, name
    assert set(ours) == set(official)  # every parameter, no more, no less
    # N + 2 lr levels: the stem's decay**(N+1) down to the classifier's lr
    stem_exp = official_resnet_scale_exp(reference, 'conv1.weight', fallback)
    assert len({lr for lr, _ in lrs.values()}) == stem_exp + 1
    assert lrs['head.fc.weight'][0] == pytest.approx(base_lr, rel=1e-12)


def test_resnet_layer_ids_of_the_deeper_official_depths():
    import timm
    from mmpretrain.models.backbones import ResNet
    r152 = ['backbone.' + n for n, _ in ResNet(152).named_parameters()]
    r200 = timm.create_model('resnet200', num_classes=0)
    r200_names = ['backbone.timm_model.' + n for n, _ in r200.named_parameters()]
    for names, last, reference in ((r152, 13, None), (r200_names, 17, r200)):
        ids, n = resnet_cls_layer_ids(names + ['head.fc.weight'])
        assert n == last
        assert ids['head.fc.weight'] == last + 1
        if reference is not None:
            for name in names:
                local = name[len('backbone.timm_model.'):]
                assert last + 1 - ids[name] == \
                    official_resnet_scale_exp(reference, local), name
    ids, _ = resnet_cls_layer_ids(r152)
    # R152: layer2 (8 blocks) in groups of 4, layer3 (36) in groups of 4
    assert ids['backbone.layer2.4.conv1.weight'] == 3
    assert ids['backbone.layer3.0.conv1.weight'] == 4
    assert ids['backbone.layer3.35.conv1.weight'] == 12
    with pytest.raises(ValueError, match='expects a ResNet'):
        resnet_cls_layer_ids(['backbone.stages.0.0.gamma'])


def test_resnet_cls_constructor_needs_its_layer_decay_rate():
    from spark_mm.classification.layer_decay import \
        ResNetClsLayerDecayOptimWrapperConstructor
    with pytest.raises(ValueError, match='layer_decay_rate'):
        ResNetClsLayerDecayOptimWrapperConstructor(
            dict(type='OptimWrapper', optimizer=dict(type='Lamb', lr=1e-3)))


def test_mmpretrain_convnext_layer_decay_equals_the_official_rule():
    """mmpretrain's LearningRateDecayOptimWrapperConstructor with ConvNeXt's
    get_layer_depth gives the official per-parameter lr and weight decay."""
    bs, _, _, _, base_lr, decay, wd = OFFICIAL['convnext_small'][:7]
    model, optim_wrapper = build(load(RECIPE_CONFIGS['convnext_small']))
    lrs = per_param(model, optim_wrapper)
    depths = [3, 3, 27, 3]
    mapped = {}
    for name, param in model.named_parameters():
        official = to_official_convnext(name)
        mapped[official] = name
        lr, weight_decay = lrs[name]
        exp = official_convnext_scale_exp(depths, official)
        assert lr == pytest.approx(base_lr * bs / 256 * decay**exp,
                                   rel=1e-12), name
        expected_wd = 0.0 if official_no_decay(official, param) else wd
        assert weight_decay == pytest.approx(expected_wd), name
    assert set(mapped) == set(official_convnext_names(depths))
    assert lrs['backbone.downsample_layers.0.0.weight'][0] == pytest.approx(
        base_lr * 16 * decay**13)
    assert lrs['backbone.stages.2.26.pointwise_conv1.weight'][0] == \
        pytest.approx(base_lr * 16 * decay**2)


# -------------------------------------------------------------------- recipes
@pytest.mark.parametrize('key', sorted(RECIPE_CONFIGS))
def test_full_size_recipe_matches_the_official_table(key):
    bs, ep, wp_ep, opt, base_lr, lr_scale, wd, mixup, rep_aug, drop_path, \
        ema = OFFICIAL[key]
    raw = Config.fromfile(os.path.join(CONFIGS, RECIPE_CONFIGS[key]))
    assert raw.default_scope == 'spark_mm'
    assert raw.train_dataloader.batch_size * NUM_GPUS == bs
    assert raw.train_cfg.max_epochs == ep
    # main.py ep_eval: every 5 epochs in the first third, then every epoch
    assert raw.train_cfg.val_interval == 5
    assert [tuple(x) for x in raw.train_cfg.dynamic_intervals] == [(ep // 3, 1)]
    scheduler, = raw.param_scheduler
    assert scheduler.type == 'SparKWarmupCosineLR'
    assert (scheduler.warmup, scheduler.end) == (wp_ep, ep)
    assert scheduler.convert_to_iter_based and scheduler.by_epoch
    optim = raw.optim_wrapper
    assert 'clip_grad' not in optim  # official clip -1
    assert optim.optimizer.lr == pytest.approx(base_lr * bs / 256, rel=1e-12)
    assert optim.optimizer.weight_decay == wd
    assert optim.optimizer.betas == (0.9, 0.999)
    if opt == 'lamb':
        assert optim.optimizer.type == 'Lamb'
        assert optim.optimizer.eps == 1e-6
        assert optim.optimizer.bias_correction is False
        assert optim.optimizer.always_adapt is True
        assert optim.optimizer.max_grad_norm == 1e7
        # mmpretrain's ResNet.get_layer_depth, ours for timm's R200
        assert optim.constructor == (
            'ResNetClsLayerDecayOptimWrapperConstructor' if key == 'resnet200'
            else 'LearningRateDecayOptimWrapperConstructor')
        assert optim.paramwise_cfg.layer_decay_rate == lr_scale
    else:
        assert optim.optimizer.type == 'AdamW' and optim.optimizer.eps == 1e-8
        assert optim.constructor == 'LearningRateDecayOptimWrapperConstructor'
        assert optim.paramwise_cfg.layer_decay_rate == lr_scale
    model = raw.model
    assert model.backbone.drop_path_rate == drop_path
    # mmpretrain's ResNet suppresses its zero_init_residual only for the type
    # name 'Pretrained'; the others refuse weights that do not fit
    assert model.backbone.init_cfg.type == (
        'Pretrained' if model.backbone.type == 'ResNet'
        else 'spark_mm.CheckedPretrained')
    mix = model.train_cfg.augments  # util.py BatchMixup arguments
    assert mix.type == 'SparKBatchMixup'
    assert (mix.mixup_alpha, mix.cutmix_alpha, mix.prob, mix.switch_prob) == (
        mixup, 1.0, 1.0, 0.5)
    loss = model.head.loss
    assert loss.type == 'LabelSmoothLoss' and loss.label_smooth_val == 0.1
    assert loss.mode == 'original'
    assert loss.use_sigmoid is (opt == 'lamb')  # BCE with LAMB, soft CE else
    sampler = raw.train_dataloader.sampler
    if rep_aug:
        assert sampler.type == 'RepeatAugSampler'
        assert sampler.num_repeats == rep_aug
    else:
        assert sampler.type == 'DefaultSampler'
    ema_hook, = [h for h in raw.custom_hooks if h.type == 'EMAHook']
    assert ema_hook.momentum == pytest.approx(1 - ema)
    assert ema_hook.update_buffers is True
    assert {'NanGuardHook', 'StepSeedHook'} <= {h.type for h in raw.custom_hooks}
    if key == 'resnet200':
        assert model.backbone.type == 'TIMMBackbone'
        assert model.backbone.model_name == 'resnet200'
        assert raw.sync_bn == 'torch'
    elif opt == 'lamb':
        assert model.backbone.norm_cfg.type == 'SyncBN'  # official sbn=True
        assert model.backbone.depth == int(key[6:])
    else:
        assert model.backbone.arch == key.split('_')[1]

    # data.py: TrivialAugmentWide (img_size < 384), timm random erasing
    # (0.25, pixel), eval resize floor(224 / 0.95) = 235 + center crop
    train = [t.type for t in raw.train_dataloader.dataset.pipeline]
    assert train == ['LoadImageFromFile', 'RandomResizedCrop', 'RandomFlip',
                     'NumpyToPIL', 'torchvision/TrivialAugmentWide',
                     'PILToNumpy', 'PixelRandomErasing', 'PackInputs']
    crop = raw.train_dataloader.dataset.pipeline[1]
    assert (crop.scale, crop.interpolation) == (224, 'bicubic')
    assert raw.train_dataloader.dataset.pipeline[6].erase_prob == 0.25
    resize = raw.val_dataloader.dataset.pipeline[1]
    assert (resize.scale, resize.interpolation) == (
        math.floor(224 / 0.95), 'bicubic')
    assert raw.val_dataloader.dataset.pipeline[2].crop_size == 224

    # the full-size model and optimizer build; the lr groups span the decay
    built, optim_wrapper = build(load(RECIPE_CONFIGS[key]))
    assert built.backbone.__class__.__name__ == model.backbone.type
    lrs = sorted({group['lr'] for group in optim_wrapper.optimizer.param_groups})
    n_layers = {'resnet50': 8, 'resnet101': 14, 'resnet152': 15,
                'resnet200': 19}.get(key, 14)
    assert len(lrs) == n_layers
    assert lrs[-1] == pytest.approx(base_lr * bs / 256)
    assert lrs[0] == pytest.approx(base_lr * bs / 256 * lr_scale**(n_layers - 1))
    drop_paths = [m.drop_prob for m in built.modules()
                  if type(m).__name__ == 'DropPath']
    assert max(drop_paths) == pytest.approx(drop_path)


def test_timm_backbone_fine_tuning_loads_the_timm_pretraining_export(tmp_path):
    """R200's path (TIMMBackbone, timm's resnet200 as the official model),
    with timm's resnet18: the export of a features_only pretraining backbone
    loads into the fine-tuning classifier, every tensor."""
    cfg = load(RECIPE_CONFIGS['resnet200'])
    with DefaultScope.overwrite_default_scope('spark_mm'):
        pretrained = MODELS.build(dict(type='TIMMBackbone',
                                       model_name='resnet18',
                                       features_only=True,
                                       out_indices=(1, 2, 3, 4)))
    for value in pretrained.state_dict().values():
        if value.is_floating_point():
            value.uniform_(-1, 1)
    path = str(tmp_path / 'backbone.pth')
    torch.save({'state_dict': pretrained.state_dict()}, path)
    cfg.model.backbone.model_name = 'resnet18'
    cfg.model.backbone.init_cfg.checkpoint = path
    cfg.model.head.in_channels = 512
    with DefaultScope.overwrite_default_scope('spark_mm'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    loaded = model.backbone.state_dict()
    assert set(loaded) == set(pretrained.state_dict())
    for key, value in pretrained.state_dict().items():
        assert torch.equal(loaded[key], value), key
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 1000)


@pytest.mark.parametrize('key', ['resnet50', 'convnext_large'])
def test_lr_per_iteration_equals_the_official_annealing(key):
    """downstream_imagenet/lr_decay.py lr_wd_annealing, every iteration of the
    run (4 iterations per epoch here), on two groups with lr scales."""
    from spark_mm.registry import PARAM_SCHEDULERS
    _, ep, wp_ep = OFFICIAL[key][:3]
    scheduler_cfg = dict(load(RECIPE_CONFIGS[key]).param_scheduler[0])
    peak, scale, iters = 0.032, 0.7**3, 4
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
    optimizer = torch.optim.SGD([dict(params=[params[0]], lr=peak),
                                 dict(params=[params[1]], lr=peak * scale)],
                                lr=peak)
    scheduler_cls = PARAM_SCHEDULERS.get(scheduler_cfg.pop('type'))
    scheduler_cfg.pop('convert_to_iter_based')
    scheduler = scheduler_cls.build_iter_from_epoch(
        optimizer, epoch_length=iters, **scheduler_cfg)
    wp_it, max_it = wp_ep * iters, ep * iters
    for cur_it in range(max_it):
        if cur_it < wp_it:
            cur_lr = 0.005 * peak + 0.995 * peak * cur_it / wp_it
        else:
            ratio = (cur_it - wp_it) / (max_it - 1 - wp_it)
            cur_lr = 0.001 * peak + 0.999 * peak * (
                0.5 + 0.5 * math.cos(math.pi * ratio))
        lrs = [group['lr'] for group in optimizer.param_groups]
        assert lrs == pytest.approx([cur_lr, cur_lr * scale], rel=1e-9), cur_it
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize('key', ['resnet50', 'convnext_small'])
def test_head_loss_is_the_official_criterion_on_the_mixed_target(key):
    from mmpretrain.structures import DataSample
    cfg = load(RECIPE_CONFIGS[key])
    with DefaultScope.overwrite_default_scope('spark_mm'):
        head = MODELS.build(cfg.model.head)
    torch.manual_seed(0)
    channels = cfg.model.head.in_channels
    feats = (torch.randn(6, channels), )
    lam = 0.7
    labels = torch.tensor([3, 10, 999, 0, 5, 7])
    mixed = lam * F.one_hot(labels, 1000) + \
        (1 - lam) * F.one_hot(labels.flip(0), 1000)
    samples = [DataSample().set_gt_score(t.float()) for t in mixed]
    loss = head.loss(feats, samples)['loss']
    logits = head(feats)
    target = mixed * 0.9 + 0.1 / 1000  # official mixup_target, smoothing 0.1
    if key == 'resnet50':  # timm BinaryCrossEntropy: mean over all elements
        expected = F.binary_cross_entropy_with_logits(logits, target)
    else:  # timm SoftTargetCrossEntropy
        expected = (-target * logits.log_softmax(-1)).sum(-1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_linear_probe_and_knn_configs_follow_their_protocols():
    cfg = load('resnet50_spark-linear_8xb32-sgd-steplr-100e_in1k.py')
    backbone = cfg.model.backbone
    assert (backbone.frozen_stages, backbone.norm_eval) == (4, True)
    assert backbone.init_cfg.type == 'Pretrained'
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.momentum,
            optimizer.weight_decay) == ('SGD', 30.0, 0.9, 0.0)
    assert cfg.param_scheduler[0].milestones == [60, 80]
    assert cfg.train_cfg.max_epochs == 100
    assert cfg.train_dataloader.batch_size * NUM_GPUS == 256
    assert {'NanGuardHook', 'StepSeedHook'} <= {h.type for h in cfg.custom_hooks}
    with DefaultScope.overwrite_default_scope('spark_mm'):
        model = MODELS.build(cfg.model)
    model.train()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ['head.fc.weight', 'head.fc.bias']
    assert not model.backbone.bn1.training  # BN statistics frozen too

    for name, arch in (('resnet50_spark-knn-k20_in1k.py', 'ResNet'),
                       ('convnext-s_spark-knn-k20_in1k.py', 'ConvNeXt')):
        cfg = load(name)
        assert (cfg.model.k, cfg.model.temperature) == (20, 0.07)
        bank = cfg.model.prototype  # mmpretrain's retriever bank
        assert bank.dataset.split == 'train'
        assert bank.sampler.round_up is False  # no image counted twice
        assert cfg.test_dataloader.dataset.split == 'val'
        with DefaultScope.overwrite_default_scope('spark_mm'):
            knn = MODELS.build(cfg.model)
        assert type(knn.backbone).__name__ == arch
        assert not any(p.requires_grad for p in knn.parameters())
    # an official-style ConvNeXt release has no output norm: kept fresh
    from mmengine.runner.checkpoint import load_state_dict
    weights = {k: v for k, v in knn.backbone.state_dict().items()
               if not k.startswith('norm3.')}
    load_state_dict(knn, weights)


def test_demo_folder_is_generated_on_first_use(tmp_path):
    from spark_mm.datasets.synthetic import SparKDemoLabelledImages
    root = str(tmp_path / 'demo')
    val = SparKDemoLabelledImages(root=root, split='val', num_train=1,
                                  num_val=2, image_size=16)
    assert len(val) == 8
    assert list(val.metainfo['classes']) == sorted(
        ['h_stripes', 'v_stripes', 'checker', 'disc'])
    assert sorted(val.get_gt_labels().tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert len(SparKDemoLabelledImages(root=root, split='train')) == 4
    with pytest.raises(ValueError, match="split must be 'train' or 'val'"):
        SparKDemoLabelledImages(root=root, split='test')


def test_make_labelled_folder_tool_writes_the_generated_folder(tmp_path):
    """tools/make_labelled_folder.py writes what the generator writes, byte
    for byte; bad sizes end in one line."""
    tool = [sys.executable, os.path.join(ROOT, 'tools', 'make_labelled_folder.py')]
    made = subprocess.run(tool + [str(tmp_path / 'tool'), '--num-train', '1',
                                  '--num-val', '1', '--size', '16', '--seed', '3'],
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    reference = make_labelled_folder(str(tmp_path / 'reference'), num_train=1,
                                     num_val=1, image_size=16, seed=3)
    files = sorted(os.path.relpath(path, reference) for path in glob.glob(
        os.path.join(reference, '*', '*', '*.png')))
    assert len(files) == 8
    for name in files:
        with open(os.path.join(reference, name), 'rb') as want, \
                open(str(tmp_path / 'tool' / name), 'rb') as got:
            assert got.read() == want.read(), name
    bad = subprocess.run(tool + [str(tmp_path / 'bad'), '--num-val', '0'],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and bad.stderr.count('\n') == 1
    assert 'num_train, num_val >= 1' in bad.stderr


def test_own_folder_with_another_class_count_stops_in_one_line(tmp_path):
    from mmengine.runner import Runner
    folder = make_labelled_folder(str(tmp_path / 'folder'), num_train=2,
                                  num_val=1, image_size=32)
    cfg = load('demo_r18_finetune.py', **{
        'model.head.num_classes': 5, 'data_preprocessor.num_classes': 5,
        'model.backbone.init_cfg': None,
        'train_dataloader.dataset.root': folder,
        'val_dataloader.dataset.root': folder,
        'test_dataloader.dataset.root': folder,
        'train_dataloader.num_workers': 0, 'val_dataloader.num_workers': 0,
        'work_dir': str(tmp_path / 'work')})
    runner = Runner.from_cfg(cfg)
    with pytest.raises(ValueError, match=r'the training data has 4 classes .* '
                       r'num_classes=5: add --cfg-options '
                       r'model.head.num_classes=4 data_preprocessor.num_classes=4'
                       r' model.head.loss.loss_weight=0.25$'):
        runner.train()


# ------------------------------------------------------- pieces mmpretrain lacked
def test_pixel_random_erasing_gives_unit_normal_noise_after_normalization():
    mean, std = [103.53, 116.28, 123.675], [57.375, 57.12, 58.395]
    erase = PixelRandomErasing(mean=mean, std=std, erase_prob=1.0)
    np.random.seed(0)
    img = np.full((224, 224, 3), 7, dtype=np.uint8)
    out = erase.transform(dict(img=img.copy()))['img']
    assert out.dtype == np.float32
    normalized = (out - np.array(mean)) / np.array(std)
    erased = out != 7
    area = erased.any(-1).mean()
    assert 0.02 * 0.8 < area < 1 / 3 * 1.2
    noise = normalized[erased]
    assert abs(noise.mean()) < 0.05 and abs(noise.std() - 1) < 0.05
    assert out.max() > 255 or out.min() < 0  # unclipped, as timm's
    kept = PixelRandomErasing(mean=mean, std=std, erase_prob=0.0).transform(
        dict(img=img.copy()))['img']
    assert kept.dtype == np.float32 and np.array_equal(kept, img)
    with pytest.raises(ValueError, match='erase_prob'):
        PixelRandomErasing(mean=mean, std=std, erase_prob=2)


def official_batch_mixup(x, y, mixup_alpha, cutmix_alpha=1.0, prob=1.0,
                         switch_prob=0.5):
    """downstream_imagenet/mixup.py BatchMixup (mode 'batch', correct_lam),
    re-stated: the reference the augment must equal draw for draw."""
    x = x.clone()
    lam, use_cutmix = 1.0, False
    if np.random.rand() < prob:
        use_cutmix = np.random.rand() < switch_prob
        alpha = cutmix_alpha if use_cutmix else mixup_alpha
        lam = float(np.random.beta(alpha, alpha))
    if lam != 1.0:
        if use_cutmix:
            h, w = x.shape[-2:]
            ratio = np.sqrt(1 - lam)
            cut_h, cut_w = int(h * ratio), int(w * ratio)
            cy, cx = np.random.randint(0, h), np.random.randint(0, w)
            yl, yh = np.clip(cy - cut_h // 2, 0, h), np.clip(cy + cut_h // 2, 0, h)
            xl, xh = np.clip(cx - cut_w // 2, 0, w), np.clip(cx + cut_w // 2, 0, w)
            lam = 1.0 - (yh - yl) * (xh - xl) / float(h * w)
            x[:, :, yl:yh, xl:xh] = x.flip(0)[:, :, yl:yh, xl:xh]
        else:
            x = x * lam + x.flip(0) * (1.0 - lam)
    return x, y * lam + y.flip(0) * (1.0 - lam)


@pytest.mark.parametrize('mixup_alpha', [0.1, 0.8])
def test_batch_mixup_equals_the_official_one_draw_for_draw(mixup_alpha):
    from spark_mm.classification import SparKBatchMixup
    mixer = SparKBatchMixup(mixup_alpha=mixup_alpha)
    torch.manual_seed(0)
    x = torch.randn(6, 3, 20, 24)
    y = F.one_hot(torch.tensor([0, 1, 2, 3, 4, 1]), 5).float()
    kinds = set()
    for seed in range(40):
        np.random.seed(seed)
        ours = mixer(x, y)
        np.random.seed(seed)
        reference = official_batch_mixup(x, y, mixup_alpha)
        assert torch.allclose(ours[0], reference[0], atol=1e-6), seed
        assert torch.allclose(ours[1], reference[1], atol=1e-6), seed
        assert not torch.equal(ours[1], y) or torch.equal(ours[0], x)
        np.random.seed(seed)
        kinds.add(mixer.draw()[1])
    assert kinds == {True, False}  # CutMix and mixup both exercised
    assert torch.allclose(ours[1].sum(1), torch.ones(6))


def tiny_knn(prototype=None, **kwargs):
    prototype = prototype or dict(dataset=dict(type='CustomDataset'))
    with DefaultScope.overwrite_default_scope('spark_mm'):
        return MODELS.build(dict(
            type='KNNClassifier',
            backbone=dict(type='ResNet', depth=18, out_indices=(3, )),
            neck=dict(type='GlobalAveragePooling'), prototype=prototype,
            **kwargs))


def reference_knn_scores(query, bank, labels, k, temperature, num_classes):
    """The weighted kNN vote from its definition, in float64, one query at a
    time: cosine similarity to every bank row, the k largest vote exp(s / T)."""
    scores = []
    for q in query.double():
        sims = sorted(((float(q @ b) / float(q.norm() * b.norm()), int(label))
                       for b, label in zip(bank.double(), labels)), reverse=True)
        votes = [0.0] * num_classes
        for sim, label in sims[:k]:
            votes[label] += math.exp(sim / temperature)
        scores.append([v / sum(votes) for v in votes])
    return torch.tensor(scores, dtype=torch.float64)


@pytest.mark.parametrize('k', [1, 5, 20])
def test_knn_vote_equals_a_float64_reference_knn(k):
    from spark_mm.classification import knn_vote
    generator = torch.Generator().manual_seed(k)
    num_classes, dim = 5, 16
    labels = torch.randint(0, num_classes, (60, ), generator=generator)
    centres = torch.randn(num_classes, dim, generator=generator)
    bank = centres[labels] + torch.randn(60, dim, generator=generator)
    query = centres[torch.arange(12) % num_classes] + \
        torch.randn(12, dim, generator=generator)
    expected = reference_knn_scores(query, bank, labels, k, 0.07, num_classes)
    scores = knn_vote(query.double(), bank.double(), labels, k, 0.07, num_classes)
    assert torch.allclose(scores, expected, rtol=1e-9, atol=1e-12)
    assert torch.equal(scores.argmax(1), expected.argmax(1))  # top-1
    assert scores.argmax(1).eq(torch.arange(12) % num_classes).float().mean() > 0.5


def test_knn_classifier_votes_over_mmpretrain_retriever_bank(tmp_path):
    """The bank collected by mmpretrain's retriever from a labelled folder,
    the labels from its dataset: predictions equal the reference kNN over the
    same images' features."""
    root = make_labelled_folder(str(tmp_path / 'folder'), num_train=3,
                                num_val=1, image_size=32)
    pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
    prototype = dict(batch_size=5, num_workers=0,
                     sampler=dict(type='DefaultSampler', shuffle=False,
                                  round_up=False),
                     dataset=dict(type='CustomDataset', data_root=root,
                                  data_prefix='train', with_label=True,
                                  pipeline=pipeline))
    model = tiny_knn(prototype, num_classes=4, k=3, temperature=0.1).eval()
    with DefaultScope.overwrite_default_scope('spark_mm'):
        loader = Runner.build_dataloader(prototype)
        queries = Runner.build_dataloader(dict(prototype, dataset=dict(
            prototype['dataset'], data_prefix='val')))
        bank, labels = [], []
        for batch in loader:
            data = model.data_preprocessor(batch, False)
            bank.append(model.extract_feat(data['inputs']))
            labels += [int(sample.gt_label) for sample in data['data_samples']]
        batch = next(iter(queries))
        data = model.data_preprocessor(batch, False)
        samples = model.predict(data['inputs'])
    assert torch.equal(model.prototype_labels, torch.tensor(labels))
    assert sorted(set(labels)) == [0, 1, 2, 3] and len(labels) == 12
    expected = reference_knn_scores(model.extract_feat(data['inputs']),
                                     torch.cat(bank), labels, 3, 0.1, 4)
    got = torch.stack([sample.pred_score for sample in samples]).double()
    assert torch.allclose(got, expected, atol=1e-5)
    assert [int(s.pred_label) for s in samples] == expected.argmax(1).tolist()
    with pytest.raises(ValueError, match='nothing to train'):
        model(data['inputs'], mode='loss')


def test_knn_loads_a_backbone_export_and_refuses_a_foreign_checkpoint():
    model = tiny_knn(num_classes=3)
    with DefaultScope.overwrite_default_scope('spark_mm'):
        donor = MODELS.build(dict(type='ResNet', depth=18, out_indices=(3, )))
    export = {k: v + 1 for k, v in donor.state_dict().items()
              if v.is_floating_point()}
    from mmengine.runner.checkpoint import load_state_dict
    load_state_dict(model, dict(export))
    loaded = model.backbone.state_dict()
    assert torch.equal(loaded['layer2.0.conv1.weight'],
                       export['layer2.0.conv1.weight'])
    load_state_dict(model, {'backbone.' + k: v - 1 for k, v in export.items()})
    assert torch.equal(model.backbone.state_dict()['layer2.0.conv1.weight'],
                       export['layer2.0.conv1.weight'] - 1)
    with pytest.raises(ValueError, match='lacks .* backbone'):
        load_state_dict(model, {'backbone.conv1.weight':
                                export['conv1.weight']})
    wrong = dict(export, **{'conv1.weight': torch.zeros(64, 3, 3, 3)})
    with pytest.raises(ValueError, match=r'lacks 0 and reshapes 1 .* '
                       r'conv1.weight'):
        load_state_dict(model, wrong)
    with pytest.raises(ValueError, match='prototype=<a dataloader config'):
        tiny_knn('features.pth', num_classes=3)


# -------------------------------------------------------------- the real chain
def run_tool(args, cwd, timeout=600, expect_ok=True):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable] + args, cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=timeout)
    if expect_ok:
        assert result.returncode == 0, (result.stdout[-3000:] +
                                        result.stderr[-3000:])
    return result


def last_accuracy(work_dir):
    path, = glob.glob(os.path.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    return [row for row in rows if 'accuracy/top1' in row][-1]['accuracy/top1']


def demo_roots(folder):
    return [f'{loader}.dataset.root={folder}'
            for loader in ('train_dataloader', 'val_dataloader')]


def loader_options(prefix):
    return [f'{prefix}.num_workers=0', f'{prefix}.persistent_workers=False']


@pytest.fixture(scope='module')
def chain(tmp_path_factory):
    """A real short SparK pretraining of a ResNet-18 and a labelled folder."""
    tmp = tmp_path_factory.mktemp('cls_chain')
    run_tool([
        os.path.join(ROOT, 'tools', 'train.py'),
        os.path.join(ROOT, 'configs', 'spark', 'demo_r18.py'),
        '--work-dir', str(tmp / 'pretrain'), '--cfg-options',
        'train_cfg.max_epochs=1', 'train_dataloader.batch_size=8',
        f'train_dataloader.dataset.data_root={tmp / "images"}',
        'train_dataloader.dataset.num_images=16',
        'default_hooks.checkpoint.interval=1'
    ] + loader_options('train_dataloader'), cwd=tmp)
    folder = make_labelled_folder(str(tmp / 'labelled'), num_train=16,
                                  num_val=8, image_size=64)
    return dict(tmp=tmp, folder=folder,
                export=tmp / 'pretrain' / 'backbone.pth',
                checkpoint=tmp / 'pretrain' / 'epoch_1.pth')


def train_from_chain(chain, config, work, epochs, options):
    """tools/train.py on the chain's labelled folder, evaluated at the end."""
    run_tool([
        os.path.join(ROOT, 'tools', 'train.py'),
        os.path.join(CONFIGS, config), '--work-dir', str(work),
        '--cfg-options', *demo_roots(chain['folder']), *options,
        f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
        f'default_hooks.checkpoint.interval={epochs}'
    ] + loader_options('train_dataloader') + loader_options('val_dataloader'),
        cwd=chain['tmp'])


@pytest.mark.slow
def test_chain_fine_tunes_the_pretrained_backbone_past_chance(chain):
    work, epochs = chain['tmp'] / 'finetune', 3
    train_from_chain(chain, 'demo_r18_finetune.py', work, epochs, [
        f'model.backbone.init_cfg.checkpoint={chain["export"]}',
        f'param_scheduler.0.end={epochs}'])
    accuracy = last_accuracy(str(work))
    assert accuracy > 50, accuracy  # 4 balanced classes: chance is 25
    export = torch.load(chain['export'])['state_dict']
    tuned = torch.load(work / f'epoch_{epochs}.pth', map_location='cpu',
                       weights_only=False)['state_dict']
    name = 'layer1.0.conv1.weight'  # started from the SparK weights, moved
    delta = (tuned['backbone.' + name] - export[name]).abs().max()
    assert 0 < delta < 0.1 * export[name].abs().max()


@pytest.mark.slow
def test_chain_linear_probe_from_the_pretraining_checkpoint(chain):
    work, epochs = chain['tmp'] / 'linear', 2
    train_from_chain(chain, 'demo_r18_linear.py', work, epochs, [
        f'model.backbone.init_cfg.checkpoint={chain["checkpoint"]}',
        'model.backbone.init_cfg.prefix=backbone.',
        'param_scheduler.0.milestones=[1]'])
    assert last_accuracy(str(work)) > 50
    # the backbone is frozen, BN statistics included: it is the SparK one
    export = torch.load(chain['export'])['state_dict']
    probed = torch.load(work / f'epoch_{epochs}.pth', map_location='cpu',
                        weights_only=False)['state_dict']
    for key, value in export.items():
        assert torch.equal(probed['backbone.' + key], value), key


@pytest.mark.slow
def test_chain_knn_accuracy_from_the_backbone_export(chain):
    result = run_tool([
        os.path.join(ROOT, 'tools', 'test.py'),
        os.path.join(CONFIGS, 'demo_r18_knn.py'), str(chain['export']),
        '--work-dir', str(chain['tmp'] / 'knn'), '--cfg-options',
        f'test_dataloader.dataset.root={chain["folder"]}',
        f'model.prototype.dataset.root={chain["folder"]}'
    ], cwd=chain['tmp'])
    output = result.stdout + result.stderr
    assert 'kNN bank: 64 images, 4 classes' in output
    accuracy = float(re.search(r'metrics: accuracy/top1=([\d.]+)',
                               output).group(1))
    assert accuracy > 50

    # a checkpoint of another architecture: one line, not a random backbone
    spec = importlib.util.spec_from_file_location(
        'test_tool', os.path.join(ROOT, 'tools', 'test.py'))
    test_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_tool)
    with pytest.raises(SystemExit, match=r'error: the checkpoint lacks \d+ and '
                       r"reshapes \d+ of the backbone's \d+ weights"):
        test_tool.main([
            os.path.join(CONFIGS, 'demo_r18_knn.py'), str(chain['export']),
            '--work-dir', str(chain['tmp'] / 'knn_r50'), '--cfg-options',
            'model.backbone.depth=50',
            f'test_dataloader.dataset.root={chain["folder"]}',
            f'model.prototype.dataset.root={chain["folder"]}'])


@pytest.mark.slow
@pytest.mark.dist
def test_dist_test_sh_on_cpu_equals_one_process(chain):
    """tools/dist_test.sh with 2 gloo ranks (no GPU): the kNN bank is gathered
    from both ranks, the predictions of both are collected, and the accuracy
    equals the single-process run's on the same export."""
    options = ['--cfg-options', f'test_dataloader.dataset.root={chain["folder"]}',
               f'model.prototype.dataset.root={chain["folder"]}']
    accuracies = []
    for name, command in (
            ('single', [sys.executable, os.path.join(ROOT, 'tools', 'test.py')]),
            ('two_ranks', ['bash', os.path.join(ROOT, 'tools', 'dist_test.sh')])):
        config = os.path.join(CONFIGS, 'demo_r18_knn.py')
        args = [config, str(chain['export'])]
        if name == 'two_ranks':
            args.append('2')
        env = dict(os.environ, OMP_NUM_THREADS='1', PORT=free_port())
        result = subprocess.run(
            command + args + ['--work-dir', str(chain['tmp'] / f'knn_{name}')] + options,
            cwd=chain['tmp'], env=env, capture_output=True, text=True, timeout=600)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-3000:]
        found = re.findall(r'metrics: accuracy/top1=([\d.]+)', output)
        assert len(found) == 1, output[-3000:]  # printed by rank 0 only
        accuracies.append(float(found[0]))
        if name == 'two_ranks':
            assert 'kNN bank: 64 images, 4 classes' in output
    assert accuracies[0] == accuracies[1] and accuracies[0] > 50, accuracies


@pytest.mark.slow
def test_chain_amp_runs_and_a_nan_stops_with_one_line(chain):
    """--amp (bf16 autocast on CPU) trains a step; an lr that blows the
    weights up ends in NanGuardHook's one-line error, nothing saved."""
    work = chain['tmp'] / 'nan'
    result = run_tool([
        os.path.join(ROOT, 'tools', 'train.py'),
        os.path.join(CONFIGS, 'demo_r18_finetune.py'), '--work-dir', str(work),
        '--amp', '--cfg-options', *demo_roots(chain['folder']),
        f'model.backbone.init_cfg.checkpoint={chain["export"]}',
        'optim_wrapper.optimizer.lr=1e30', 'train_dataloader.batch_size=4',
        'train_dataloader.dataset.indices=12', 'default_hooks.logger.interval=1',
        'train_cfg.max_epochs=2', 'param_scheduler.0.end=2',
    ] + loader_options('train_dataloader') + loader_options('val_dataloader'),
        cwd=chain['tmp'], expect_ok=False)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert 'AutocastOptimWrapper' in output
    first = re.search(r'Epoch\(train\)\s+\[1\]\[1/3\].*loss: ([-\d.naife+]+)',
                      output)
    assert first and math.isfinite(float(first.group(1))), output[-3000:]
    last_line = result.stderr.strip().splitlines()[-1]
    assert re.match(r'error: loss=(nan|inf) at iteration \d+ \(epoch \d+\); '
                    r'training stopped without saving', last_line), last_line
    assert 'Traceback' not in result.stderr
    assert not glob.glob(str(work / '*.pth'))
