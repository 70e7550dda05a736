# SparK ConvNeXt-S (convnext_s_pretrain.py) in fp16 mixed precision on GPUs,
# as mmpretrain's SparK ConvNeXt recipe trains: mmengine's AmpOptimWrapper
# (fp16 autocast, dynamic loss scaling by torch's GradScaler), LAMB's own clip
# of the unscaled gradients; see r50_pretrain_amp.py.
_base_ = ['convnext_s_pretrain.py']

optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic')

# its own folder: fine-tuning configs read work_dirs/convnext_s_pretrain/backbone.pth
work_dir = 'work_dirs/convnext_s_pretrain_amp'
