"""Precise BN before every validation of a training run (Detectron2's PreciseBN).

BN running statistics are an exponential average over weights that kept
changing; SparK's COCO recipe recomputes them with the final weights, as the
true average of per-batch mean/variance over ``num_iters`` training batches,
right before each evaluation. mmpretrain's ``PreciseBNHook`` runs on its own
interval and needs a fixed ``batch_size`` (mmdet's aspect-ratio batch sampler
has none), so this hook is tied to the train loop's validation schedule
instead. It runs in ``after_train_iter`` / ``after_train_epoch`` with priority
ABOVE_NORMAL, i.e. before ``CheckpointHook``, so the checkpoint saved at that
point holds the same statistics that were evaluated.
"""
import bisect
import itertools
from typing import Optional

import torch
from mmdet.registry import HOOKS
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import SparKInputError


def _validates_after(loop, done: int) -> bool:
    """Whether ``loop`` validates once ``done`` iters (or epochs) are done."""
    if loop.runner.val_loop is None or done < loop.val_begin:
        return False
    interval = loop.val_interval
    milestones = getattr(loop, 'dynamic_milestones', None)
    if milestones:
        # the loop refreshes its interval for the next step before checking
        interval = loop.dynamic_intervals[bisect.bisect(milestones, done + 1)
                                          - 1]
    last = loop.max_iters if hasattr(loop, 'dataloader_iterator') \
        else loop.max_epochs
    return done % interval == 0 or done == last


@torch.no_grad()
def recompute_bn_stats(model: torch.nn.Module, batches, num_iters: int) -> int:
    """Set every BN's running stats to their average over ``num_iters`` batches.

    The model runs in training mode (``loss`` mode, so the RoI heads see
    sampled proposals as in training) with momentum 1, i.e. each forward
    overwrites the running stats with that batch's statistics. Returns the
    number of BN layers updated.
    """
    inner = model.module if is_model_wrapper(model) else model
    was_training = inner.training
    inner.train()
    bns = [m for m in inner.modules() if isinstance(m, _BatchNorm)
           and m.training and m.track_running_stats]
    if not bns:
        inner.train(was_training)
        return 0
    momenta = [bn.momentum for bn in bns]
    means = [torch.zeros_like(bn.running_mean) for bn in bns]
    variances = [torch.zeros_like(bn.running_var) for bn in bns]
    for bn in bns:
        bn.momentum = 1.0
    count = 0
    try:
        for data in itertools.islice(batches, num_iters):
            data = inner.data_preprocessor(data, True)
            inner(**data, mode='loss')
            count += 1
            for i, bn in enumerate(bns):
                means[i] += (bn.running_mean - means[i]) / count
                variances[i] += (bn.running_var - variances[i]) / count
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        inner.train(was_training)
    if count and get_world_size() > 1:
        # plain BN saw only this rank's batches; SyncBN's are equal already
        for tensor in means + variances:
            all_reduce(tensor, op='mean')
    if count:
        for bn, mean, var in zip(bns, means, variances):
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
    return len(bns)


@HOOKS.register_module()
class PreciseBNBeforeValHook(Hook):
    """Recompute BN statistics over ``num_iters`` training batches right
    before each validation during training (Detectron2 default: 200)."""

    priority = 'ABOVE_NORMAL'

    def __init__(self, num_iters: int = 200) -> None:
        if num_iters <= 0:
            raise SparKInputError(f'num_iters must be positive, got {num_iters}')
        self.num_iters = num_iters

    def before_train(self, runner) -> None:
        """A resumed iteration-based run: the precise-BN passes made before
        the resume point drew their batches from the training stream, which
        mmengine's resume does not replay (it skips ``iter`` batches only).
        Draw them again, so that training continues on the batches the
        uninterrupted run used."""
        loop = runner.train_loop
        if not hasattr(loop, 'dataloader_iterator') or runner.iter == 0:
            return
        passes = sum(_validates_after(loop, done)
                     for done in range(1, runner.iter + 1))
        for _ in range(passes * self.num_iters):
            next(loop.dataloader_iterator)
        if passes:
            runner.logger.info(
                f'Precise BN: skipped {passes * self.num_iters} batches drawn '
                f'by {passes} precise-BN passes before iteration {runner.iter}')

    def _run(self, runner, batches) -> None:
        runner.logger.info(
            f'Precise BN: recomputing statistics over {self.num_iters} '
            'training batches before validation')
        num = recompute_bn_stats(runner.model, batches, self.num_iters)
        runner.logger.info(f'Precise BN: updated {num} BN layers')

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        loop = runner.train_loop
        if hasattr(loop, 'dataloader_iterator') and _validates_after(
                loop, runner.iter + 1):
            # batches continue the training stream instead of restarting it
            self._run(runner, loop.dataloader_iterator)

    def after_train_epoch(self, runner) -> None:
        loop = runner.train_loop
        if not hasattr(loop, 'dataloader_iterator') and _validates_after(
                loop, runner.epoch + 1):
            self._run(runner, iter(loop.dataloader))
