# SparK itself, the same for every backbone (official pretrain/utils/
# arg_util.py, pretrain/spark.py): 60% of the 32x32 patches masked, sparse
# convolution, the four encoder scales densified and fed to the light UNet
# decoder (width 768, SyncBN), no position embedding, loss on the normalized
# pixels of the masked patches only. The ablations flip these switches. The
# pretraining configs add the backbone, the densify norm, the input size and
# the data preprocessor.
model = dict(
    type='SparK',
    neck=dict(type='LightUNetDecoder', width=768, norm_cfg=dict(type='SyncBN')),
    head=dict(type='SparKReconstructionHead', norm_pixel=True, masked_only=True),
    mask_ratio=0.6,
    sparse=True,
    hierarchical=True,
    use_pos_embed=False,
    # The fast path (spark_mm/models/fast): the same results in less time and
    # memory (channels_last maps, visible-row layers, implementations timed on
    # this machine and cached). fast_path=False runs the plain algorithm.
    # With `--amp` add bf16/fp16 autocast. See docs "Speed".
    fast_path=dict(type='SparKFastPath'))
