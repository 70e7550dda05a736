#!/usr/bin/env bash
# Training under slurm, as mmdet's tools/slurm_train.sh:
#   [GPUS=8 GPUS_PER_NODE=8] bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
# One task per GPU. GPUS_PER_NODE=0 runs GPUS CPU tasks (gloo) without --gres.
#
# Preemption (docs/cluster.md): on SIGTERM (slurm preempts or cancels) or
# SIGUSR1 every task finishes its iteration, the run saves exactly that
# iteration and exits 75 (EX_TEMPFAIL); `--resume` continues bit-exactly.
# Ask slurm for SIGUSR1 some seconds before the time limit, enough for one
# iteration and one checkpoint:   SRUN_ARGS="--signal=USR1@180"
# REQUEUE=1 (inside an sbatch job) requeues the job with `scontrol requeue`
# when the run exited 75; pass --resume so that the requeued job continues
# (it starts fresh when nothing was saved yet). slurm.conf's RequeueExit=75
# does the same cluster-wide.
set -x
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-python}
PY_ARGS=${@:5}

GRES=""
TASKS_PER_NODE=${GPUS_PER_NODE}
if [ "$GPUS_PER_NODE" -gt 0 ]; then
    GRES="--gres=gpu:${GPUS_PER_NODE}"
else
    TASKS_PER_NODE=${TASKS_PER_NODE_CPU:-$GPUS}
fi

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    ${GRES} \
    --ntasks="${GPUS}" \
    --ntasks-per-node="${TASKS_PER_NODE}" \
    --cpus-per-task="${CPUS_PER_TASK}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "$PYTHON" -u "$(dirname "$0")/train.py" "${CONFIG}" --work-dir="${WORK_DIR}" \
    --launcher="slurm" ${PY_ARGS}
STATUS=$?
if [ "$STATUS" -eq 75 ] && [ "${REQUEUE:-0}" = 1 ] && [ -n "$SLURM_JOB_ID" ]; then
    scontrol requeue "$SLURM_JOB_ID"
fi
exit "$STATUS"
