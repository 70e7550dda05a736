"""Time forward + backward of one decoder ``UpsampleBlock``, fused vs sequential.

    python tools/decoder_benchmark.py [--batch 8] [--width 512] [--reps 5]
        [--threads 1] [--channels-last]

The shapes are those of the SparK ResNet-50 decoder at 224 px: ``width`` at
7x7, then half the channels at twice the size, down to ``width / 16`` at
112x112. For each shape both modes run on the same block (same weights and
input), alternating rep by rep (the order flips each rep); medians are
reported with their ratio fused / sequential (< 1: fused is faster), and
which mode ``fused='auto'`` picks for the shape (it runs that mode's code).
"""
import argparse
import statistics
import time
from typing import Dict, List, Tuple

import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from spark_mm.models.decoder import UpsampleBlock  # noqa: E402


def decoder_shapes(width: int = 512, size: int = 7,
                   blocks: int = 5) -> List[Tuple[int, int]]:
    """(in_channels, input size) of each decoder block."""
    return [(width >> i, size << i) for i in range(blocks)]


def time_block(cin: int, size: int, batch: int, reps: int = 5,
               channels_last: bool = False) -> Dict[str, float]:
    """Median seconds of forward + backward per mode for one block."""
    block = UpsampleBlock(cin, max(cin // 2, 1), dict(type='BN'))
    x = torch.randn(batch, cin, size, size)
    if channels_last:
        block = block.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)

    def step(fused: bool) -> float:
        block.fused = fused
        block.zero_grad(set_to_none=True)
        x.grad = None
        start = time.perf_counter()
        block(x).square().mean().backward()
        return time.perf_counter() - start

    times = {False: [], True: []}
    for fused in (False, True):  # warm-up
        step(fused)
    for rep in range(reps):
        for fused in ((False, True) if rep % 2 == 0 else (True, False)):
            times[fused].append(step(fused))
    block.fused = 'auto'
    return dict(sequential=statistics.median(times[False]),
                fused=statistics.median(times[True]),
                auto_fused=block.uses_fused(x))


def main(argv=None, log=print) -> Dict[Tuple[int, int], Dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--width', type=int, default=512)
    parser.add_argument('--reps', type=int, default=5)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--channels-last', action='store_true')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = {}
    for cin, size in decoder_shapes(args.width):
        results[cin, size] = res = time_block(cin, size, args.batch, args.reps,
                                              args.channels_last)
        log(f'cin={cin:4d} {size:3d}x{size:<3d} sequential '
            f'{res["sequential"] * 1e3:8.1f} ms  fused {res["fused"] * 1e3:8.1f} ms'
            f'  ratio {res["fused"] / res["sequential"]:.3f}'
            f'  auto: {"fused" if res["auto_fused"] else "sequential"}')
    seq = sum(r['sequential'] for r in results.values())
    fused = sum(r['fused'] for r in results.values())
    auto = sum(r['fused' if r['auto_fused'] else 'sequential']
               for r in results.values())
    log(f'total sequential {seq * 1e3:.1f} ms  fused {fused * 1e3:.1f} ms '
        f'(ratio {fused / seq:.3f})  auto {auto * 1e3:.1f} ms '
        f'(ratio {auto / seq:.3f})')
    return results


if __name__ == '__main__':
    main()
