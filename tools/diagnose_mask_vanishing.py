"""Show "mask pattern vanishing": dense convolution vs SparK's sparse encoder.

For one masked image, the fraction of masked positions whose features are
still exactly zero (in all channels) after each backbone stage, for
(a) the dense backbone on the zero-outed image and (b) the SparK encoder
(same weights) under the mask. Sparse keeps 100% at every stage; dense
convolution smears visible content and biases into the holes.

    python tools/diagnose_mask_vanishing.py configs/spark/demo_r18.py \\
        --checkpoint work_dirs/demo_r18/epoch_12.pth \\
        --image data/spark_demo/demo_00000.png --out mask_vanishing.png

Without ``--checkpoint`` the freshly initialized weights are used; without
``--image`` a seeded random image. Prints a table, writes a PNG.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional, Sequence

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from spark_mm.models.geometry import (as_feature_list,  # noqa: E402
                                      remove_output_norms)
from spark_mm.apis import build_spark, single_process_config  # noqa: E402
from spark_mm.errors import SparKInputError  # noqa: E402
from spark_mm.models.sparse.context import expand_mask  # noqa: E402
from spark_mm.registry import MODELS  # noqa: E402
from spark_mm.visualization import (denormalize, fixed_mask,  # noqa: E402
                                    load_image, to_model_inputs)
from tools.common.model_tools import (add_mask_arguments,  # noqa: E402
                                      input_errors_exit, input_size,
                                      parse_with_cfg_options)


def _magnitude(feature: torch.Tensor) -> np.ndarray:
    """Mean absolute feature per position of the first image, (H, W)."""
    return feature[0].abs().mean(0).float().cpu().numpy()


def zeros_kept(features: Sequence[torch.Tensor], active_b1hw: torch.Tensor):
    """Per feature map: (fraction of masked positions exactly zero, zero map (H, W) bool)."""
    results = []
    for feature in features:
        visible = expand_mask(active_b1hw, *feature.shape[-2:])
        zero = (feature == 0).all(dim=1, keepdim=True)
        masked = ~visible
        fraction = ((zero & masked).sum() / masked.sum().clamp(min=1)).item()
        results.append((fraction, zero[0, 0].cpu().numpy()))
    return results


@torch.no_grad()
def diagnose(config: str, checkpoint: Optional[str] = None,
             image: Optional[str] = None, mask_ratio: Optional[float] = None,
             seed: int = 0, size: Optional[Sequence[int]] = None,
             out: Optional[str] = 'mask_vanishing.png',
             cfg_options: Optional[dict] = None) -> List[dict]:
    """One row per stage (finest first): stride, size, sparse and dense % zeros kept.

    Both backbones run in eval mode with the same weights. Writes the plot to
    ``out`` unless it is None.
    """
    cfg = single_process_config(config, cfg_options)
    model = build_spark(cfg, checkpoint)
    dense = MODELS.build(cfg.model.backbone)
    if not cfg.model.get('output_norms', False):
        remove_output_norms(dense)  # as SparK's encoder (official: raw stages)
    dense.load_state_dict(model.backbone.state_dict())  # same names, same weights
    dense.eval()

    height, width = input_size(model, size)
    if image is not None:
        pixels = load_image(image, (height, width))
    else:
        pixels = np.random.RandomState(seed).randint(
            0, 256, (height, width, 3), dtype=np.uint8)
    inputs = to_model_inputs(model, [pixels])
    active = fixed_mask(model, 1, height, width, seed, mask_ratio)
    pixel_mask = expand_mask(active, height, width).to(inputs.dtype)

    dense_features = sorted(as_feature_list(dense(inputs * pixel_mask)),
                            key=lambda f: -f.shape[-1])  # finest first
    with model.sparse_context.masked(active):
        sparse_features = model.encode(inputs)[::-1]
    if len(sparse_features) != len(dense_features):
        raise SparKInputError(f'the SparK encoder returns {len(sparse_features)} feature '
                         f'maps, the dense backbone {len(dense_features)}: use a '
                         'hierarchical config')

    rows = []
    for index, (feature, (sparse_frac, sparse_map), (dense_frac, dense_map)) in \
            enumerate(zip(dense_features, zeros_kept(sparse_features, active),
                          zeros_kept(dense_features, active))):
        rows.append(dict(stage=index + 1, stride=height // feature.shape[-2],
                         size=tuple(feature.shape[-2:]),
                         sparse=100 * sparse_frac, dense=100 * dense_frac,
                         sparse_zero_map=sparse_map, dense_zero_map=dense_map,
                         sparse_magnitude=_magnitude(sparse_features[index]),
                         dense_magnitude=_magnitude(feature)))
    if out:
        masked_input = denormalize(model, inputs * pixel_mask)[0]
        plot(rows, masked_input, out,
             title=f'{type(dense).__name__} on a {height}x{width} image, '
                   f'{100 * (1 - active.float().mean().item()):.0f}% masked')
    return rows


def format_table(rows: Sequence[dict]) -> str:
    lines = ['stage  stride  size      sparse % zeros kept  dense % zeros kept',
             '-----  ------  --------  -------------------  ------------------']
    for row in rows:
        size = '{}x{}'.format(*row['size'])
        lines.append(f'{row["stage"]:>5}  {row["stride"]:>6}  {size:<8}  '
                     f'{row["sparse"]:>19.1f}  {row["dense"]:>18.1f}')
    return '\n'.join(lines)


def plot(rows: Sequence[dict], masked_input: np.ndarray, out: str, title: str = ''):
    """Feature magnitude per stage (black = exactly zero in all channels) and a bar chart."""
    columns = len(rows) + 1
    figure = plt.figure(figsize=(2.0 * columns + 3.2, 4.4), dpi=80)
    grid = figure.add_gridspec(2, columns + 2)
    for line, (label, kind) in enumerate((('dense conv', 'dense'),
                                          ('sparse (SparK)', 'sparse'))):
        axis = figure.add_subplot(grid[line, 0])
        axis.imshow(masked_input)
        axis.set_ylabel(label)
        axis.set_xticks([])
        axis.set_yticks([])
        if line == 0:
            axis.set_title('zero-outed input', fontsize=9)
        for index, row in enumerate(rows):
            axis = figure.add_subplot(grid[line, index + 1])
            magnitude = row[f'{kind}_magnitude']
            # a small floor keeps non-zero positions visibly off black
            shown = np.where(row[f'{kind}_zero_map'], 0.0,
                             0.15 + 0.85 * magnitude / max(magnitude.max(), 1e-12))
            axis.imshow(shown, cmap='magma', vmin=0, vmax=1, interpolation='nearest')
            axis.set_xticks([])
            axis.set_yticks([])
            if line == 0:
                axis.set_title(f'stage {row["stage"]} (/{row["stride"]})', fontsize=9)
    bars = figure.add_subplot(grid[:, columns:])
    positions = np.arange(len(rows))
    for offset, kind, label, colour in ((-0.2, 'sparse', 'sparse (SparK)', 'tab:blue'),
                                        (0.2, 'dense', 'dense conv', 'tab:orange')):
        container = bars.bar(positions + offset, [row[kind] for row in rows], 0.4,
                             label=label, color=colour)
        bars.bar_label(container, fmt='%.0f', fontsize=7)
    bars.set_xticks(positions, [f'stage {row["stage"]}' for row in rows], fontsize=8)
    bars.set_ylim(0, 125)
    bars.set_yticks(range(0, 101, 20))
    bars.set_ylabel('% of masked positions still exactly zero')
    bars.legend(fontsize=8, loc='upper center', ncol=2)
    figure.suptitle(f'Mask pattern vanishing: {title}\n'
                    'maps: mean |feature| per position, black = exactly zero '
                    'in all channels', fontsize=10)
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)
    return out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Measure mask pattern vanishing: dense vs sparse encoder')
    parser.add_argument('config', help='a SparK config (its backbone is used)')
    parser.add_argument('--checkpoint', help='SparK checkpoint (default: fresh weights)')
    parser.add_argument('--image', help='an image file (default: seeded random pixels)')
    add_mask_arguments(parser, "input size: H, or H W (default: the config's)")
    parser.add_argument('--out', default='mask_vanishing.png', help='plot PNG')
    return parse_with_cfg_options(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    with input_errors_exit():
        rows = diagnose(args.config, args.checkpoint, args.image, args.mask_ratio,
                        args.seed, args.size, args.out, args.cfg_options)
    print(format_table(rows))
    print(f'plot: {args.out}')
    return rows


if __name__ == '__main__':
    main()
