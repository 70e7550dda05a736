#!/usr/bin/env bash
# Set up whatever is missing (tools/setup_env.sh), then run the main job: a short SparK
# pretraining of a ResNet-18 on the demo images. Extra arguments go to tools/train.py,
# e.g. `bash tools/quickstart.sh --cfg-options train_cfg.max_iters=20`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common/set_up.sh"
exec "$VENV/bin/python" tools/train.py configs/spark/demo_r18.py --work-dir work_dirs/demo_r18 "$@"
