"""mmdet's usual tools/test.py options: ``--show``, ``--show-dir``,
``--wait-time`` (drawn predictions) and ``--tta`` (test-time augmentation),
for mmdet and mmseg configs alike."""
import copy

from mmengine.config import Config, ConfigDict

from spark_mm.errors import SparKInputError


def add_test_options(parser) -> None:
    parser.add_argument('--show', action='store_true',
                        help='show the predictions in a window')
    parser.add_argument(
        '--show-dir',
        help='save images with the predictions drawn into this folder '
        '(mmdet: under <work_dir>/<timestamp>/)')
    parser.add_argument('--wait-time', type=float, default=2,
                        help='seconds each shown image stays (--show)')
    parser.add_argument('--tta', action='store_true',
                        help="test-time augmentation: the config's tta_model "
                        'and tta_pipeline (mmdet: horizontal flip if it '
                        'states none)')


def draw_predictions(cfg: Config, args) -> None:
    """Switch on the config's visualization hook, as mmdet's, mmseg's and
    mmpretrain's tools/test.py do."""
    hook = cfg.get('default_hooks', {}).get('visualization')
    kind = str((hook or {}).get('type', '')).split('.')[-1]
    if kind not in ('DetVisualizationHook', 'SegVisualizationHook',
                    'VisualizationHook'):
        raise SparKInputError(
            f'--show/--show-dir: {args.config} has no default_hooks.visualization '
            "of mmdet, mmseg or mmpretrain (DetVisualizationHook, "
            'SegVisualizationHook, VisualizationHook); add one to draw predictions')
    if kind == 'VisualizationHook':  # mmpretrain: enable, out_dir
        hook.enable = True
        hook.out_dir = args.show_dir
    else:
        hook.draw = True
    if args.show:
        hook.show, hook.wait_time = True, args.wait_time
    if args.show_dir and kind == 'DetVisualizationHook':
        hook.test_out_dir = args.show_dir
    elif args.show_dir and kind == 'SegVisualizationHook':
        cfg.visualizer.save_dir = args.show_dir  # it saves through the visualizer


def _mmdet_flip_tta(cfg: Config) -> None:
    """mmdet's default when a config states no TTA: the image and its
    horizontal flip, merged by DetTTAModel's NMS."""
    cfg.setdefault('tta_model', ConfigDict(
        type='DetTTAModel',
        tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100)))
    if 'tta_pipeline' in cfg:
        return
    dataset = cfg.test_dataloader.dataset
    while 'dataset' in dataset:  # wrapped datasets
        dataset = dataset.dataset
    pipeline = copy.deepcopy(dataset.pipeline)
    pipeline[-1] = dict(
        type='TestTimeAug',
        transforms=[[dict(type='RandomFlip', prob=1.0),
                     dict(type='RandomFlip', prob=0.0)],
                    [dict(type='PackDetInputs',
                          meta_keys=('img_id', 'img_path', 'ori_shape',
                                     'img_shape', 'scale_factor', 'flip',
                                     'flip_direction'))]])
    cfg.tta_pipeline = pipeline


def use_tta(cfg: Config, config_path: str) -> None:
    """Wrap the model in the config's TTA model and test with its pipeline."""
    if cfg.get('default_scope') == 'mmdet':
        _mmdet_flip_tta(cfg)
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise SparKInputError(
            f'--tta: {config_path} states no tta_model and tta_pipeline; add '
            'them to the config (see mmseg/mmdet configs) or leave --tta out')
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
