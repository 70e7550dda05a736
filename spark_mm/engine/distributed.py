"""Distributed training on machines without a GPU (gloo backend).

Two things stop mmengine 0.10.7 there: its ``init_dist`` calls
``torch.cuda.set_device`` for the pytorch and slurm launchers, and its
``Runner`` hands ``device_ids=[LOCAL_RANK]`` to ``DistributedDataParallel``,
which CPU modules refuse. On top, torch's ``nn.SyncBatchNorm`` only runs on
accelerators. :func:`init_cpu_distributed` starts the process group itself
(the Runner then skips its own start), and :class:`CPUDistributedDataParallel`
wraps CPU models and turns every ``nn.SyncBatchNorm`` into ``CPUSyncBatchNorm``
(:mod:`.cpu_sync_bn`), which combines the statistics of all ranks over gloo.
"""
import os
import subprocess
from datetime import timedelta

import torch.distributed as dist
import torch.nn as nn
from mmengine.model import MMDistributedDataParallel

from ..errors import SparKInputError
from ..registry import MODEL_WRAPPERS
from .cpu_sync_bn import convert_sync_batchnorm_for_cpu, runs_on_cpu


def _slurm_environment() -> dict:
    """RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR of a ``srun`` task, as mmengine derives them."""
    nodes = subprocess.getoutput(
        f'scontrol show hostname {os.environ["SLURM_NODELIST"]} | head -n1')
    return dict(RANK=os.environ['SLURM_PROCID'],
                WORLD_SIZE=os.environ['SLURM_NTASKS'],
                LOCAL_RANK=os.environ.get('SLURM_LOCALID', '0'),
                MASTER_ADDR=os.environ.get('MASTER_ADDR', nodes),
                MASTER_PORT=os.environ.get('MASTER_PORT', '29500'))


def init_cpu_distributed(launcher: str, backend: str = 'gloo',
                         timeout: float = None) -> None:
    """Start the process group for ``launcher`` ('pytorch' or 'slurm') on CPU."""
    if dist.is_initialized():
        return
    if launcher == 'slurm':
        os.environ.update(_slurm_environment())
    elif launcher != 'pytorch':
        raise SparKInputError(f'launcher {launcher!r} is not supported without a '
                              'GPU; use --launcher pytorch (tools/dist_train.sh) '
                              'or slurm (tools/slurm_train.sh)')
    kwargs = {} if timeout is None else dict(timeout=timedelta(seconds=timeout))
    dist.init_process_group(backend=backend, rank=int(os.environ['RANK']),
                            world_size=int(os.environ['WORLD_SIZE']), **kwargs)


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` for models on CPU (gloo).

    ``device_ids`` is dropped (CPU modules take none) and ``nn.SyncBatchNorm``
    layers are converted with :func:`convert_sync_batchnorm_for_cpu`. The
    Runner looks wrappers up in mmengine's root registry, which does not see
    ours: name it by its import path, ``spark_mm.engine.CPUDistributedDataParallel``.
    """

    def __init__(self, module: nn.Module, device_ids=None, output_device=None,
                 **kwargs):
        convert_sync_batchnorm_for_cpu(module)
        super().__init__(module=module, device_ids=None, **kwargs)

    def _passing_sync_batchnorm_handle(self, module):
        # torch refuses every SyncBatchNorm in a CPU module; ours run on gloo.
        for layer in module.modules():
            if not runs_on_cpu(layer):
                raise SparKInputError(
                    f'{type(layer).__name__} cannot run on CPU; convert it '
                    'with convert_sync_batchnorm_for_cpu')


@MODEL_WRAPPERS.register_module()
class DistributedEvalWrapper(nn.Module):
    """The model as it is, for distributed evaluation (``tools/test.py``).

    Evaluation synchronises nothing but the results, which mmengine's
    evaluator collects itself, so the DDP machinery is not needed; torch's
    DDP even refuses a model without trainable parameters (a kNN classifier
    on a frozen backbone). CPU and GPU alike.
    """

    def __init__(self, module: nn.Module, **kwargs):
        super().__init__()
        self.module = module

    def val_step(self, data):
        return self.module.val_step(data)

    def test_step(self, data):
        return self.module.test_step(data)

    def train_step(self, data, optim_wrapper):
        raise RuntimeError('DistributedEvalWrapper is for evaluation only; '
                           'training needs CPUDistributedDataParallel / DDP')
