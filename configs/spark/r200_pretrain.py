# SparK ResNet-200: the ResNet-50 recipe with drop path 0.15. mmpretrain and
# mmdet stop at ResNet-152, so the backbone is timm's resnet200 (the one the
# official SparK code uses), with its BN layers made SyncBN by SparK.
_base_ = ['r50_pretrain.py']

model = dict(
    backbone=dict(_delete_=True, type='TIMMBackbone', model_name='resnet200',
                  features_only=True, pretrained=False, out_indices=(1, 2, 3, 4),
                  drop_path_rate=0.15),
    sync_bn=True)

# tools/train.py writes here unless --work-dir says otherwise; the export,
# <work_dir>/backbone.pth, is what the downstream configs read.
work_dir = 'work_dirs/r200_pretrain'
