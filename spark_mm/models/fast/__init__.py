"""The fast path, a plug-in to the algorithm in :mod:`spark_mm.models`.

``SparK(fast_path=True)`` (the configs' default, ``model.fast_path``) builds
:class:`SparKFastPath` (:mod:`.plugin`), which swaps in, by type, layers that
compute exactly what the plain ones compute with less time or memory. This
folder depends on the algorithm, never the reverse: without it SparK still
runs, as the plain algorithm.

- :mod:`.plugin`: the switch, and which layer types are replaced;
- :mod:`.tuner`: times the implementations of an operation on this machine
  and keeps the fastest (cached per machine);
- :mod:`.visible_rows`: visible positions of channels_last maps as (n, C)
  rows; batch norm on those rows, handed from layer to layer;
- :mod:`.resnet_rows`: ResNet stages whose 1x1 convs, BN, ReLU and shortcut
  run on the rows (the 3x3 conv as a dense conv or :mod:`.gather_conv`);
- :mod:`.resnet_stem_rows`: the ResNet stem's BN, ReLU and max pool on rows;
- :mod:`.neighbour_rows`: the rows a conv / pooling window reads;
- :mod:`.pointwise_block`: ConvNeXt blocks whose norm and MLP run on the rows;
- :mod:`.compact_saved_maps`: maps autograd keeps, stored as their rows;
- :mod:`.decoder_blocks`: the densify step and decoder with the pieces below;
- :mod:`.densify_projection`: the densify projection's backward on visible rows;
- :mod:`.fused_upsample`: the decoder's transposed conv and 3x3 conv as one map;
- :mod:`.norm_act_conv`: the decoder's BN -> ReLU6 -> conv keeping only the
  BN's input (the activation is recomputed in the backward);
- :mod:`.relu6_inplace`: an in-place ReLU6 that keeps only its output;
- :mod:`.conv_dtype`: the dtype the hand-written conv ops above run in.
"""
from .plugin import SparKFastPath, register_fast_layer
from .tuner import Tuner

__all__ = ['SparKFastPath', 'Tuner', 'register_fast_layer']
