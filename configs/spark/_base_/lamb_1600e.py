# The official SparK schedule: LAMB, lr 2e-4 per 256 images, betas (0.9, 0.95),
# weight decay 0.04 -> 0.2 (cosine), 40 warm-up epochs, cosine lr, clip 5 (in LAMB);
# lr and weight decay move per iteration by the official formulas
# (pretrain/utils/lr_control.py, see spark_mm/engine/schedulers.py).
# A config with other epoch numbers calls spark_param_scheduler with them: this
# file's param_scheduler is computed before the merge and keeps 1600/40.
# The empty _base_ must come first: it keeps mmengine's plain (not lazy-import)
# config mode, which an import statement alone would switch.
_base_ = []
from spark_mm.engine.schedulers import spark_param_scheduler  # noqa: E402

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

param_scheduler = spark_param_scheduler(max_epochs, warmup_epochs)

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
# The lr above is for a global batch of 4096; --auto-scale-lr rescales it.
auto_scale_lr = dict(base_batch_size=global_batch_size, enable=False)
