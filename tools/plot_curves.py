"""Plot the loss and learning-rate curves of a training run as a PNG, with
mmpretrain's own log analysis.

mmpretrain ships ``tools/analysis_tools/analyze_logs.py`` inside its package
(``mmpretrain/.mim/``); its ``plot_curve`` reads mmengine's
``<work_dir>/<timestamp>/vis_data/scalars.json`` and draws training and
validation scalars. This wrapper adds only what it lacks: finding the newest
run of a work dir, and one panel per key (loss and lr differ by orders of
magnitude, and it draws every key on one axis). Given a work dir, the newest
run (latest timestamp folder with a scalars.json) is plotted; a run folder or
the scalars.json itself may be given instead.

    python tools/plot_curves.py work_dirs/demo_r18 --out curves.png
"""
import argparse
import glob
import importlib.util
import os.path as osp
import sys
from typing import Dict, Sequence

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import mmpretrain  # noqa: E402
from mmpretrain.utils import load_json_log  # noqa: E402

SCALARS = osp.join('vis_data', 'scalars.json')
ANALYZE_LOGS = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'tools',
                        'analysis_tools', 'analyze_logs.py')


def find_scalars(path: str) -> str:
    """The scalars.json of ``path``: the file, a run folder, or the newest run of a work dir."""
    if osp.isfile(path):
        return path
    if osp.isfile(osp.join(path, SCALARS)):
        return osp.join(path, SCALARS)
    # timestamp folders sort by time; a run that logged nothing yet is skipped
    runs = sorted(run for run in glob.glob(osp.join(path, '*', SCALARS))
                  if osp.getsize(run) > 0)
    if not runs:
        raise FileNotFoundError(
            f'no {SCALARS} under {path!r}; pass the work dir of a run of '
            'tools/train.py (it logs to <work_dir>/<timestamp>/vis_data/)')
    return runs[-1]


def analyze_logs():
    """mmpretrain's analyze_logs.py (a script in its package, not a module)."""
    if not osp.isfile(ANALYZE_LOGS):
        raise FileNotFoundError(
            f'mmpretrain {mmpretrain.__version__} has no {ANALYZE_LOGS}; '
            'install mmpretrain from PyPI (its wheel ships tools/ in .mim/)')
    spec = importlib.util.spec_from_file_location('mmpretrain_analyze_logs',
                                                  ANALYZE_LOGS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plot_curves(path: str, out: str = 'curves.png',
                keys: Sequence[str] = ('loss', 'lr')) -> Dict[str, tuple]:
    """Plot ``keys``, one panel each, with mmpretrain's ``plot_curve_helper``;
    returns the plotted (x, y) of each key."""
    scalars = find_scalars(path)
    try:
        log_dict = load_json_log(scalars)
    except ValueError as error:  # a line that is not JSON: a cut-off or foreign file
        raise ValueError(f'{scalars} is not a log of mmengine scalars ({error})') from None
    helper = analyze_logs()
    settings = argparse.Namespace(json_logs=[scalars])
    figure, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2),
                                dpi=80, squeeze=False)
    data = {}
    try:
        for axis, key in zip(axes[0], keys):
            plt.sca(axis)
            helper.plot_curve_helper([log_dict], [key], settings, [key])
            line = axis.get_lines()[-1]
            data[key] = (list(line.get_xdata()), list(line.get_ydata()))
            axis.set_title(key)
            axis.grid(alpha=0.3)
            if key == 'lr':
                axis.ticklabel_format(axis='y', style='sci', scilimits=(-2, 2))
        run = osp.basename(osp.dirname(osp.dirname(osp.abspath(scalars))))
        figure.suptitle(f'run {run}', fontsize=10)
        figure.tight_layout()
        figure.savefig(out)
    except ValueError as error:  # mmpretrain's: a key the log lacks, and the keys it has
        raise ValueError(f'{scalars}: {error}') from None
    finally:
        plt.close(figure)
    return data


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Plot loss and lr of a training run')
    parser.add_argument('path', help='work dir (newest run), run folder or scalars.json')
    parser.add_argument('--out', default='curves.png', help='the PNG to write')
    parser.add_argument('--keys', nargs='+', default=['loss', 'lr'],
                        help='logged scalars to plot (default: loss lr; '
                        'validation metrics such as accuracy/top1 too)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        plot_curves(args.path, args.out, args.keys)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f'error: {error}')
    print(args.out)
    return args.out


if __name__ == '__main__':
    main()
