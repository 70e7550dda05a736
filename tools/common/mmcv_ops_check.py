"""Stop a GPU run of a detection/segmentation config at once when mmcv's ops
cannot run on the GPU (an mmcv built on a machine without CUDA), instead of
failing deep inside RoIAlign or nms after the model and data were built."""
import sys
from typing import Optional

import torch

# Scopes whose models call mmcv's compiled ops (RoIAlign, nms, ...).
OPS_SCOPES = ('mmdet', 'mmseg')
REBUILD = 'SPARK_MM_SETUP_FORCE=1 bash tools/setup_env.sh'
NO_CUDA = 'not available'  # mmcv's get_compiling_cuda_version() of a CPU-only build


def config_needs_mmcv_ops(cfg) -> Optional[str]:
    """The mmdet/mmseg scope of the config if its model needs mmcv's ops, else None."""
    scope = cfg.get('default_scope')
    if scope in OPS_SCOPES:
        return scope
    model_type = str((cfg.get('model') or {}).get('type', ''))
    prefix = model_type.split('.')[0] if '.' in model_type else None
    return prefix if prefix in OPS_SCOPES else None


def mmcv_ops_cuda_version() -> Optional[str]:
    """The CUDA release mmcv's ops were compiled with ('not available' for a
    CPU-only build), or None when mmcv has no compiled ops at all."""
    try:  # mmcv may lack its compiled ops: that absence is what is checked
        from mmcv.ops import get_compiling_cuda_version
    except ImportError:
        return None
    return get_compiling_cuda_version()


def mmcv_cuda_ops_problem(cfg, cuda_available: bool,
                          ops_cuda_version: Optional[str]) -> Optional[str]:
    """One line saying why this run cannot use mmcv's ops on the GPU, or None."""
    scope = config_needs_mmcv_ops(cfg)
    if not cuda_available or scope is None:
        return None
    if ops_cuda_version is None:
        return (f'mmcv has no compiled ops, which this {scope} config needs; '
                f'rebuild with: {REBUILD}')
    if ops_cuda_version == NO_CUDA:
        return (f"mmcv's ops were built without CUDA, so this {scope} config "
                f'cannot run on the GPU; rebuild with: {REBUILD} '
                '(or run on the CPU with CUDA_VISIBLE_DEVICES=)')
    return None


def require_mmcv_cuda_ops(cfg) -> None:
    """Exit with status 1 and one line when mmcv's ops do not fit a GPU run of cfg."""
    if config_needs_mmcv_ops(cfg) is None or not torch.cuda.is_available():
        return
    problem = mmcv_cuda_ops_problem(cfg, True, mmcv_ops_cuda_version())
    if problem:
        sys.exit(f'error: {problem}')
