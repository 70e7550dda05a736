"""Train with mmengine's Runner: SparK pretraining and mmdet fine-tuning alike.

Flags follow mmdet/mmpretrain's tools/train.py. Additions: a single-process run
turns SyncBN into BN, a CPU-only machine gets the gloo backend, ``--amp`` means
bf16 autocast on CPU, and a missing dataset stops at once with one line.
"""
import argparse
import os
import os.path as osp
import sys

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.runner import Runner

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import spark_mm  # noqa: E402,F401  (registers our components)
from spark_mm.datasets import check_data_roots  # noqa: E402
from spark_mm.utils import enable_amp, revert_sync_bn_in_config  # noqa: E402


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
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings in the config, key=value (xxx=yyy format)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_config(args) -> Config:
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        enable_amp(cfg)
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if args.launcher == 'none':
        replaced = revert_sync_bn_in_config(cfg)
        if replaced:
            print_log(f'single-process run: SyncBN replaced by BN in {replaced} '
                      'places of the config', logger='current')
    if not torch.cuda.is_available():
        cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    return cfg


def main():
    args = parse_args()
    cfg = build_config(args)
    try:
        check_data_roots(cfg)
    except FileNotFoundError as error:
        sys.exit(f'error: {error}')
    if 'runner_type' in cfg:
        from mmengine.registry import RUNNERS
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    runner.train()
    last = osp.join(runner.work_dir, 'last_checkpoint')
    if runner.rank == 0 and osp.isfile(last):
        with open(last) as f:
            print(f'checkpoint: {f.read().strip()}')


if __name__ == '__main__':
    main()
