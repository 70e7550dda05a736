#!/usr/bin/env bash
# Idempotent environment set-up for spark_mm.
#
#   bash tools/setup_env.sh
#
# Creates (or reuses) a virtual environment at $SPARK_MM_VENV (default: <repo>/.venv) and installs
# what is missing: requirements/runtime.txt + requirements/tests.txt, mmcv 2.1.0 WITH compiled ops,
# and this package in editable mode. When nothing changed since the last successful run (a stamp
# in the venv holds a hash of requirements/*.txt, setup.py and this script) and a quick check of
# the venv passes, it prints one line and exits.
#
# mmcv 2.1.0: PyPI has only its source. A matching wheel is taken from the per-machine cache
# ${SPARK_MM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spark_mm}/wheels/torch-<torch version>/ or
# from pip's own find-links (e.g. PIP_FIND_LINKS=/some/dir); otherwise the source is downloaded,
# its -std=c++17 is raised to what the installed torch needs (C++20 for torch >= 2.10), and a
# wheel is built (about 14 minutes on 2 cores), stored in that cache and installed. So it is
# built once per machine and torch version.
#
# When torch sees a CUDA GPU, mmcv's ops must run on it: the wheel is built with CUDA ops for the
# visible GPUs' architectures only (TORCH_CUDA_ARCH_LIST, e.g. 9.0), with an nvcc of torch's CUDA
# release installed into the venv from the package index (cuda-toolkit[nvcc,cccl]), and cached in
# .../wheels/torch-<version>-cu<xy>-sm<NN>/ (e.g. torch-2.14.1-cu130-sm90), apart from CPU wheels.
# An installed mmcv whose ops lack CUDA, or do not run on this GPU, is replaced. The decisions are
# in tools/setup_helpers.py (mmcv-plan, mmcv-fits, cuda-env).
#
# Environment: SPARK_MM_VENV, SPARK_MM_CACHE, PYTHON (interpreter for a new venv),
# SPARK_MM_SETUP_FORCE=1 (ignore the stamp), MAX_JOBS (compile jobs, default: all cores).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SPARK_MM_VENV:-$ROOT/.venv}"
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
CACHE="${SPARK_MM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spark_mm}"
case "$CACHE" in /*) ;; *) CACHE="$PWD/$CACHE" ;; esac
MMCV_VERSION=2.1.0
# setuptools >= 82 has no pkg_resources, which mmcv 2.1.0's setup.py imports
BUILD_TOOLS=("setuptools>=75,<81" "wheel" "ninja")
PY="$VENV/bin/python"
STAMP="$VENV/.spark_mm_setup_stamp"
cd "$ROOT"

log() { echo "setup_env: $*"; }
die() { echo "setup_env: ERROR: $*" >&2; exit 1; }

inputs_hash() {
    { printf '%s\n' "$ROOT" "$MMCV_VERSION"
      # the GPUs the driver shows: a venv set up without one is set up again once one appears
      ls /proc/driver/nvidia/gpus 2>/dev/null || true
      cat requirements/*.txt setup.py tools/setup_env.sh tools/setup_helpers.py
    } | sha256sum | cut -d' ' -f1
}
HASH="$(inputs_hash)"

# ---- fast path: stamp matches and a quick (import-free) check passes -------------------------
if [ -z "${SPARK_MM_SETUP_FORCE:-}" ] && [ -x "$PY" ] && [ -f "$STAMP" ] \
        && [ "$(cat "$STAMP")" = "$HASH" ]; then
    if problems="$("$PY" tools/setup_helpers.py check "$ROOT" 2>&1)"; then
        log "environment up to date ($VENV), nothing to do"
        exit 0
    fi
    printf '%s\n' "$problems"
    log "stamp is current but the environment is incomplete: repairing"
fi

START=$SECONDS
pip_() { "$PY" -m pip "$@"; }

# ---- 1. virtual environment ------------------------------------------------------------------
if [ ! -x "$PY" ]; then
    BASE_PY="${PYTHON:-}"
    if [ -z "$BASE_PY" ]; then
        for cand in python3.11 python3 python; do
            if command -v "$cand" >/dev/null 2>&1 \
                    && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 8))' 2>/dev/null; then
                BASE_PY="$cand"
                break
            fi
        done
    fi
    [ -n "$BASE_PY" ] || die "no Python >= 3.8 found (set PYTHON=/path/to/python3.11)"
    log "creating venv $VENV with $("$BASE_PY" --version 2>&1)"
    "$BASE_PY" -m venv "$VENV"
fi
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || log "warning: tested with Python 3.11, this venv has $("$PY" --version 2>&1)"

# ---- 2. runtime + test requirements, except mmcv (step 3) ------------------------------------
REQS_TMP="$(mktemp "${TMPDIR:-/tmp}/spark_mm_reqs.XXXXXX")"
BUILD_TMP=""
cleanup() { rm -f "$REQS_TMP"; if [ -n "$BUILD_TMP" ]; then rm -rf "$BUILD_TMP"; fi; }
trap cleanup EXIT
grep -viE '^[[:space:]]*mmcv([[:space:]<>=!~;[]|$)' requirements/runtime.txt > "$REQS_TMP"
log "installing requirements (runtime without mmcv, tests)"
pip_ install "setuptools>=64" -r "$REQS_TMP" -r requirements/tests.txt

# ---- 3. mmcv with compiled ops ---------------------------------------------------------------
# What torch sees decides the ops: CPU ones (WHEELS=.../torch-<version>), or on a CUDA GPU CUDA
# ones for its architecture (MMCV_CUDA=<torch's CUDA release>, MMCV_CUDA_ARCHS, NVCC_REQUIREMENT,
# TORCH_REQUIREMENT, WHEELS=.../torch-<version>-cu<xy>-sm<NN>).
MMCV_CUDA="" MMCV_CUDA_ARCHS="" NVCC_REQUIREMENT="" TORCH_REQUIREMENT="" WHEELS=""
PLAN="$("$PY" tools/setup_helpers.py mmcv-plan "$CACHE")" || exit 1
eval "$PLAN"
if [ -n "$MMCV_CUDA" ]; then
    log "torch sees a GPU (CUDA $MMCV_CUDA, arch $MMCV_CUDA_ARCHS): mmcv needs CUDA ops for it"
fi
MMCV_PROBLEM=""
# sets MMCV_PROBLEM to why the installed mmcv does not fit (on a GPU: runs one nms on it)
mmcv_ok() {
    MMCV_PROBLEM="$("$PY" tools/setup_helpers.py mmcv-fits "$MMCV_VERSION" "$MMCV_CUDA" 2>&1)"
}
mmcv_installed() { pip_ show mmcv >/dev/null 2>&1; }

build_mmcv_wheel() {  # $1: destination folder
    local dest="$1" std src t0 cuda_env=""
    if [ -n "$MMCV_CUDA" ]; then
        log "no mmcv $MMCV_VERSION wheel for this GPU: building it from source with CUDA ops" \
            "for arch $MMCV_CUDA_ARCHS (not timed on a GPU yet; longer than the CPU build)"
        log "installing nvcc for CUDA $MMCV_CUDA into the venv: $NVCC_REQUIREMENT"
        # with torch's own requirement, so that pip keeps the CUDA libraries torch pins
        pip_ install "$NVCC_REQUIREMENT" "$TORCH_REQUIREMENT"
        cuda_env="$("$PY" tools/setup_helpers.py cuda-env "$VENV/cuda-link" \
            "$MMCV_CUDA_ARCHS" "$MMCV_CUDA")" || exit 1
    else
        log "no mmcv $MMCV_VERSION wheel for this machine: building it from source (about 14 min on 2 cores)"
    fi
    pip_ install "${BUILD_TOOLS[@]}"
    BUILD_TMP="$(mktemp -d "${TMPDIR:-/tmp}/spark_mm_mmcv.XXXXXX")"
    # --no-build-isolation: mmcv's setup.py imports torch even to read its metadata
    pip_ download "mmcv==$MMCV_VERSION" --no-binary :all: --no-deps --no-build-isolation \
        -d "$BUILD_TMP"
    tar -xzf "$BUILD_TMP/mmcv-$MMCV_VERSION.tar.gz" -C "$BUILD_TMP"
    src="$BUILD_TMP/mmcv-$MMCV_VERSION"
    std="$("$PY" tools/setup_helpers.py cxx-std)"
    log "torch $("$PY" -c 'import importlib.metadata as m; print(m.version("torch"))') needs -std=$std"
    # mmcv's setup.py asks for c++17 (c++14 for torch <= 1.12); only newer torch needs a change
    if [ "$std" != "c++17" ]; then
        "$PY" tools/setup_helpers.py patch-cxx "$src/setup.py" "$std"
    fi
    t0=$SECONDS
    (
        cd "$src"
        # CUDA_HOME (the venv's nvcc), TORCH_CUDA_ARCH_LIST, FORCE_CUDA=1, CPATH, LIBRARY_PATH
        if [ -n "$cuda_env" ]; then eval "$cuda_env"; fi
        export PATH="$VENV/bin:$PATH"  # ninja from the venv
        export MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc 2>/dev/null || echo 2)}"
        pip_ wheel --no-build-isolation --no-deps -w "$BUILD_TMP/dist" .
    )
    log "mmcv wheel built in $((SECONDS - t0)) s"
    mkdir -p "$dest"
    # move into the cache only once complete, so an interrupted build leaves no half wheel
    for whl in "$BUILD_TMP"/dist/mmcv-"$MMCV_VERSION"-*.whl; do
        cp "$whl" "$dest/.$(basename "$whl").part"
        mv "$dest/.$(basename "$whl").part" "$dest/$(basename "$whl")"
        log "cached $dest/$(basename "$whl")"
    done
    rm -rf "$BUILD_TMP"
    BUILD_TMP=""
}

if mmcv_ok; then
    log "mmcv $MMCV_VERSION with compiled ops${MMCV_CUDA:+ (CUDA $MMCV_CUDA)}: already installed"
else
    mkdir -p "$WHEELS"
    # one build at a time per machine (two set-ups started together wait for each other)
    exec 9>"$CACHE/wheels/.lock"
    if command -v flock >/dev/null 2>&1; then flock 9; fi
    if mmcv_installed; then
        log "removing the installed mmcv: $MMCV_PROBLEM"
        pip_ uninstall -y mmcv
    fi
    # a wheel from this machine's cache or from pip's own find-links (PIP_FIND_LINKS, pip.conf)
    if pip_ install "mmcv==$MMCV_VERSION" --only-binary mmcv --find-links "$WHEELS" && mmcv_ok; then
        log "mmcv $MMCV_VERSION installed from a prebuilt wheel"
    else
        if mmcv_installed; then
            log "no usable prebuilt wheel ($MMCV_PROBLEM): removing it"
            pip_ uninstall -y mmcv
        fi
        CACHED="$(ls "$WHEELS"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
        if [ -n "$CACHED" ]; then
            pip_ install --no-deps "$CACHED"
            if mmcv_ok; then
                log "mmcv $MMCV_VERSION installed from the cached wheel $CACHED"
            else
                log "the cached wheel $CACHED does not fit ($MMCV_PROBLEM): removing it"
                pip_ uninstall -y mmcv
                rm -f "$CACHED"
                CACHED=""
            fi
        fi
        if [ -z "$CACHED" ]; then
            build_mmcv_wheel "$WHEELS"
            CACHED="$(ls "$WHEELS"/mmcv-"$MMCV_VERSION"-*.whl | head -n1)"
            pip_ install "$CACHED"
            mmcv_ok || die "mmcv $MMCV_VERSION built and installed from $CACHED, but: $MMCV_PROBLEM"
        fi
    fi
    exec 9>&-
fi

# ---- 4. this package, editable ---------------------------------------------------------------
log "installing spark_mm (editable)"
pip_ install --no-deps --no-build-isolation -e "$ROOT"

# ---- 5. verify, then stamp -------------------------------------------------------------------
"$PY" -c "import torch, mmcv, mmcv.ops, mmengine, mmpretrain, mmdet, timm, pycocotools, spark_mm
from mmcv.ops import RoIAlign, nms" || die "import check failed"
"$PY" tools/setup_helpers.py check "$ROOT" || die "environment check failed"
echo "$HASH" > "$STAMP"
log "done in $((SECONDS - START)) s ($VENV)"
