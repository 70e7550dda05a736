"""Plot the loss and learning-rate curves of a training run as a PNG.

Reads mmengine's own scalar log, ``<work_dir>/<timestamp>/vis_data/scalars.json``
(one JSON object per logged iteration). Given a work dir, the newest run
(latest timestamp folder with a scalars.json) is plotted; a run folder or the
scalars.json itself may be given instead.

    python tools/plot_curves.py work_dirs/demo_r18 --out curves.png
"""
import argparse
import glob
import json
import os.path as osp
import sys
from typing import Dict, List, Sequence

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

SCALARS = osp.join('vis_data', 'scalars.json')


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


def read_scalars(path: str) -> List[dict]:
    """The logged records (training iterations only) of a scalars.json."""
    records = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                records.append(json.loads(line))
    return [record for record in records if 'iter' in record and 'lr' in record]


def series(records: Sequence[dict], key: str):
    """(iterations, values) of ``key`` where it was logged."""
    points = [(record['iter'], record[key]) for record in records if key in record]
    return [p[0] for p in points], [p[1] for p in points]


def plot_curves(path: str, out: str = 'curves.png',
                keys: Sequence[str] = ('loss', 'lr')) -> Dict[str, tuple]:
    """Plot ``keys`` against the iteration, one panel each; returns the series."""
    scalars = find_scalars(path)
    records = read_scalars(scalars)
    data = {key: series(records, key) for key in keys}
    missing = [key for key, (iters, _) in data.items() if not iters]
    if missing:
        raise ValueError(f'{scalars} logs no {missing} (keys logged: '
                         f'{sorted({k for r in records for k in r})})')
    figure, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), dpi=80)
    axes = [axes] if len(keys) == 1 else list(axes)
    for axis, key in zip(axes, keys):
        iters, values = data[key]
        axis.plot(iters, values, marker='.' if len(iters) < 30 else None)
        axis.set_xlabel('iteration')
        axis.set_title(key)
        axis.grid(alpha=0.3)
        if key == 'lr':
            axis.ticklabel_format(axis='y', style='sci', scilimits=(-2, 2))
    run = osp.basename(osp.dirname(osp.dirname(osp.abspath(scalars))))
    figure.suptitle(f'run {run}', fontsize=10)
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)
    return data


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Plot loss and lr of a training run')
    parser.add_argument('path', help='work dir (newest run), run folder or scalars.json')
    parser.add_argument('--out', default='curves.png', help='the PNG to write')
    parser.add_argument('--keys', nargs='+', default=['loss', 'lr'],
                        help='logged scalars to plot (default: loss lr)')
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
