"""Evaluate a checkpoint with mmengine's Runner (mmdet's tools/test.py flags),
for mmdet and mmseg configs alike.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl]
        [--show] [--show-dir DIR] [--wait-time S] [--tta]
        [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]

Like tools/train.py, a single-process run turns SyncBN into BN and a CPU-only
machine uses the gloo backend.
"""
import argparse
import os.path as osp
import sys

from mmengine.config import Config
from mmengine.runner import Runner

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import spark_mm  # noqa: E402,F401  (registers our components)
from spark_mm.checkpoint.loading import allow_mmengine_checkpoints  # noqa: E402
from spark_mm.checkpoint.model_fit import require_checkpoint_fits  # noqa: E402
from tools.common.mmcv_ops_check import require_mmcv_cuda_ops  # noqa: E402
from spark_mm.errors import one_line_message  # noqa: E402
from tools.common.run_config import (  # noqa: E402
    finish_distributed, load_tool_config, parse_tool_args, start_cpu_distributed)
from tools.common.test_options import (  # noqa: E402
    add_test_options, draw_predictions, use_tta)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs and metrics')
    parser.add_argument(
        '--out', help='dump predictions to a pickle file (.pkl/.pickle)')
    add_test_options(parser)
    parser.add_argument(
        '--allow-partial-checkpoint', action='store_true',
        help='evaluate even if the checkpoint lacks weights of the model '
        '(they keep their initial, random values)')
    args = parse_tool_args(parser, argv)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out must end with .pkl or .pickle, got {args.out!r}')
    return args


def build_config(args) -> Config:
    cfg = load_tool_config(args)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        draw_predictions(cfg, args)
    if args.tta:
        use_tta(cfg, args.config)
    if cfg.launcher != 'none':  # each rank evaluates its share: no DDP needed
        cfg.model_wrapper_cfg = dict(
            type='spark_mm.engine.distributed.DistributedEvalWrapper')
    return cfg


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.checkpoint):
        sys.exit(f'error: checkpoint {args.checkpoint!r} does not exist')
    allow_mmengine_checkpoints()  # torch >= 2.6 loads with weights_only=True
    try:
        return run_test(args)
    except Exception as error:  # bad input: one line; a bug: its traceback
        message = one_line_message(error)
        if message is None:
            raise
        sys.exit(f'error: {message}')


def run_test(args):
    cfg = build_config(args)
    require_mmcv_cuda_ops(cfg)  # CPU-only mmcv ops on a GPU: one line, exit 1
    start_cpu_distributed(cfg)  # dist_test.sh without a GPU: gloo
    runner = Runner.from_cfg(cfg)
    if not args.allow_partial_checkpoint:
        model = getattr(runner.model, 'module', runner.model)
        require_checkpoint_fits(model, args.checkpoint, fix=(
            'pass the checkpoint trained with this config, or add '
            '--allow-partial-checkpoint to evaluate it anyway'))
    if args.out is not None:
        if cfg.get('default_scope') == 'mmdet':
            from mmdet.evaluation import DumpDetResults as DumpResults
        else:  # mmseg and others: the predicted data samples as they are
            from mmengine.evaluator import DumpResults
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))
    metrics = runner.test()
    if runner.rank == 0:
        print('metrics: ' + ', '.join(f'{key}={value}'
                                      for key, value in metrics.items()))
    finish_distributed()
    return metrics


if __name__ == '__main__':
    main()
