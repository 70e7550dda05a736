#!/usr/bin/env bash
# Distributed training with torchrun, as mmdet's tools/dist_train.sh:
#   bash tools/dist_train.sh CONFIG NGPUS [train.py args...]
# NGPUS processes per node: one per GPU, or (no GPU) that many CPU processes
# talking over gloo. Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT.
# Elastic (docs/cluster.md): MAX_RESTARTS=N lets torchrun restart the group up
# to N times when a process dies; the restarted group resumes from the last
# checkpoint of this launch. It needs the c10d rendezvous (torchrun's static
# one hands a restarted group its dead predecessor's store), which
# RDZV_BACKEND=c10d also chooses without restarts; there the nodes get their
# ranks in the order they join, NODE_RANK is not used, and RDZV_ID (same on
# every node) names the job.
set -e
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
MAX_RESTARTS=${MAX_RESTARTS:-0}
PYTHON=${PYTHON:-python}

if [ -z "$CONFIG" ] || [ -z "$GPUS" ]; then
    echo "usage: bash $0 CONFIG NGPUS [train.py args...]" >&2
    exit 2
fi
if ! [[ "$MAX_RESTARTS" =~ ^[0-9]+$ ]]; then
    echo "error: MAX_RESTARTS=$MAX_RESTARTS is not a number of restarts; use e.g. MAX_RESTARTS=3" >&2
    exit 2
fi
if [ "$MAX_RESTARTS" -gt 0 ]; then
    RDZV_BACKEND=${RDZV_BACKEND:-c10d}
fi
RDZV_BACKEND=${RDZV_BACKEND:-static}

case "$RDZV_BACKEND" in
static)
    if [ "$MAX_RESTARTS" -gt 0 ]; then
        echo "error: MAX_RESTARTS=$MAX_RESTARTS needs RDZV_BACKEND=c10d (a static rendezvous cannot restart a group); drop RDZV_BACKEND=static" >&2
        exit 2
    fi
    RENDEZVOUS=(--node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR"
                --master_port="$PORT")
    ;;
c10d)
    RENDEZVOUS=(--rdzv_backend=c10d --rdzv_endpoint="$MASTER_ADDR:$PORT"
                --rdzv_id="${RDZV_ID:-spark_mm}")
    # a fresh store for each rendezvous round: the shared one keeps the dead
    # group's addresses (pytorch/pytorch#135712)
    export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=${TORCH_DISABLE_SHARE_RDZV_TCP_STORE:-1}
    ;;
*)
    echo "error: RDZV_BACKEND=$RDZV_BACKEND is not supported; use static (the default) or c10d" >&2
    exit 2
    ;;
esac

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --nproc_per_node="$GPUS" \
    --max_restarts="$MAX_RESTARTS" \
    "${RENDEZVOUS[@]}" \
    "$(dirname "$0")/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
