"""SparK: sparse and hierarchical masked modeling for any CNN.

Data path of one training step, top to bottom (:meth:`SparK.loss`):
image -> mask (per-sample random patches at the total stride) -> sparse
encoder (the dense backbone, converted in place) -> densify (visible-only
norm, mask tokens, projections) -> light UNet decoder -> per-patch normalized
L2 on masked patches.
"""
from contextlib import nullcontext
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.structures import DataSample

from ..errors import SparKInputError
from ..registry import MODELS
from .densify import Densifier
from .geometry import as_feature_list, probe_features, remove_output_norms
from .head import patchify, unpatchify
from .sparse import SparseContext, refuse_unsupported, sparsify
from .sparse.context import expand_mask
from .sparse.geometry_check import check_mask_geometry


def _build(cfg_or_module):
    if isinstance(cfg_or_module, nn.Module) or cfg_or_module is None:
        return cfg_or_module
    return MODELS.build(cfg_or_module)


def _build_fast_path(fast_path: Union[bool, dict]):
    """The fast-path plug-in from its config (registered by
    :mod:`spark_mm.models.fast`), or None for the plain algorithm."""
    if fast_path is False or fast_path is None:
        return None
    cfg = dict(type='SparKFastPath') if fast_path is True else dict(fast_path)
    if MODELS.get(cfg['type']) is None:
        raise SparKInputError(f"fast_path type {cfg['type']!r} is not registered "
                              '(is spark_mm.models.fast installed?); set '
                              'fast_path=False for the plain algorithm')
    return MODELS.build(cfg)


@MODELS.register_module()
class SparK(BaseSelfSupervisor):
    """SparK pretraining around any dense CNN backbone.

    Args:
        backbone: config (any registry: ``ResNet``, ``mmdet.ResNet``,
            ``ConvNeXt``, ``TIMMBackbone``, ...) or module. It must return
            feature maps of several strides (e.g. ``out_indices=(0, 1, 2, 3)``).
        neck: the decoder config, e.g. ``dict(type='LightUNetDecoder', width=768)``;
            its ``upsample_ratio`` is set from the backbone.
        head: loss config, ``dict(type='SparKReconstructionHead')``.
        mask_generator: masking config, default uniform random patches.
        mask_ratio: shortcut for the default mask generator's ratio.
        sparse: False runs the dense backbone on the zero-outed image
            (the paper's "zero-outing" ablation).
        sync_bn: make the backbone's BatchNorm2d layers SyncBN (visible-only
            statistics over all ranks), for backbones that cannot be configured
            with SyncBN themselves (timm's); a single process uses local BN.
        hierarchical: False feeds only the coarsest scale to the decoder.
        use_pos_embed: add learned absolute position embeddings (ablation).
        densify_norm_cfg: norm over visible features before densifying.
        output_norms: keep the backbone's per-stage output norms (mmpretrain
            ConvNeXt's ``norm0..norm3``). False (the default, as the official
            SparK, whose encoder returns the raw stage outputs) replaces them
            by identities: they are not pretrained and not exported, and a
            downstream model initializes them (weight 1, bias 0).
        input_size: training (h, w); sets the position embedding grid.
        in_channels: image channels.
        fast_path: ``False`` (default) runs the plain algorithm as this
            module defines it; ``True`` or a config such as
            ``dict(type='SparKFastPath', channels_last=True)`` plugs in the
            fast path (:mod:`spark_mm.models.fast`): the same results in
            less time and memory, its choices measured on the machine.
    """

    def __init__(self,
                 backbone: Union[dict, nn.Module],
                 neck: Union[dict, nn.Module] = dict(type='LightUNetDecoder'),
                 head: Union[dict, nn.Module] = dict(type='SparKReconstructionHead'),
                 mask_generator: Optional[dict] = None,
                 mask_ratio: float = 0.6,
                 sparse: bool = True,
                 sync_bn: bool = False,
                 hierarchical: bool = True,
                 use_pos_embed: bool = False,
                 densify_norm_cfg: dict = dict(type='BN'),
                 output_norms: bool = False,
                 input_size: Union[int, Sequence[int]] = 224,
                 in_channels: int = 3,
                 fast_path: Union[bool, dict] = False,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        backbone = _build(backbone)
        if not output_norms:
            removed = remove_output_norms(backbone)
            if removed:
                print_log('SparK: the backbone\'s output norms ' + ', '.join(removed)
                          + ' are not used (the official encoder returns raw '
                          'stage outputs; output_norms=True keeps them)',
                          logger='current')
        if sparse:  # before anything runs it: a ViT is refused in one line
            refuse_unsupported(backbone)
        features = probe_features(backbone, in_channels)
        if len(features) < 2 and hierarchical:
            raise SparKInputError(
                'the backbone returns a single feature map; SparK needs one per '
                'stage: set out_indices=(0, 1, 2, 3) (mmpretrain/mmdet ResNet, '
                'ConvNeXt) or (1, 2, 3, 4) (TIMMBackbone), or hierarchical=False')
        self.sparse_context = SparseContext()
        if sparse:
            sparsify(backbone, self.sparse_context, sync_bn=sync_bn)
        self.total_stride = features[-1].stride
        coarsest_first = features[::-1]
        if not hierarchical:
            coarsest_first = coarsest_first[:1]
        self._check_strides(coarsest_first)

        if isinstance(neck, dict):
            neck = dict(neck, upsample_ratio=self.total_stride)
            neck.setdefault('out_channels', in_channels)  # predict every input channel
        neck = _build(neck)
        if mask_generator is None:
            mask_generator = dict(type='RandomPatchMasker', mask_ratio=mask_ratio)
        super().__init__(backbone=backbone, neck=neck, head=_build(head),
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.mask_generator = MODELS.build(mask_generator)
        self.sparse = sparse
        self.hierarchical = hierarchical
        self.input_size = ((input_size, input_size) if isinstance(input_size, int)
                           else tuple(input_size))
        self.check_input_size(*self.input_size)
        if sparse:
            check_mask_geometry(self.backbone, self.sparse_context, in_channels,
                                self.input_size, self.total_stride)

        encoder_widths = [info.channels for info in coarsest_first]
        decoder_widths = neck.widths[:len(coarsest_first)]
        pos_embed_grids = None
        if use_pos_embed:
            pos_embed_grids = [(self.input_size[0] // info.stride,
                                self.input_size[1] // info.stride)
                               for info in coarsest_first]
        self.densify = Densifier(encoder_widths, decoder_widths,
                                 self.sparse_context, densify_norm_cfg,
                                 pos_embed_grids)
        self.fast_path = _build_fast_path(fast_path)
        if self.fast_path is not None:
            self.fast_path.apply(self)

    def init_weights(self):
        # Random initialisers fill a tensor in memory order: initialise in the
        # standard layout, so that a seed gives the same weights whatever
        # layout the model runs in.
        channels_last = [p for p in self.parameters() if p.dim() == 4
                         and p.is_contiguous(memory_format=torch.channels_last)
                         and not p.is_contiguous()]
        self.to(memory_format=torch.contiguous_format)
        super().init_weights()
        for parameter in channels_last:
            parameter.data = parameter.data.contiguous(memory_format=torch.channels_last)

    def _check_strides(self, coarsest_first):
        strides = [info.stride for info in coarsest_first]
        expected = [self.total_stride // 2 ** i for i in range(len(strides))]
        if strides != expected:
            raise SparKInputError(f'backbone feature strides {strides[::-1]} are not '
                                  'consecutive powers of 2 ending at the total stride')

    def check_input_size(self, height: int, width: int):
        stride = self.total_stride
        if height % stride or width % stride:
            fit_h = max(stride, round(height / stride) * stride)
            fit_w = max(stride, round(width / stride) * stride)
            raise SparKInputError(
                f'input size {height}x{width} is not a multiple of the '
                f"backbone's total stride {stride}; resize or crop to e.g. "
                f'{fit_h}x{fit_w}')
        self.mask_generator.num_visible(height // stride, width // stride)

    # ---- the data path -------------------------------------------------
    def generate_mask(self, images_bchw: torch.Tensor) -> torch.Tensor:
        """Random ``active_b1hw`` (True = visible) for a batch of images."""
        height, width = images_bchw.shape[-2:]
        self.check_input_size(height, width)
        return self.mask_generator(images_bchw.shape[0], height // self.total_stride,
                                   width // self.total_stride, images_bchw.device)

    def encode(self, images_bchw: torch.Tensor) -> List[torch.Tensor]:
        """Sparse features of the visible patches, coarsest scale first.

        Must run inside ``self.sparse_context.masked(active_b1hw)``.
        """
        masked_bchw = images_bchw * self.sparse_context.mask_like(images_bchw)
        with (self.fast_path.encoder_scope(self) if self.fast_path is not None
              else nullcontext()):
            features = as_feature_list(self.backbone(masked_bchw))
        features = sorted(features, key=lambda f: f.shape[-1])  # coarsest first
        return features if self.hierarchical else features[:1]

    def reconstruct(self, images_bchw: torch.Tensor,
                    active_b1hw: torch.Tensor) -> torch.Tensor:
        """Decoder output (B, C, H, W) for ``images_bchw`` seen through the mask."""
        if self.fast_path is not None:
            images_bchw = self.fast_path.prepare_images(images_bchw)
        with self.sparse_context.masked(active_b1hw):
            features = self.encode(images_bchw)
            dense = self.densify(features, active_b1hw)
        return self.neck(dense)

    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        active_b1hw = self.generate_mask(inputs)
        pred_bchw = self.reconstruct(inputs, active_b1hw)
        return dict(loss=self.head.loss(pred_bchw, inputs, active_b1hw))

    # ---- other modes -----------------------------------------------------
    def extract_feat(self, inputs: torch.Tensor) -> Tuple[torch.Tensor]:
        """Dense backbone features of the whole image (no mask)."""
        return tuple(as_feature_list(self.backbone(inputs)))

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        return super().forward(inputs, data_samples, mode)

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None,
                active_b1hw: Optional[torch.Tensor] = None) -> List[DataSample]:
        """Reconstructions in the normalized input space, one DataSample each.

        Fields: ``mask`` (1, h, w) bool visible patches, ``masked_img`` the
        input with masked patches zeroed, ``pred_img`` the prediction with each
        patch's normalization undone using the input patch's mean/std,
        ``pred_with_visible`` the prediction with visible patches from the input.
        """
        if active_b1hw is None:
            active_b1hw = self.generate_mask(inputs)
        pred_bchw = self.reconstruct(inputs, active_b1hw)
        dtype = torch.promote_types(pred_bchw.dtype, torch.float32)
        pred_bchw, images = pred_bchw.to(dtype), inputs.to(dtype)
        patch = self.total_stride
        grid_h, grid_w = active_b1hw.shape[-2:]
        pred = patchify(pred_bchw, patch)
        if self.head.norm_pixel:
            mean, std = self.head.patch_stats(patchify(images, patch))
            pred = pred * std + mean
        pred_img = unpatchify(pred, patch, grid_h, grid_w)
        visible = expand_mask(active_b1hw, *images.shape[-2:])
        masked_img = images * visible
        pred_with_visible = torch.where(visible, images, pred_img)
        data_samples = data_samples or [DataSample() for _ in range(len(inputs))]
        for index, sample in enumerate(data_samples):
            sample.set_field(active_b1hw[index], 'mask', field_type='data')
            sample.set_field(masked_img[index], 'masked_img', field_type='data')
            sample.set_field(pred_img[index], 'pred_img', field_type='data')
            sample.set_field(pred_with_visible[index], 'pred_with_visible',
                             field_type='data')
        return data_samples
