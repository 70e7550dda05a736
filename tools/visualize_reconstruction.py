"""Draw what a SparK checkpoint reconstructs: masked input, prediction,
prediction with the visible patches pasted back, and the input.

    python tools/visualize_reconstruction.py configs/spark/demo_r18.py \\
        work_dirs/demo_r18/epoch_12.pth data/spark_demo/demo_00000.png \\
        --out-dir work_dirs/demo_r18/vis --mask-ratio 0.6 --seed 0 [--size 96 160]

Inputs are image files and/or folders (their images, sorted by name). Each
image is resized to cover the input size and centre-cropped. One PNG per
image (``<name>.png``), or one grid for all with ``--one-grid``. The same
``--seed`` and ``--mask-ratio`` give the same mask.
"""
import argparse
import os
import os.path as osp
import sys
from typing import List, Optional, Sequence

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from tools.common.model_tools import (add_mask_arguments,  # noqa: E402
                                   input_errors_exit, input_size,
                                   parse_with_cfg_options)
from spark_mm.apis import build_spark  # noqa: E402
from spark_mm.visualization import (load_image, reconstruction_grid,  # noqa: E402
                                    save_png)

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.tif', '.tiff')


def list_images(paths: Sequence[str]) -> List[str]:
    """Image files named by ``paths`` (files, or folders whose images are taken)."""
    images = []
    for path in paths:
        if osp.isdir(path):
            images += sorted(osp.join(path, name) for name in os.listdir(path)
                             if name.lower().endswith(IMAGE_EXTENSIONS))
        elif osp.isfile(path):
            images.append(path)
        else:
            raise FileNotFoundError(f'{path!r} is neither an image file nor a folder')
    if not images:
        raise FileNotFoundError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) in {list(paths)}')
    return images


def visualize(config: str, checkpoint: str, inputs: Sequence[str], out_dir: str,
              mask_ratio: Optional[float] = None, seed: int = 0,
              size: Optional[Sequence[int]] = None, one_grid: bool = False,
              device: str = 'cpu', cfg_options: Optional[dict] = None) -> List[str]:
    """Write reconstruction grids; returns the paths of the PNGs written.

    ``size`` is (H,) or (H, W); default the model's ``input_size``. Per image,
    the mask is drawn from ``seed`` alone, so an image gets the same mask
    whether alone, in a folder or in one grid.
    """
    model = build_spark(config, checkpoint, device, cfg_options)
    height, width = input_size(model, size)
    model.check_input_size(height, width)
    paths = list_images(inputs)
    images = [load_image(path, (height, width)) for path in paths]
    if one_grid:
        grids = [reconstruction_grid(model, images, seed, mask_ratio)[0]]
        names = ['reconstructions.png']
    else:
        grids = [reconstruction_grid(model, [image], seed, mask_ratio)[0]
                 for image in images]
        names = [osp.splitext(osp.basename(path))[0] + '.png' for path in paths]
    return [save_png(grid, osp.join(out_dir, name))
            for grid, name in zip(grids, names)]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Draw SparK reconstructions of images as PNG grids')
    parser.add_argument('config', help='the pretraining config')
    parser.add_argument('checkpoint', help='a SparK checkpoint (e.g. epoch_N.pth)')
    parser.add_argument('inputs', nargs='+', help='image files and/or folders')
    parser.add_argument('--out-dir', default='work_dirs/reconstructions',
                        help='where the PNGs go')
    add_mask_arguments(parser, 'input size: H, or H W (multiples of the total '
                       "stride; default: the config's input_size)")
    parser.add_argument('--one-grid', action='store_true',
                        help='one grid for all images instead of one PNG each')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    return parse_with_cfg_options(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    with input_errors_exit():
        written = visualize(args.config, args.checkpoint, args.inputs, args.out_dir,
                            args.mask_ratio, args.seed, args.size, args.one_grid,
                            args.device, args.cfg_options)
    for path in written:
        print(path)
    return written


if __name__ == '__main__':
    main()
