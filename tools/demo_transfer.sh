#!/usr/bin/env bash
# CPU demo of SparK's point, transfer, end to end:
#   short SparK pretraining (ResNet-18, demo images) -> backbone export ->
#   Mask R-CNN fine-tuning on the synthetic COCO shapes -> COCO bbox/segm AP.
#   bash tools/demo_transfer.sh            # WORK=work_dirs/demo_transfer
# Knobs (environment): WORK, PRETRAIN_EPOCHS (default: the demo config's 12),
# FINETUNE_ITERS (default 40), COCO_DIR (default data/synthetic_coco).
set -euo pipefail
cd "$(dirname "$0")/.."
# Say which step stopped the demo (set -e alone exits without a word).
STEP="set-up"
trap 'status=$?; echo "error: demo_transfer.sh stopped at step $STEP (exit status $status); its output is above" >&2' ERR
PYTHON=${PYTHON:-python}
WORK=${WORK:-work_dirs/demo_transfer}
COCO_DIR=${COCO_DIR:-data/synthetic_coco}
FINETUNE_ITERS=${FINETUNE_ITERS:-40}
PRETRAIN_OPTS=()
if [[ -n "${PRETRAIN_EPOCHS:-}" ]]; then
    PRETRAIN_OPTS=(--cfg-options "train_cfg.max_epochs=${PRETRAIN_EPOCHS}"
                   "default_hooks.checkpoint.interval=${PRETRAIN_EPOCHS}")
fi

STEP="1/4 (SparK pretraining)"
echo "== 1/4 SparK pretraining (configs/spark/demo_r18.py)"
"$PYTHON" tools/train.py configs/spark/demo_r18.py --work-dir "$WORK/pretrain" \
    "${PRETRAIN_OPTS[@]}"
CKPT=$(cat "$WORK/pretrain/last_checkpoint")

STEP="2/4 (export)"
echo "== 2/4 export the backbone of $CKPT"
"$PYTHON" tools/export_backbone.py "$CKPT" --out-dir "$WORK/export"

STEP="3/4 (Mask R-CNN fine-tuning)"
echo "== 3/4 Mask R-CNN fine-tuning on $COCO_DIR ($FINETUNE_ITERS iterations)"
if [[ ! -f "$COCO_DIR/annotations/instances_val2017.json" ]]; then
    "$PYTHON" tools/make_synthetic_coco.py --out "$COCO_DIR"
fi
DATA_OPTS=(
    "train_dataloader.dataset.data_root=$COCO_DIR/"
    "val_dataloader.dataset.data_root=$COCO_DIR/"
    "test_dataloader.dataset.data_root=$COCO_DIR/"
    "val_evaluator.ann_file=$COCO_DIR/annotations/instances_val2017.json"
    "test_evaluator.ann_file=$COCO_DIR/annotations/instances_val2017.json"
)
"$PYTHON" tools/train.py configs/mask_rcnn/demo_r18_synthetic_coco.py \
    --work-dir "$WORK/maskrcnn" --cfg-options \
    "model.backbone.init_cfg.checkpoint=$WORK/export/backbone_mmdet.pth" \
    "train_cfg.max_iters=$FINETUNE_ITERS" "train_cfg.val_interval=$FINETUNE_ITERS" \
    "default_hooks.checkpoint.interval=$FINETUNE_ITERS" "${DATA_OPTS[@]}"

STEP="4/4 (COCO evaluation)"
echo "== 4/4 COCO evaluation (pycocotools) of the fine-tuned detector"
"$PYTHON" tools/test.py configs/mask_rcnn/demo_r18_synthetic_coco.py \
    "$WORK/maskrcnn/iter_${FINETUNE_ITERS}.pth" --work-dir "$WORK/test" \
    --cfg-options "${DATA_OPTS[@]}" 2>&1 | tee "$WORK/test.log"
trap - ERR
APS=$(grep -E "^metrics: " "$WORK/test.log" | sed "s/^metrics: //" | tr "," "\n" \
      | sed "s/^ *//" | grep -E "(bbox|segm)_mAP(_50)?=" || true)
if [[ -z "$APS" ]]; then
    echo "error: the evaluation gave no COCO AP: after $FINETUNE_ITERS fine-tuning iterations the" \
         "detector has no detection above its score threshold (model.test_cfg.rcnn.score_thr)" \
         "on any validation image ('testing results of the whole dataset is empty' above);" \
         "fine-tune longer (FINETUNE_ITERS=40, the default, or more)" >&2
    exit 1
fi
echo "$APS"
