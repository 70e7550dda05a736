"""Write the generated 4-class labelled folder of the classification demos.

    python tools/make_labelled_folder.py data/spark_cls_demo --num-train 24

``<root>/{train,val}/<class>/*.png``, the layout of mmpretrain's
``CustomDataset`` (spark_mm/datasets/synthetic/labelled_folder.py). The demo
configs write it themselves on first use; this writes it ahead, or in
another size.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from spark_mm.datasets.synthetic import make_labelled_folder  # noqa: E402
from spark_mm.errors import SparKInputError  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('root', nargs='?', default='data/spark_cls_demo')
    parser.add_argument('--num-train', type=int, default=24,
                        help='training images per class')
    parser.add_argument('--num-val', type=int, default=12,
                        help='validation images per class')
    parser.add_argument('--size', type=int, default=64,
                        help='image side in pixels')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    try:
        print(make_labelled_folder(args.root, args.num_train, args.num_val,
                                   args.size, args.seed))
    except SparKInputError as error:
        sys.exit(f'error: {error}')


if __name__ == '__main__':
    main()
