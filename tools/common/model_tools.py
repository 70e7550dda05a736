"""Command-line pieces shared by the tools that look into a SparK model:
tools/visualize_reconstruction.py and tools/diagnose_mask_vanishing.py."""
import argparse
import sys
from contextlib import contextmanager
from typing import Optional, Sequence, Tuple

from mmengine.config import DictAction

from spark_mm.errors import one_line_message


def add_mask_arguments(parser: argparse.ArgumentParser, size_help: str) -> None:
    """``--mask-ratio``, ``--seed`` and ``--size`` (H, or H W)."""
    parser.add_argument('--mask-ratio', type=float, default=None,
                        help="fraction of patches masked (default: the config's)")
    parser.add_argument('--seed', type=int, default=0, help='seed of the mask')
    parser.add_argument('--size', type=int, nargs='+', metavar='N', help=size_help)


def parse_with_cfg_options(parser: argparse.ArgumentParser,
                           argv: Optional[Sequence[str]] = None):
    """Add ``--cfg-options`` (last), parse, and refuse a ``--size`` of 3+ numbers."""
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings in the config, key=value')
    args = parser.parse_args(argv)
    if args.size and len(args.size) > 2:
        parser.error('--size takes H or H W')
    return args


def input_size(model, size: Optional[Sequence[int]]) -> Tuple[int, int]:
    """(H, W) from ``--size`` (H, or H W); without it the model's ``input_size``."""
    if size:
        return (size[0], size[0]) if len(size) == 1 else tuple(size[:2])
    return model.input_size


@contextmanager
def input_errors_exit():
    """Turn the user's input errors raised inside into ``sys.exit('error: ...')``
    (:func:`spark_mm.errors.one_line_message`); bugs keep their traceback."""
    try:
        yield
    except Exception as error:
        message = one_line_message(error)
        if message is None:
            raise
        sys.exit(f'error: {message}')
