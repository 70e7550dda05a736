"""Distributed SparK on CPU: 2 real gloo processes against one process.

- Sparse SyncBN: output, running statistics and input gradients of two ranks
  holding different numbers of visible positions equal those of sparse BN in
  one process on the concatenated batch (the statistics of the global batch,
  not the average of per-rank statistics).
- One training step of SparK (DDP through CPUDistributedDataParallel, SyncBN
  in backbone, densify and decoder, the same masks): the same loss, updated
  weights and running statistics as one process on the global batch.
- tools/dist_train.sh runs the demo config with 2 CPU processes.
"""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from mmengine.optim import OptimWrapper
from mmpretrain.structures import DataSample

from spark_mm.checkpoint.loading import load_checkpoint_safely
from spark_mm.models.mask_generator import RandomPatchMasker
from spark_mm.models.sparse import SparseContext, sparsify
from spark_mm.registry import MODELS

from _reliability import (DEMO_CONFIG, ROOT, as_cli, demo_data,  # noqa: F401
                          run_train_tool, tiny_options)

WORLD = 2
BN_SPLIT = (3, 2)  # samples per rank: different visible counts per rank
SPARK_BATCH = 2    # per rank; the same on both, as DDP averages rank losses


# ---- data every process derives itself --------------------------------------
def bn_data():
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(sum(BN_SPLIT), 6, 8, 8, generator=gen, dtype=torch.float64) * 3 + 1
    active = torch.rand(sum(BN_SPLIT), 1, 4, 4, generator=gen) < 0.4
    active[:, :, 0, 0] = True  # at least one visible position per sample
    grad_out = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    weight = torch.rand(6, generator=gen, dtype=torch.float64) + 0.5
    bias = torch.randn(6, generator=gen, dtype=torch.float64)
    return x, active, grad_out, weight, bias


def spark_data():
    gen = torch.Generator().manual_seed(11)
    images = torch.randint(0, 256, (WORLD * SPARK_BATCH, 3, 64, 64),
                           generator=gen, dtype=torch.uint8)
    scores = torch.rand(WORLD * SPARK_BATCH, 4, generator=gen)
    keep = scores.argsort(dim=1)[:, :2]  # 2 of 4 patches visible (ratio 0.5)
    active = torch.zeros(WORLD * SPARK_BATCH, 4, dtype=torch.bool)
    active.scatter_(1, keep, True)
    return images, active.view(-1, 1, 2, 2)


class PresetMasks(RandomPatchMasker):
    """The masks the test chose, instead of random ones."""

    def __init__(self, active_b1hw):
        super().__init__(mask_ratio=0.5)
        self.active_b1hw = active_b1hw

    def __call__(self, batch_size, grid_h, grid_w, device=None):
        assert self.active_b1hw.shape == (batch_size, 1, grid_h, grid_w)
        return self.active_b1hw.to(device)


def bn_with_test_affine(sync: bool) -> nn.Module:
    """SyncBN or BN in float64 with the test's affine parameters."""
    bn = (nn.SyncBatchNorm(6) if sync else nn.BatchNorm2d(6)).double()
    _, _, _, weight, bias = bn_data()
    with torch.no_grad():
        bn.weight.copy_(weight)
        bn.bias.copy_(bias)
    return bn


def sparse_bn(sync: bool):
    bn = bn_with_test_affine(sync)
    context = SparseContext()
    sparsify(bn, context, name='bn')
    return bn, context


def run_bn(bn, context, x, active, grad_out, steps=2, channels_last=False):
    """Two training forwards (running stats move twice), one backward.

    ``channels_last`` maps take the gathered-visible-rows path of sparse BN,
    NCHW ones the masked-reductions path.
    """
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = x.clone().contiguous(memory_format=layout).requires_grad_(True)
    for _ in range(steps):
        with context.masked(active):
            masked = (x * context.mask_like(x)).contiguous(memory_format=layout)
            out = bn(masked)
    (out * grad_out).sum().backward()
    return dict(out=out.detach(), x_grad=x.grad, running_mean=bn.running_mean,
                running_var=bn.running_var, weight_grad=bn.weight.grad,
                bias_grad=bn.bias.grad)


def dense_bn(sync: bool):
    """torch's SyncBatchNorm made CPU-capable (CPUSyncBatchNorm), or plain BN."""
    from spark_mm.engine.cpu_sync_bn import convert_sync_batchnorm_for_cpu
    bn = bn_with_test_affine(sync)
    if sync:
        assert convert_sync_batchnorm_for_cpu(bn) == 1
    return bn


def run_dense_bn(bn, x, grad_out, steps=2):
    x = x.clone().requires_grad_(True)
    for _ in range(steps):
        out = bn(x)
    (out * grad_out).sum().backward()
    return dict(out=out.detach(), x_grad=x.grad, running_mean=bn.running_mean,
                running_var=bn.running_var, weight_grad=bn.weight.grad,
                bias_grad=bn.bias.grad)


def build_spark():
    """The model in float64: rank-wise and global reductions then agree to
    rounding (1e-12), so a 1e-9 tolerance catches any wrong synchronisation."""
    torch.manual_seed(0)
    sync_bn = dict(type='SyncBN')
    return MODELS.build(dict(
        type='SparK',
        backbone=dict(type='ResNet', depth=18, base_channels=8,
                      stem_channels=8, out_indices=(0, 1, 2, 3),
                      norm_cfg=sync_bn),
        neck=dict(type='LightUNetDecoder', width=32, norm_cfg=sync_bn),
        densify_norm_cfg=sync_bn,
        input_size=64,
        mask_ratio=0.5,
        data_preprocessor=dict(type='SelfSupDataPreprocessor',
                               mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], to_rgb=True))).double()


def build_timm_spark():
    """timm's ResNet cannot be configured with SyncBN: SparK(sync_bn=True)
    makes its BatchNorm2d layers sparse SyncBN."""
    torch.manual_seed(0)
    sync_bn = dict(type='SyncBN')
    return MODELS.build(dict(
        type='SparK',
        backbone=dict(type='TIMMBackbone', model_name='resnet18', features_only=True,
                      pretrained=False, out_indices=(1, 2, 3, 4)),
        sync_bn=True,
        neck=dict(type='LightUNetDecoder', width=32, norm_cfg=sync_bn),
        densify_norm_cfg=sync_bn, input_size=64, mask_ratio=0.5,
        data_preprocessor=dict(type='SelfSupDataPreprocessor',
                               mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], to_rgb=True))).double()


def spark_step(model, images, active):
    module = getattr(model, 'module', model)  # DDP or not
    module.mask_generator = PresetMasks(active)
    optim_wrapper = OptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9))
    data = dict(inputs=images, data_samples=[DataSample() for _ in images])
    log_vars = model.train_step(data, optim_wrapper)
    state = {key: value.detach().clone()
             for key, value in module.state_dict().items()}
    return float(log_vars['loss'].detach()), state


# ---- the two gloo processes ---------------------------------------------------
def _worker(rank, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{out_dir}/rendezvous',
                            rank=rank, world_size=WORLD)
    import spark_mm  # noqa: F401  (registers, as in a real run)
    from spark_mm.engine.distributed import CPUDistributedDataParallel

    x, active, grad_out, _, _ = bn_data()
    start = sum(BN_SPLIT[:rank])
    part = slice(start, start + BN_SPLIT[rank])
    bn_result = {}
    for channels_last in (False, True):
        bn, context = sparse_bn(sync=True)
        bn_result[channels_last] = run_bn(bn, context, x[part], active[part],
                                          grad_out[part], channels_last=channels_last)
    bn_result['dense'] = run_dense_bn(dense_bn(sync=True), x[part], grad_out[part])

    images, masks = spark_data()
    part = slice(rank * SPARK_BATCH, (rank + 1) * SPARK_BATCH)
    model = CPUDistributedDataParallel(module=build_spark(),
                                       broadcast_buffers=False)
    loss, state = spark_step(model, images[part], masks[part])
    timm_model = CPUDistributedDataParallel(module=build_timm_spark(),
                                            broadcast_buffers=False)
    timm_loss, timm_state = spark_step(timm_model, images[part], masks[part])
    torch.save(dict(bn=bn_result, loss=loss, state=state, timm_loss=timm_loss,
                    timm_state=timm_state),
               os.path.join(out_dir, f'rank{rank}.pt'))
    dist.destroy_process_group()


@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    out_dir = str(tmp_path_factory.mktemp('gloo'))
    mp.start_processes(_worker, args=(out_dir,), nprocs=WORLD,
                       start_method='spawn', join=True)
    return [torch.load(os.path.join(out_dir, f'rank{rank}.pt'))
            for rank in range(WORLD)]


@pytest.mark.slow
@pytest.mark.dist
@pytest.mark.parametrize('channels_last', [False, True])
def test_sparse_sync_bn_equals_single_process_on_global_batch(ranks, channels_last):
    x, active, grad_out, _, _ = bn_data()
    assert int(active[:3].sum()) != int(active[3:].sum())
    bn, context = sparse_bn(sync=False)
    single = run_bn(bn, context, x, active, grad_out, channels_last=channels_last)
    both = [rank['bn'][channels_last] for rank in ranks]
    close = dict(rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(torch.cat([r['out'] for r in both]),
                               single['out'], **close)
    torch.testing.assert_close(torch.cat([r['x_grad'] for r in both]),
                               single['x_grad'], **close)
    for rank in both:
        torch.testing.assert_close(rank['running_mean'], single['running_mean'],
                                   **close)
        torch.testing.assert_close(rank['running_var'], single['running_var'],
                                   **close)
    torch.testing.assert_close(both[0]['weight_grad'] + both[1]['weight_grad'],
                               single['weight_grad'], **close)


@pytest.mark.slow
@pytest.mark.dist
def test_cpu_sync_bn_equals_bn_on_global_batch(ranks):
    """CPUSyncBatchNorm (dense models' SyncBN on gloo) over 2 ranks of 3 and 2
    samples equals BatchNorm2d on the 5 samples, in float64."""
    x, _, grad_out, _, _ = bn_data()
    single = run_dense_bn(dense_bn(sync=False), x, grad_out)
    both = [rank['bn']['dense'] for rank in ranks]
    close = dict(rtol=1e-9, atol=1e-12)
    for key in ('out', 'x_grad'):
        torch.testing.assert_close(torch.cat([r[key] for r in both]), single[key],
                                   **close)
    for rank in both:
        for key in ('running_mean', 'running_var'):
            torch.testing.assert_close(rank[key], single[key], **close)
    for key in ('weight_grad', 'bias_grad'):
        torch.testing.assert_close(both[0][key] + both[1][key], single[key], **close)


def assert_step_equals_single_process(ranks, build, prefix=''):
    images, masks = spark_data()
    loss, state = spark_step(build(), images, masks)
    rank_losses = [rank[prefix + 'loss'] for rank in ranks]
    assert abs(sum(rank_losses) / 2 - loss) < 1e-9 * loss
    initial = build().state_dict()
    for rank in ranks:
        rank_state = rank[prefix + 'state']
        assert rank_state.keys() == state.keys()
        for key, value in state.items():
            if 'running' in key or not value.is_floating_point():
                torch.testing.assert_close(rank_state[key], value,
                                           rtol=1e-9, atol=1e-12, msg=key)
                continue
            # One SGD step: the update is lr * gradient, compared in float64.
            update = value - initial[key]
            error = (rank_state[key] - value).abs().max()
            assert error <= 1e-9 * update.abs().max() + 1e-15, (
                f'{key}: {error:.3g} off an update of {update.abs().max():.3g}')
    moved = [key for key in state if state[key].is_floating_point()
             and not torch.equal(state[key], initial[key])]
    assert any(k.startswith('backbone.') and 'running_mean' in k for k in moved)
    assert any(k.startswith('neck.') and 'running_var' in k for k in moved)
    assert any(k.startswith('densify.norms') for k in moved)


@pytest.mark.slow
@pytest.mark.dist
def test_ddp_spark_step_equals_single_process_step(ranks):
    assert_step_equals_single_process(ranks, build_spark)


@pytest.mark.slow
@pytest.mark.dist
def test_timm_backbone_sync_bn_synchronises_across_ranks(ranks):
    """SparK(sync_bn=True) on timm's ResNet: the 2-rank step equals one process
    on the global batch, backbone running statistics included (per-rank BN
    would give each rank the statistics of its own half)."""
    model = build_timm_spark()
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in model.backbone.modules()) >= 20
    assert_step_equals_single_process(ranks, build_timm_spark, prefix='timm_')
    local = [rank['timm_state']['backbone.timm_model.bn1.running_mean'] for rank in ranks]
    assert torch.equal(local[0], local[1])


@pytest.mark.slow
@pytest.mark.dist
def test_dist_train_sh_runs_two_cpu_processes(tmp_path, demo_data):  # noqa: F811
    work_dir = str(tmp_path / 'work')
    options = tiny_options(demo_data, epochs=1, images=16, batch=4)
    result = run_train_tool(
        ['bash', 'tools/dist_train.sh', DEMO_CONFIG, '2', '--work-dir',
         work_dir] + as_cli(options),
        timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.path.isfile(os.path.join(work_dir, 'epoch_1.pth'))
    # 16 images, 2 ranks x 4 per step: 2 iterations, not 4
    checkpoint = load_checkpoint_safely(os.path.join(work_dir, 'epoch_1.pth'))
    assert checkpoint['meta']['iter'] == 2


@pytest.mark.slow
@pytest.mark.dist
def test_nan_on_one_rank_stops_both_ranks(tmp_path, demo_data):  # noqa: F811
    """Rank 1 alone gets a NaN loss at iteration 6 (of 8): both ranks stop with
    the one-line error, nothing past epoch 1 is saved, and no rank hangs."""
    config = tmp_path / 'poisoned.py'
    config.write_text(
        f"_base_ = [{DEMO_CONFIG!r}]\n"
        "custom_imports = dict(imports=['spark_mm', '_poison_hooks'],\n"
        "                      allow_failed_imports=False)\n"
        "custom_hooks = [dict(type='PoisonOneRank', at=5, rank=1),\n"
        "                dict(type='NanGuardHook'), dict(type='StepSeedHook')]\n")
    work_dir = str(tmp_path / 'work')
    options = tiny_options(demo_data, epochs=2, images=16, batch=2)
    result = run_train_tool(
        ['bash', 'tools/dist_train.sh', str(config), '2', '--work-dir',
         work_dir] + as_cli(options), timeout=400,
        env=dict(PYTHONPATH=os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode != 0
    errors = [line for line in (result.stdout + result.stderr).splitlines()
              if 'error: ' in line]
    # rank 1 names its NaN, rank 0 the other rank's: both stopped
    assert any('loss=nan at iteration 6 (epoch 2)' in line for line in errors), (
        result.stderr[-3000:])
    assert any('a non-finite loss on another rank at iteration 6' in line
               for line in errors), result.stderr[-3000:]
    assert os.path.isfile(os.path.join(work_dir, 'epoch_1.pth'))
    assert not os.path.exists(os.path.join(work_dir, 'epoch_2.pth'))


DETECTION_SYNCBN = '''
_base_ = {base!r}
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_root = {data_root!r}
model = dict(
    backbone=dict(norm_cfg=norm_cfg, init_cfg=None),
    neck=dict(norm_cfg=norm_cfg),
    roi_head=dict(bbox_head=dict(norm_cfg=norm_cfg),
                  mask_head=dict(norm_cfg=norm_cfg)))
train_cfg = dict(max_iters=2, val_interval=1000)
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
custom_hooks = []
'''


@pytest.mark.slow
@pytest.mark.dist
def test_dist_train_sh_mask_rcnn_with_dense_syncbn_on_cpu(tmp_path):
    """mmdet's dense SyncBN (backbone, FPN, heads): torch refuses it on CPU;
    CPUDistributedDataParallel turns it into the gloo-capable SyncBN."""
    from spark_mm.datasets.synthetic.coco import make_synthetic_coco
    data_root = str(tmp_path / 'coco') + '/'
    make_synthetic_coco(data_root, num_train=8, num_val=4, image_size=(96, 128))
    config = tmp_path / 'mask_rcnn_syncbn.py'
    config.write_text(DETECTION_SYNCBN.format(
        base=os.path.join(ROOT, 'configs', 'mask_rcnn',
                          'demo_r18_synthetic_coco.py'),
        data_root=data_root))
    work_dir = str(tmp_path / 'work')
    result = run_train_tool(['bash', 'tools/dist_train.sh', str(config), '2',
                             '--work-dir', work_dir], timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = load_checkpoint_safely(os.path.join(work_dir, 'iter_2.pth'))
    assert checkpoint['meta']['iter'] == 2
    assert "type='SyncBN'" in checkpoint['meta']['cfg']


def test_cpu_syncbn_conversion_keeps_names_and_single_process_bn():
    from spark_mm.engine.cpu_sync_bn import convert_sync_batchnorm_for_cpu
    torch.manual_seed(0)
    dense = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    synced = nn.Sequential(nn.Conv2d(3, 4, 3), nn.SyncBatchNorm(4))
    synced.load_state_dict(dense.state_dict())
    names = list(synced.state_dict())
    assert convert_sync_batchnorm_for_cpu(synced) == 1
    assert type(synced[1]).__name__ == 'CPUSyncBatchNorm'  # not a sparse layer
    assert convert_sync_batchnorm_for_cpu(synced) == 0  # idempotent
    assert list(synced.state_dict()) == names
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(synced(x), dense(x))  # no process group: BN
    torch.testing.assert_close(synced[1].running_mean, dense[1].running_mean)


@pytest.mark.slow
@pytest.mark.dist
def test_two_rank_resume_through_dist_train_sh_is_bit_exact(tmp_path, demo_data):  # noqa: F811
    """2 gloo ranks killed (SIGKILL to the launcher's process group) after their
    first checkpoint, resumed with --resume through dist_train.sh: the final
    weights, optimizer state and iteration equal an uninterrupted 2-rank run."""
    import signal
    import subprocess
    import time
    options = tiny_options(demo_data, epochs=3, images=16, batch=2)

    def launch(work_dir, *extra):
        return ['bash', 'tools/dist_train.sh', DEMO_CONFIG, '2', '--work-dir',
                work_dir, *extra] + as_cli(options)

    straight, killed = str(tmp_path / 'straight'), str(tmp_path / 'killed')
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    uninterrupted = subprocess.Popen(launch(straight), cwd=root,
                                     env=dict(env, PORT='29531'),  # runs beside
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
    victim = subprocess.Popen(launch(killed), cwd=root, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    pointer = os.path.join(killed, 'last_checkpoint')
    deadline = time.time() + 300
    while not os.path.exists(pointer) and victim.poll() is None:
        assert time.time() < deadline, 'no checkpoint within 300 s'
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    with open(pointer) as file:
        killed_at = file.read().strip()
    assert not killed_at.endswith('epoch_3.pth'), 'the run ended before the kill'
    result = run_train_tool(launch(killed, '--resume'), timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    assert uninterrupted.wait(timeout=400) == 0, uninterrupted.stderr.read()[-3000:]
    final = load_checkpoint_safely(os.path.join(killed, 'epoch_3.pth'))
    reference = load_checkpoint_safely(os.path.join(straight, 'epoch_3.pth'))
    assert final['meta']['iter'] == reference['meta']['iter'] == 3 * 4
    for key, value in reference['state_dict'].items():
        assert torch.equal(final['state_dict'][key], value), key
    for index, state in reference['optimizer']['state'].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(final['optimizer']['state'][index][name]),
                               torch.as_tensor(value)), (index, name)
