"""Train with mmengine's Runner: SparK pretraining, mmdet and mmseg fine-tuning alike
(the config's ``default_scope`` picks the package).

Flags follow mmdet/mmpretrain's tools/train.py. Additions: a single-process run
turns SyncBN into BN, a CPU-only machine gets the gloo backend, ``--amp`` means
bf16 autocast on CPU (a config's fp16 AmpOptimWrapper runs in fp32 there),
and a missing dataset stops at once with one line.
Reliability: checkpoints are written atomically, a NaN/inf loss stops the run
before it is saved, each step is seeded from (seed, rank, step) so that
``--resume`` continues bit-exactly, mmengine checkpoints load with torch's
``weights_only=True``, ``--launcher pytorch``/``slurm`` work on CPU (gloo), and
bad input (config, data, checkpoint) ends with one line instead of a traceback.
Cluster life (docs/cluster.md): SIGTERM/SIGUSR1 (PreemptionHook) save the
current iteration and exit 75 for a requeue; ``--resume`` on an empty work dir
starts fresh; the work dir is locked against a second run; a group that
torchrun restarts (``--max-restarts``, tools/dist_train.sh's MAX_RESTARTS)
resumes from the last checkpoint this launch wrote.
"""
import argparse
import contextlib
import os
import os.path as osp
import sys

import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner, find_latest_checkpoint

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import spark_mm  # noqa: E402,F401  (registers our components)
from spark_mm.checkpoint.loading import (  # noqa: E402
    allow_mmengine_checkpoints, check_checkpoint_matches)
from spark_mm.datasets import check_data_roots  # noqa: E402
from spark_mm.datasets.loader_settings import (  # noqa: E402
    check_batch_fits_dataset, drop_persistent_workers_without_workers)
from spark_mm.engine.preemption import (  # noqa: E402
    REQUEUE_EXIT_STATUS, TrainingPreempted)
from spark_mm.engine.work_dir import claim_work_dir  # noqa: E402
from spark_mm.errors import SparKInputError, one_line_message  # noqa: E402
from tools.common.backbone_files import check_backbone_files  # noqa: E402
from tools.common.elastic_restart import (  # noqa: E402
    check_restart_store, checkpoint_of_this_launch, launched_by_torchrun)
from tools.common.mmcv_ops_check import require_mmcv_cuda_ops  # noqa: E402
from tools.common.quiet_logs import quiet_param_logs  # noqa: E402
from tools.common.run_config import (  # noqa: E402
    enable_amp, finish_distributed, load_tool_config, parse_tool_args,
    start_cpu_distributed)


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from the given checkpoint, or (no value) from the latest '
        'checkpoint in the work dir')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: fp16 AMP on GPU, bf16 autocast on CPU')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by the actual global batch size')
    return parse_tool_args(parser)


def amp_wrapper_to_fp32_on_cpu(cfg: Config) -> None:
    """mmengine's AmpOptimWrapper (fp16, e.g. mmseg's ConvNeXt recipe) needs a
    GPU: without one, train in fp32 (``--amp`` then means bf16 autocast)."""
    optim_wrapper = cfg.get('optim_wrapper')
    if optim_wrapper is None or optim_wrapper.get('type') != 'AmpOptimWrapper':
        return
    optim_wrapper.type = 'OptimWrapper'
    for key in ('loss_scale', 'dtype', 'use_fsdp'):
        optim_wrapper.pop(key, None)
    print_log('no CUDA: the config\'s AmpOptimWrapper (fp16) runs as an fp32 '
              'OptimWrapper; --amp for bf16 autocast', logger='current')


def enable_auto_scale_lr(cfg: Config, config_path: str) -> None:
    """``--auto-scale-lr``: mmengine rescales the lr from the config's
    ``auto_scale_lr.base_batch_size`` to the run's global batch."""
    if 'base_batch_size' not in (cfg.get('auto_scale_lr') or {}):
        raise SparKInputError(
            f'--auto-scale-lr: {config_path} states no '
            'auto_scale_lr.base_batch_size (the batch its lr is meant for); '
            'add auto_scale_lr = dict(base_batch_size=N) to the config')
    cfg.auto_scale_lr.enable = True


def build_config(args) -> Config:
    cfg = load_tool_config(args)
    drop_persistent_workers_without_workers(cfg)
    if not torch.cuda.is_available():
        amp_wrapper_to_fp32_on_cpu(cfg)
    if args.amp:
        enable_amp(cfg)
    if args.auto_scale_lr:
        enable_auto_scale_lr(cfg, args.config)
    restarted_after = checkpoint_of_this_launch(cfg.work_dir)
    if restarted_after is not None:
        print_log(f'torchrun restarted the group: resuming from '
                  f'{restarted_after}, the last checkpoint of this launch',
                  logger='current')
        args.resume = 'auto'
    if args.resume == 'auto' and find_latest_checkpoint(cfg.work_dir) is None:
        print_log(f'--resume: nothing to resume in {cfg.work_dir} (no '
                  'checkpoint yet); starting fresh', logger='current')
    elif args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


def check_checkpoint_to_load(runner):
    """Fail in one line on a missing/truncated/mismatching checkpoint."""
    path = runner.cfg.get('load_from')
    if runner.cfg.get('resume') and path is None:
        path = find_latest_checkpoint(runner.work_dir)
    if path is None or '://' in str(path):
        return
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    check_checkpoint_matches(model, path, strict=bool(runner.cfg.get('resume')))


def launched_rank() -> int:
    """This process's rank as the launcher set it (before any process group)."""
    return int(os.environ.get('RANK', os.environ.get('SLURM_PROCID', 0)))


# how long a group that torchrun restarted waits for the stopped group's
# data-loader workers to let go of the work-dir lock
RESTART_LOCK_WAIT_S = 30


def train(cfg):
    check_data_roots(cfg)
    check_backbone_files(cfg)  # missing: one line naming the command that writes it
    # held while the run lasts (closed on any exit): a second run is refused
    wait_s = RESTART_LOCK_WAIT_S if launched_by_torchrun() else 0
    claimed = claim_work_dir(cfg.work_dir, wait_s) if launched_rank() == 0 \
        else contextlib.nullcontext()
    with claimed:
        run_training(cfg)


def run_training(cfg):
    start_cpu_distributed(cfg)
    if 'runner_type' in cfg:
        from mmengine.registry import RUNNERS
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    check_checkpoint_to_load(runner)
    quiet_param_logs(runner)  # parameter groups as one table, not ~90 lines
    if runner.train_loop is not None:
        check_batch_fits_dataset(runner.train_loop.dataloader,
                                 runner.world_size)
    try:
        runner.train()
    except TrainingPreempted as preempted:
        finish_distributed()
        if runner.rank == 0:
            print(f'preempted: {preempted}', file=sys.stderr)
        sys.exit(REQUEUE_EXIT_STATUS)
    last = osp.join(runner.work_dir, 'last_checkpoint')
    if runner.rank == 0 and osp.isfile(last):
        with open(last) as f:
            print(f'checkpoint: {f.read().strip()}')
    finish_distributed()


def main():
    args = parse_args()
    allow_mmengine_checkpoints()  # torch >= 2.6 loads with weights_only=True
    try:
        check_restart_store()  # before anything is read: the group cannot form
        cfg = build_config(args)
        require_mmcv_cuda_ops(cfg)  # CPU-only mmcv ops on a GPU: one line, exit 1
        train(cfg)
    except Exception as error:  # bad input: one line; a bug: its traceback
        message = one_line_message(error)
        if message is None:
            raise
        sys.exit(f'error: {message}')


if __name__ == '__main__':
    main()
