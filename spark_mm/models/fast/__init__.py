"""The speed work, apart from the algorithm: each module computes exactly what
a plain definition in :mod:`spark_mm.models` computes, with less time or
memory. A reader of the algorithm can skip this folder.

- :mod:`.visible_rows`: visible positions of channels_last maps as (n, C)
  rows; batch norm on those rows only;
- :mod:`.pointwise_block`: ConvNeXt blocks whose norm and MLP run on the rows;
- :mod:`.resnet_rows`: ResNet bottlenecks whose 1x1 convs, BN, ReLU and
  shortcut run on the rows (only the 3x3 conv sees a map, and on small maps
  not even that: :mod:`.gather_conv`), stage by stage;
- :mod:`.resnet_stem_rows`: the ResNet stem's BN, ReLU and max pool on rows;
- :mod:`.neighbour_rows`: the rows a conv / pooling window reads;
- :mod:`.densify_projection`: the densify projection's backward on visible rows;
- :mod:`.compact_saved_maps`: maps autograd keeps, stored as their rows;
- :mod:`.fused_upsample`: the decoder's transposed conv and 3x3 conv as one map;
- :mod:`.norm_act_conv`: the decoder's BN -> ReLU6 -> conv keeping only the
  BN's input (the activation is recomputed in the backward);
- :mod:`.conv_dtype`: the dtype the hand-written conv ops above run in;
- :mod:`.relu6_inplace`: an in-place ReLU6 that keeps only its output.
"""
