# The official SparK schedule: LAMB, lr 2e-4 per 256 images, betas (0.9, 0.95),
# weight decay 0.04 -> 0.2 (cosine), 40 warm-up epochs, cosine lr, clip 5.
global_batch_size = 4096
max_epochs = 1600
warmup_epochs = 40

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Lamb', lr=2e-4 * global_batch_size / 256,
                   betas=(0.9, 0.95), weight_decay=0.04),
    clip_grad=dict(max_norm=5.0),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={'mask_tokens': dict(decay_mult=0.0),
                     'pos_embeds': dict(decay_mult=0.0)}))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs,
         by_epoch=True, begin=warmup_epochs, end=max_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingWeightDecay', eta_min=0.2, T_max=max_epochs,
         by_epoch=True, begin=0, end=max_epochs, convert_to_iter_based=True),
]

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
# The lr above is for a global batch of 4096; --auto-scale-lr rescales it.
auto_scale_lr = dict(base_batch_size=global_batch_size, enable=False)
