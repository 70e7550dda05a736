"""The SparK model: masking, loss, modes, ablation switches and input checks."""
import pytest
import torch

from spark_mm.models import RandomPatchMasker, SparKReconstructionHead, patchify
from spark_mm.models.sparse import SparseMixin
from spark_mm.registry import MODELS

RESNET18 = dict(type='ResNet', depth=18, out_indices=(0, 1, 2, 3))


def build_spark(**kwargs):
    cfg = dict(type='SparK', backbone=RESNET18,
               neck=dict(type='LightUNetDecoder', width=64), input_size=64)
    cfg.update(kwargs)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


@pytest.mark.parametrize('grid,ratio', [((7, 7), 0.6), ((3, 5), 0.6), ((4, 4), 0.75),
                                        ((2, 2), 0.5)])
def test_exact_number_of_visible_patches_per_sample(grid, ratio):
    masks = RandomPatchMasker(ratio)(16, *grid)
    expected = round(grid[0] * grid[1] * (1 - ratio))
    assert masks.shape == (16, 1, *grid) and masks.dtype == torch.bool
    assert masks.flatten(1).sum(1).tolist() == [expected] * 16
    assert len({tuple(m.flatten().tolist()) for m in masks}) > 1  # per-sample


@pytest.mark.parametrize('ratio', [0.0, 1.0, -0.1, 1.5])
def test_mask_ratio_outside_zero_one_is_refused(ratio):
    with pytest.raises(ValueError, match='outside \\(0, 1\\)'):
        RandomPatchMasker(ratio)


def test_mask_ratio_leaving_no_visible_patch_is_refused():
    with pytest.raises(ValueError, match='no visible patch'):
        build_spark(mask_ratio=0.9, input_size=32)


def test_input_size_not_multiple_of_stride_names_size_and_stride():
    model = build_spark()
    with pytest.raises(ValueError, match=r'input size 70x64 .* total stride 32'):
        model(torch.randn(2, 3, 70, 64), mode='loss')


def test_non_square_input_trains():
    model = build_spark()
    images = torch.randn(2, 3, 96, 160)
    active = model.generate_mask(images)
    assert active.shape == (2, 1, 3, 5)
    loss = model(images, mode='loss')['loss']
    loss.backward()
    assert torch.isfinite(loss)
    assert model.backbone.conv1.weight.grad.abs().sum() > 0


def test_loss_covers_masked_patches_only():
    head = SparKReconstructionHead()
    images = torch.randn(2, 3, 64, 64)
    active = RandomPatchMasker(0.5)(2, 2, 2)
    pred = torch.randn(2, 3, 64, 64, requires_grad=True)
    loss = head.loss(pred, images, active)
    loss.backward()
    visible = active.repeat_interleave(32, 2).repeat_interleave(32, 3).expand_as(pred)
    assert pred.grad[visible].abs().max() == 0
    assert pred.grad[~visible].abs().min() > 0
    # by hand: per-patch normalized target, mean squared error over masked patches
    target = patchify(images, 32)
    target = (target - target.mean(-1, keepdim=True)) / (
        target.var(-1, keepdim=True) + 1e-6).sqrt()
    per_patch = (patchify(pred.detach(), 32) - target).pow(2).mean(-1)
    masked = ~active.flatten(1)
    torch.testing.assert_close(loss, per_patch[masked].mean())
    all_patches = SparKReconstructionHead(masked_only=False).loss(pred, images, active)
    torch.testing.assert_close(all_patches, per_patch.mean())


@pytest.mark.slow
def test_training_steps_lower_the_loss_on_a_fixed_batch():
    model = build_spark()
    smooth = torch.nn.functional.interpolate(torch.randn(4, 3, 8, 8), size=(64, 64),
                                             mode='bicubic', align_corners=False)
    images, active = smooth, model.generate_mask(smooth)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(10):
        loss = model.head.loss(model.reconstruct(images, active), images, active)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.98


def test_zero_outing_ablation_keeps_the_backbone_dense():
    model = build_spark(sparse=False)
    assert not any(isinstance(m, SparseMixin) for m in model.backbone.modules())
    assert torch.isfinite(model(torch.randn(2, 3, 64, 64), mode='loss')['loss'])


def test_without_hierarchy_only_the_coarsest_scale_is_decoded():
    model = build_spark(hierarchical=False)
    assert len(model.densify.mask_tokens) == 1
    assert torch.isfinite(model(torch.randn(2, 3, 64, 64), mode='loss')['loss'])


def test_position_embedding_ablation_adapts_to_other_sizes():
    model = build_spark(use_pos_embed=True)
    assert [tuple(p.shape) for p in model.densify.pos_embeds] == [
        (1, 64, 2, 2), (1, 32, 4, 4), (1, 16, 8, 8), (1, 8, 16, 16)]
    loss = model(torch.randn(2, 3, 96, 128), mode='loss')['loss']
    loss.backward()
    assert model.densify.pos_embeds[0].grad.abs().sum() > 0


def test_decoder_width_and_densify_projections():
    model = build_spark(neck=dict(type='LightUNetDecoder', width=256))
    assert model.neck.widths == [256, 128, 64, 32, 16, 8]
    kernels = [p.kernel_size for p in model.densify.projections]
    assert kernels == [(1, 1), (3, 3), (3, 3), (3, 3)]  # 512->256, 256->128, ...
    same_width = build_spark(neck=dict(type='LightUNetDecoder', width=512))
    assert type(same_width.densify.projections[0]).__name__ == 'Identity'


def test_single_output_backbone_is_refused_with_a_fix():
    with pytest.raises(ValueError, match='out_indices'):
        build_spark(backbone=dict(RESNET18, out_indices=(3, )))


def test_pooled_outputs_are_refused_with_a_fix():
    convnext = dict(type='ConvNeXt', arch=dict(depths=[1, 1, 1, 1],
                                               channels=[16, 32, 64, 128]),
                    out_indices=(0, 1, 2, 3))
    with pytest.raises(ValueError, match='gap_before_final_norm=False'):
        build_spark(backbone=convnext)


def test_tensor_and_predict_modes():
    model = build_spark().eval()
    images = torch.randn(2, 3, 64, 96)
    features = model(images, mode='tensor')
    assert [f.shape[-1] for f in features] == [24, 12, 6, 3]
    samples = model(images, mode='predict')
    assert len(samples) == 2
    sample = samples[0]
    visible = sample.mask.repeat_interleave(32, 1).repeat_interleave(32, 2)
    assert sample.pred_img.shape == (3, 64, 96)
    assert torch.equal(sample.pred_with_visible * visible, images[0] * visible)
    assert torch.equal(sample.masked_img, images[0] * visible)


def test_mmpretrain_spark_stays_available_next_to_ours():
    from mmpretrain.models.selfsup import SparK as MMPretrainSparK

    from spark_mm.models import SparK
    assert MODELS.get('SparK') is SparK
    assert MODELS.get('mmpretrain.SparK') is MMPretrainSparK
