"""mmpretrain's ResNet bottlenecks on visible rows equal the dense sparse blocks.

The rows path (spark_mm/models/fast/resnet_rows.py) must compute what the
dense block with its sparse (re-masking) layers computes: float64, the same
loss, every gradient and running statistic to 1e-10 relative, with drop path
(same random numbers), stride-2 blocks, a fully masked sample, and SyncBN over
two gloo ranks. Eval mode and unmasked forwards run the dense block.
"""
import copy
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from spark_mm.models.fast import resnet_rows, visible_rows
from spark_mm.models.fast.resnet_rows import (SparseBottleneckRowsMixin,
                                              SparseResLayerRowsMixin)
from spark_mm.registry import MODELS

SIZE, BATCH = 96, 4  # a 3x3 patch grid
RTOL = 1e-10


def build(size=SIZE, depth=50, norm='BN', drop_path_rate=0.3, channels_last=True,
          fixed=None, **backbone):
    """SparK with the fast path taking every rows implementation (``fixed``:
    the tuner's choices pinned per operation)."""
    torch.manual_seed(0)
    backbone = dict(dict(type='ResNet', depth=depth, base_channels=8, stem_channels=8,
                         out_indices=(0, 1, 2, 3), norm_cfg=dict(type=norm),
                         drop_path_rate=drop_path_rate), **backbone)
    if backbone['type'] == 'mmdet.ResNet':
        del backbone['drop_path_rate']
    model = MODELS.build(dict(
        type='SparK',
        backbone=backbone,
        neck=dict(type='LightUNetDecoder', width=32, norm_cfg=dict(type=norm)),
        densify_norm_cfg=dict(type=norm), input_size=size, mask_ratio=0.6,
        fast_path=dict(type='SparKFastPath', channels_last=channels_last,
                       tuner=dict(mode='fast', cache_file='', fixed=fixed))))
    # Non-trivial BN affines and running statistics: every term matters.
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(torch.rand(module.weight.shape, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.3)
                module.running_var.copy_(torch.rand(module.running_var.shape,
                                                    generator=gen) + 0.5)
    return model.double().train()


def dense_copy(model):
    """``model`` with every stage and the stem on the dense sparse path (the
    copy's layers hold the copied tuner), the rest as in ``model``."""
    ref = copy.deepcopy(model)
    ref.fast_path.tuner.fixed = {'ResNet stage': 'maps', 'ResNet stem': 'maps'}
    return ref


def data(batch=BATCH, size=SIZE, seed=3):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, size, size, generator=gen, dtype=torch.float64)
    grid = size // 32
    active = torch.rand(batch, 1, grid, grid, generator=gen) < 0.45
    active[0] = False           # a fully masked sample
    active[1, 0, 0, 0] = True   # every other sample sees something
    active[2:, 0, -1, -1] = True
    return images, active


def step(model, images, active, seed=7):
    torch.manual_seed(seed)  # drop path draws the same numbers in both
    pred = model.reconstruct(images, active)
    loss = model.head.loss(pred, images, active)
    loss.backward()
    return loss.detach(), pred.detach()


def relative_error(value, reference):
    return ((value - reference).abs().max()
            / reference.abs().max().clamp_min(1e-300)).item()


def compare(model, ref):
    """Largest relative errors of gradients and floating buffers."""
    grads, buffers = {}, {}
    ref_params = dict(ref.named_parameters())
    for name, param in model.named_parameters():
        other = ref_params[name].grad
        assert (param.grad is None) == (other is None), name
        if other is not None:
            grads[name] = relative_error(param.grad, other)
    ref_buffers = dict(ref.named_buffers())
    for name, buffer in model.named_buffers():
        if buffer.is_floating_point():
            buffers[name] = relative_error(buffer, ref_buffers[name])
        else:
            assert torch.equal(buffer, ref_buffers[name]), name
    return grads, buffers


def count_rows_blocks(model, monkeypatch):
    calls = []
    original = SparseBottleneckRowsMixin.forward_rows

    def forward_rows(self, *args, **kwargs):
        calls.append(self)
        return original(self, *args, **kwargs)
    monkeypatch.setattr(SparseBottleneckRowsMixin, 'forward_rows', forward_rows)
    return calls


@pytest.mark.parametrize('gather_convs', [True, False])
def test_rows_path_equals_dense_sparse_path_in_float64(gather_convs, monkeypatch):
    """3x3 convs as gather + matrix product or on the scattered map (the
    tuner's two implementations)."""
    model = build(fixed=None if gather_convs else {'conv on visible rows': 'dense conv'})
    ref = dense_copy(model)
    images, active = data()
    calls = count_rows_blocks(model, monkeypatch)
    gathers = []
    gather = visible_rows._GatherRows.apply
    monkeypatch.setattr(visible_rows._GatherRows, 'apply',
                        lambda x, index: gathers.append(tuple(x.shape)) or gather(x, index))
    convs = []
    for name in ('_SparseConvRows', 'SparseConvGather'):
        apply = getattr(resnet_rows, name).apply
        monkeypatch.setattr(getattr(resnet_rows, name), 'apply',
                            (lambda name, apply: lambda *args: convs.append(name)
                             or apply(*args))(name, apply))
    loss, pred = step(model, images, active)
    assert convs == ['SparseConvGather' if gather_convs else '_SparseConvRows'] * 16
    # A map is gathered only where no rows are known: the stem's conv output.
    # The first stage takes the stem's rows, each stage the previous stage's
    # (its strided shortcut samples them), and so do the densify step's norms.
    assert gathers == [(BATCH, 8, SIZE // 2, SIZE // 2)]
    blocks = [m for m in model.modules() if isinstance(m, SparseBottleneckRowsMixin)]
    assert len(calls) == len(blocks) == 16
    assert any(b.downsample is not None and b.conv2.stride == (2, 2) for b in blocks)
    assert sum(isinstance(m, SparseResLayerRowsMixin) for m in model.modules()) == 4
    calls.clear()
    ref_loss, ref_pred = step(ref, images, active)
    assert not calls
    assert abs(loss - ref_loss) <= RTOL * abs(ref_loss)
    assert relative_error(pred, ref_pred) <= RTOL
    grads, buffers = compare(model, ref)
    assert len(grads) == len(list(model.parameters()))
    worst = max(grads, key=grads.get)
    assert grads[worst] <= RTOL, f'{worst}: {grads[worst]:.2e}'
    assert any('running_mean' in name for name in buffers)
    worst = max(buffers, key=buffers.get)
    assert buffers[worst] <= RTOL, f'{worst}: {buffers[worst]:.2e}'


def test_drop_path_draws_the_dense_blocks_random_numbers():
    """With a high drop rate some samples' branches are dropped; the rows path
    drops the same ones (and the generator ends in the same state)."""
    model = build(drop_path_rate=0.9)
    ref = dense_copy(model)
    images, active = data()
    loss, _ = step(model, images, active)
    after = torch.rand(4)
    ref_loss, _ = step(ref, images, active)
    assert torch.equal(after, torch.rand(4))
    assert abs(loss - ref_loss) <= RTOL * abs(ref_loss)
    grads, _ = compare(model, ref)
    assert max(grads.values()) <= RTOL


def test_a_wrong_shortcut_mask_is_caught(monkeypatch):
    """The comparison above is sharp: a stride-2 shortcut that sampled the
    input at the wrong positions (here: the first fine visible rows instead of
    the coarse mask's positions) fails it."""
    model = build()
    ref = dense_copy(model)
    images, active = data()

    def wrong(index_out, in_shape, out_shape, stride):
        height, width = in_shape[-2:]
        mask = model.sparse_context.visible_rows(height, width)
        return mask[:index_out.numel()]
    monkeypatch.setattr(resnet_rows, '_strided_rows', wrong)
    loss, _ = step(model, images, active)
    ref_loss, _ = step(ref, images, active)
    grads, buffers = compare(model, ref)
    assert max(max(grads.values()), max(buffers.values())) > 1e-3


def test_eval_and_unmasked_forwards_run_the_dense_block(monkeypatch):
    model = build()
    images, active = data()
    calls = count_rows_blocks(model, monkeypatch)
    model.eval()
    with torch.no_grad():
        model.reconstruct(images, active)      # eval, masked
    model.train()
    model.extract_feat(images.contiguous(memory_format=torch.channels_last))
    assert not calls
    # Eval with a mask: the same as the dense sparse path (running stats).
    ref = dense_copy(model).eval()
    model.eval()
    with torch.no_grad():
        pred = model.reconstruct(images, active)
        ref_pred = ref.reconstruct(images, active)
    assert torch.equal(pred, ref_pred)


def test_nchw_input_and_maps_choice_keep_the_dense_block(monkeypatch):
    images, active = data()
    for model in (build(channels_last=False),   # NCHW maps have no rows
                  build(fixed={'ResNet stage': 'maps', 'ResNet stem': 'maps'})):
        calls = count_rows_blocks(model, monkeypatch)
        step(model, images, active)
        assert not calls


def test_uncovered_blocks_fall_back_to_the_dense_block(monkeypatch):
    """avg_down shortcuts (AvgPool + conv) take the generic shortcut; caffe
    style (strided conv1) keeps the dense sparse block. Both equal it."""
    for backbone, expect_rows in ((dict(avg_down=True), True),
                                  (dict(style='caffe'), False)):
        model = build(**backbone)
        ref = dense_copy(model)
        images, active = data()
        calls = count_rows_blocks(model, monkeypatch)
        loss, _ = step(model, images, active)
        assert bool(calls) == expect_rows
        ref_loss, _ = step(ref, images, active)
        assert abs(loss - ref_loss) <= RTOL * abs(ref_loss)
        grads, buffers = compare(model, ref)
        assert max(grads.values()) <= RTOL and max(buffers.values()) <= RTOL


@pytest.mark.parametrize('norm_eval', [False, True])
def test_mmdet_resnet_bottlenecks_take_the_rows_path(norm_eval, monkeypatch):
    """mmdet's ResNet (no drop path; norm_eval keeps its BN in eval mode)."""
    model = build(type='mmdet.ResNet', norm_eval=norm_eval)
    model.train()
    ref = dense_copy(model)
    images, active = data()
    calls = count_rows_blocks(model, monkeypatch)
    loss, _ = step(model, images, active)
    assert len(calls) == 16
    ref_loss, _ = step(ref, images, active)
    assert abs(loss - ref_loss) <= RTOL * abs(ref_loss)
    grads, buffers = compare(model, ref)
    assert max(grads.values()) <= RTOL and max(buffers.values()) <= RTOL


# ---- SyncBN over two gloo ranks --------------------------------------------------
WORLD = 2


def sync_data():
    images, active = data(batch=2 * WORLD, size=64)
    active[3] = True  # rank 1 sees more than rank 0 (which has the empty sample)
    return images, active


def _worker(rank, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{out_dir}/rendezvous',
                            rank=rank, world_size=WORLD)
    import spark_mm  # noqa: F401
    from spark_mm.engine.cpu_sync_bn import convert_sync_batchnorm_for_cpu
    images, active = sync_data()
    part = slice(rank * 2, rank * 2 + 2)
    results = {}
    for rows in (True, False):
        model = build(size=64, norm='SyncBN', drop_path_rate=0.0)
        if not rows:
            model = dense_copy(model)
        convert_sync_batchnorm_for_cpu(model)  # the decoder's, as CPU DDP does
        loss, _ = step(model, images[part], active[part])
        results[rows] = dict(
            loss=loss,
            grads={n: p.grad for n, p in model.named_parameters()},
            buffers={n: b for n, b in model.named_buffers()})
    torch.save(results, os.path.join(out_dir, f'rank{rank}.pt'))
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.dist
def test_sync_bn_rows_path_equals_dense_path_over_two_ranks(tmp_path):
    mp.start_processes(_worker, args=(str(tmp_path),), nprocs=WORLD,
                       start_method='spawn', join=True)
    ranks = [torch.load(os.path.join(tmp_path, f'rank{r}.pt')) for r in range(WORLD)]
    # Rank 0 holds the fully masked sample: its share of visible rows differs.
    images, active = sync_data()
    assert int(active[:2].sum()) != int(active[2:].sum())
    for rank in ranks:
        rows, dense = rank[True], rank[False]
        assert abs(rows['loss'] - dense['loss']) <= RTOL * abs(dense['loss'])
        for name, grad in dense['grads'].items():
            if grad is not None:
                error = relative_error(rows['grads'][name], grad)
                assert error <= RTOL, f'{name}: {error:.2e}'
        for name, buffer in dense['buffers'].items():
            if buffer.is_floating_point():
                error = relative_error(rows['buffers'][name], buffer)
                assert error <= RTOL, f'{name}: {error:.2e}'
    # The statistics are global: both ranks' running statistics agree.
    for name, buffer in ranks[0][True]['buffers'].items():
        if 'running' in name:
            assert relative_error(ranks[1][True]['buffers'][name], buffer) <= RTOL
