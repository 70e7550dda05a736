"""What tools/train.py and tools/test.py share: flags and the run's config."""
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log

from spark_mm.datasets import set_data_root, use_annotation_classes
from spark_mm.apis import read_config, revert_sync_bn_in_config
from spark_mm.engine.distributed import init_cpu_distributed
from tools.common.run_length import fit_schedule_to_run_length


def enable_amp(cfg: Config):
    """Mixed precision: mmengine's AmpOptimWrapper on GPU, bf16 autocast on CPU."""
    optim_wrapper = cfg.optim_wrapper
    if optim_wrapper.get('type', 'OptimWrapper') not in ('OptimWrapper',
                                                          'AmpOptimWrapper'):
        return
    if torch.cuda.is_available():
        optim_wrapper.type = 'AmpOptimWrapper'
        optim_wrapper.setdefault('loss_scale', 'dynamic')
    else:
        optim_wrapper.type = 'spark_mm.AutocastOptimWrapper'
        optim_wrapper.setdefault('dtype', 'bfloat16')


def parse_tool_args(parser, argv=None):
    """Add the flags tools/train.py and tools/test.py share, then parse.

    The shared flags (``--cfg-options``, ``--data-root``, ``--launcher``,
    ``--local_rank``) come
    last; ``LOCAL_RANK`` is set from ``--local_rank`` unless a launcher set it.
    """
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings in the config, key=value (xxx=yyy format)')
    parser.add_argument(
        '--data-root',
        help="use this data folder: replaces the config's data_root in every "
        'path built from it (same as --cfg-options data_root=DIR)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def load_tool_config(args) -> Config:
    """The config of a tools/train.py or tools/test.py run, from its arguments.

    ``args.config`` with ``args.cfg_options`` merged, ``--data-root`` (or
    ``data_root`` in ``cfg_options``) applied to every dataset path, the
    annotation file's class names used, the schedule stretched to a
    ``max_epochs`` or ``max_iters`` set on the command line, and ``cfg.launcher`` set;
    ``work_dir`` is ``args.work_dir``, else the config's, else
    ``./work_dirs/<config file name>``. A single-process run (launcher
    ``none``) turns SyncBN into BN and logs how many places changed; without
    CUDA, distributed runs use the gloo backend and CPU-capable DDP.
    """
    # data_root is folded into the dataset paths when the config is read, so
    # `--cfg-options data_root=X` is applied to all of them like --data-root.
    data_root = (args.cfg_options or {}).pop('data_root', None)
    data_root = getattr(args, 'data_root', None) or data_root
    cfg = read_config(args.config)
    config_train_cfg = dict(cfg.get('train_cfg') or {})
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
        fit_schedule_to_run_length(cfg, config_train_cfg, args.cfg_options)
    if data_root is not None:
        set_data_root(cfg, data_root)
    use_annotation_classes(cfg)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.launcher == 'none':
        replaced = revert_sync_bn_in_config(cfg)
        if replaced:
            print_log(f'single-process run: SyncBN replaced by BN in {replaced} '
                      'places of the config', logger='current')
    if not torch.cuda.is_available():
        cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
        if args.launcher != 'none' and cfg.get('model_wrapper_cfg') is None:
            # mmengine hands device_ids to DDP, which CPU modules refuse
            cfg.model_wrapper_cfg = dict(
                type='spark_mm.engine.CPUDistributedDataParallel',
                broadcast_buffers=False,
                find_unused_parameters=cfg.get('find_unused_parameters', False))
    return cfg


def start_cpu_distributed(cfg: Config) -> None:
    """Without CUDA, start the gloo process group of a launched run ourselves
    (mmengine's init_dist would call torch.cuda.set_device)."""
    if cfg.launcher != 'none' and not torch.cuda.is_available():
        init_cpu_distributed(cfg.launcher,
                             **cfg.get('env_cfg', {}).get('dist_cfg', {}))


def finish_distributed() -> None:
    """End a launched run's process group on every rank together: a barrier,
    then ``destroy_process_group``. Left to interpreter exit, a rank that
    leaves while gloo's threads still serve another can abort ("terminate
    called without an active exception")."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
