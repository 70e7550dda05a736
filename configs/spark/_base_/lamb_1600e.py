# The official SparK schedule: LAMB, lr 2e-4 per 256 images, betas (0.9, 0.95),
# weight decay 0.04 -> 0.2 (cosine), 40 warm-up epochs, cosine lr, clip 5 (in LAMB);
# lr and weight decay move per iteration by the official formulas
# (pretrain/utils/lr_control.py, see spark_mm/engine/schedulers.py).
# The two schedulers are stated here as plain values, so this fragment needs no
# import. A config with other epoch numbers states its own param_scheduler,
# usually with spark_mm.engine.schedulers.spark_param_scheduler(max_epochs,
# warmup_epochs), which returns these two dicts (tests/test_configs_runtime.py
# checks that they agree).
global_batch_size = 4096
max_epochs = 1600
warmup_epochs = 40

optim_wrapper = dict(
    type='OptimWrapper',
    # Gradients are clipped to a global norm of 5 inside LAMB, as the official
    # timm-style LAMB(max_grad_norm=5.0) (pretrain/main.py); mmpretrain's Lamb
    # would clip at its default 1.0 otherwise. No second clip by the wrapper.
    optimizer=dict(type='Lamb', lr=2e-4 * global_batch_size / 256,
                   betas=(0.9, 0.95), weight_decay=0.04, max_grad_norm=5.0),
    # No weight decay on every 1-D parameter and every bias, nor on the mask
    # tokens, position embeddings and layer scales (official
    # pretrain/utils/lr_control.py get_param_groups, nowd_keys of main.py).
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={'mask_token': dict(decay_mult=0.0),
                     'pos_embed': dict(decay_mult=0.0),
                     'gamma': dict(decay_mult=0.0)}))

param_scheduler = [
    # lr: linear warm-up from 0.005x, then cosine to 0.001x of the lr above
    dict(type='SparKWarmupCosineLR', warmup=warmup_epochs, by_epoch=True,
         begin=0, end=max_epochs, convert_to_iter_based=True),
    # weight decay: cosine from the optimizer's 0.04 to 0.2 over all epochs
    dict(type='SparKCosineWeightDecay', end_value=0.2, by_epoch=True, begin=0,
         end=max_epochs, convert_to_iter_based=True),
]

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
# The lr above is for a global batch of 4096; --auto-scale-lr rescales it.
auto_scale_lr = dict(base_batch_size=global_batch_size, enable=False)
