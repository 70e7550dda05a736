"""Generate the synthetic COCO-format data: the demo shapes, or the transfer study's scenes.

    python tools/make_synthetic_coco.py --out data/synthetic_coco
    python tools/make_synthetic_coco.py --study --out data/transfer_study

``--study`` writes the transfer study's data (many unlabelled scenes in nested
folders plus a few labelled ones, spark_mm/datasets/synthetic/study_scenes.py) with the
committed settings (``STUDY_SETTINGS``); ``--num-unlabeled``, ``--num-train``,
``--num-val``, ``--seed`` change them.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from spark_mm.datasets.synthetic.coco import make_synthetic_coco  # noqa: E402
from spark_mm.datasets.synthetic.study_scenes import (  # noqa: E402
    STUDY_SETTINGS, make_study_data)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=None,
                        help='default: data/synthetic_coco, with --study '
                        'data/transfer_study')
    parser.add_argument('--study', action='store_true',
                        help="the transfer study's scenes instead of the demo shapes")
    parser.add_argument('--num-unlabeled', type=int, default=None)
    parser.add_argument('--num-train', type=int, default=None)
    parser.add_argument('--num-val', type=int, default=None)
    parser.add_argument('--height', type=int, default=160)
    parser.add_argument('--width', type=int, default=192)
    parser.add_argument('--max-objects', type=int, default=3)
    parser.add_argument('--seed', type=int, default=None)
    args = parser.parse_args()
    if args.study:
        settings = dict(STUDY_SETTINGS)
        for key in ('num_unlabeled', 'num_train', 'num_val', 'seed'):
            if getattr(args, key) is not None:
                settings[key] = getattr(args, key)
        paths = make_study_data(args.out or 'data/transfer_study', **settings)
        for part, path in paths.items():
            print(f'{part}: {path}')
        return
    files = make_synthetic_coco(
        args.out or 'data/synthetic_coco',
        64 if args.num_train is None else args.num_train,
        16 if args.num_val is None else args.num_val,
        (args.height, args.width), args.max_objects,
        0 if args.seed is None else args.seed)
    for split, path in files.items():
        print(f'{split}: {path}')


if __name__ == '__main__':
    main()
