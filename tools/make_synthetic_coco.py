"""Generate the small synthetic COCO instance-segmentation dataset.

    python tools/make_synthetic_coco.py --out data/synthetic_coco
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from spark_mm.datasets.synthetic_coco import make_synthetic_coco  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/synthetic_coco')
    parser.add_argument('--num-train', type=int, default=64)
    parser.add_argument('--num-val', type=int, default=16)
    parser.add_argument('--height', type=int, default=160)
    parser.add_argument('--width', type=int, default=192)
    parser.add_argument('--max-objects', type=int, default=3)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    files = make_synthetic_coco(args.out, args.num_train, args.num_val,
                                (args.height, args.width), args.max_objects,
                                args.seed)
    for split, path in files.items():
        print(f'{split}: {path}')


if __name__ == '__main__':
    main()
