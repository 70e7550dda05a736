"""Benchmark one SparK training step against the dense backbone and mmpretrain's SparK.

    python tools/benchmark.py --config configs/spark/r50_pretrain.py \
        --batch 16 --size 224 --decoder-width 512 [--precision fp32|bf16|fp16] \
        [--channels-last | --fast] [--iters 3 --warmup 1] [--device cpu|cuda]

All candidates run in this one process, interleaved step by step, so that the
ratios printed at the end compare like with like on a busy machine. See
``spark_mm/benchmark.py`` for what is timed and how peak memory is measured.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from spark_mm.benchmark import main  # noqa: E402

if __name__ == '__main__':
    main()
