"""The official SparK per-iteration schedule, restated for the tests.

keyu-tian/SparK pretrain/utils/lr_control.py ``lr_wd_annealing`` (the
fine-tuning's downstream_imagenet/lr_decay.py has the same lr): a linear
warm-up from 0.005x of the peak lr, then a cosine to 0.001x; the weight decay
follows a cosine from ``wd`` to ``wd_end`` over the whole run.
"""
import math


def official_lr_wd(peak_lr, wd, wd_end, cur_it, wp_it, max_it):
    """(lr, weight decay) at iteration ``cur_it`` of ``max_it``."""
    wp_it = round(wp_it)
    if cur_it < wp_it:
        lr = 0.005 * peak_lr + 0.995 * peak_lr * cur_it / wp_it
    else:
        ratio = (cur_it - wp_it) / (max_it - 1 - wp_it)
        lr = 0.001 * peak_lr + 0.999 * peak_lr * (0.5 + 0.5 * math.cos(math.pi * ratio))
    ratio = cur_it / (max_it - 1)
    return lr, wd_end + (wd - wd_end) * (0.5 + 0.5 * math.cos(math.pi * ratio))
