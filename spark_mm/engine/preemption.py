"""Stop a preempted run after the current iteration, with a checkpoint of it.

Clusters preempt with SIGTERM, and slurm warns a job before its time limit
with the signal ``--signal=USR1@<secs>`` asks for. The default action of both
kills the process, losing everything since the last checkpoint (hours, with
ImageNet epochs). :class:`PreemptionHook` only notes the signal; after the
iteration that is running, all ranks agree (one all-reduce of the flag, since
a signal may reach only some ranks), the state of exactly that iteration is
written atomically (mid-epoch too) and :class:`TrainingPreempted` ends the
run; tools/train.py turns it into one line and exit status
:data:`REQUEUE_EXIT_STATUS`. ``--resume`` then continues at the next
iteration: an iteration-based loop through mmengine's own resume, an
epoch-based one at the next batch of the same epoch (same data order), see
:class:`_ResumedEpoch`. A second signal ends the process at once.
"""
import glob
import itertools
import os
import os.path as osp
import signal
import threading

import torch
from mmengine.dist import all_reduce, is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from ..checkpoint.saving import flush_to_disk, write_text_atomically
from ..errors import SparKInputError
from ..registry import HOOKS
from .atomic_checkpoint_hook import partial_name

# sysexits.h EX_TEMPFAIL, "temporary failure, the user is invited to retry":
# not 0 (a scheduler would call the job done), not 128 + 15 (a kill that saved
# nothing). slurm requeues on it with RequeueExit=75 in slurm.conf (or
# tools/slurm_train.sh's REQUEUE=1), Kubernetes with a podFailurePolicy rule.
REQUEUE_EXIT_STATUS = 75
PREEMPTED_PREFIX = 'preempted_iter_'
BATCHES_DONE_KEY = 'batches_done_in_epoch'


class TrainingPreempted(Exception):
    """The run stopped on a signal after saving ``checkpoint``."""

    def __init__(self, signal_name: str, iteration: int, checkpoint: str):
        self.checkpoint = checkpoint
        super().__init__(
            f'{signal_name} received: stopped after iteration {iteration}, '
            f'saved {checkpoint}; run again with --resume to continue '
            f'(exit status {REQUEUE_EXIT_STATUS}: requeue)')


class _ResumedEpoch:
    """An epoch's data loader resumed after ``skip`` of its batches.

    The skipped batches are drawn and dropped rather than skipped by index, so
    the sampler order and (workers not persistent) each worker's random stream
    are those of the uninterrupted epoch. Its length is what is left of the
    epoch: the loop's batch indices then count from the resume.
    """

    def __init__(self, loader, skip: int) -> None:
        self.loader, self.skip = loader, skip

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.skip, None)

    def __len__(self) -> int:
        return len(self.loader) - self.skip

    def __getattr__(self, name):
        return getattr(self.loader, name)


@HOOKS.register_module()
class PreemptionHook(Hook):
    """On ``signals`` (names), finish the iteration, save it and stop.

    Runs last after each iteration, so the checkpoint holds the parameter
    schedulers' step of that iteration, as a regular checkpoint would. When
    an iteration-based loop validates after that iteration, the run stops
    after the validation (which may change the model: precise BN), before
    the next iteration. The
    checkpoint is ``preempted_iter_<N>.pth`` in the checkpoint hook's folder;
    ``last_checkpoint`` points at it, and an earlier preemption's file is
    removed.
    """

    priority = 'LOWEST'

    def __init__(self, signals=('SIGTERM', 'SIGUSR1')) -> None:
        unknown = [name for name in signals
                   if not isinstance(getattr(signal, str(name), None),
                                     signal.Signals)]
        if unknown:
            raise SparKInputError(
                f'PreemptionHook: unknown signal(s) {unknown}; use names such '
                "as 'SIGTERM' or 'SIGUSR1'")
        self.signals = [getattr(signal, name) for name in signals]
        self._received = 0
        self._pending = 0  # agreed, waiting for this iteration's validation
        self._previous_handlers = {}
        self._resume_at = None  # (iteration, batches done in its epoch)
        self._epoch_start_iter = 0

    def _note_signal(self, signum, frame) -> None:
        if self._received:  # asked twice: do what the signal would have done
            self._restore_handlers()
            signal.raise_signal(signum)
            return
        self._received = signum

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers = {}

    def before_train(self, runner) -> None:
        # signal handlers can only be set from the main thread
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous_handlers[signum] = signal.signal(
                    signum, self._note_signal)

    def after_train(self, runner) -> None:
        self._restore_handlers()

    def after_load_checkpoint(self, runner, checkpoint) -> None:
        meta = checkpoint.get('meta', {})
        if BATCHES_DONE_KEY in meta:
            self._resume_at = (meta.get('iter'), meta[BATCHES_DONE_KEY])

    def before_train_epoch(self, runner) -> None:
        skip = 0
        if self._resume_at is not None:
            iteration, skip = self._resume_at
            self._resume_at = None
            # a checkpoint given to load_from (not resumed) starts at 0
            if iteration != runner.iter or not isinstance(
                    runner.train_loop, EpochBasedTrainLoop):
                skip = 0
        if skip:
            runner.train_loop.dataloader = _ResumedEpoch(
                runner.train_loop.dataloader, skip)
        self._epoch_start_iter = runner.iter - skip

    def after_train_epoch(self, runner) -> None:
        loader = runner.train_loop.dataloader
        if isinstance(loader, _ResumedEpoch):
            runner.train_loop.dataloader = loader.loader

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        flag = torch.tensor([float(self._received)])
        all_reduce(flag, op='max')
        if flag.item() == 0 or self._pending:
            return
        self._restore_handlers()
        if self._validates_now(runner):
            # validation may change the model (precise BN): stop after it
            self._pending = int(flag.item())
            return
        self._stop(runner, int(flag.item()), runner.iter + 1)

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if self._pending:
            self._stop(runner, self._pending, runner.iter)

    @staticmethod
    def _validates_now(runner) -> bool:
        """Whether an iteration-based loop validates after this iteration
        (mmengine's own condition; epoch loops validate after the epoch)."""
        loop = runner.train_loop
        if runner.val_loop is None or not isinstance(loop, IterBasedTrainLoop):
            return False
        done = runner.iter + 1
        return done >= loop.val_begin and (done % loop.val_interval == 0
                                           or done == loop.max_iters)

    def _stop(self, runner, signum: int, done: int) -> None:
        """Save the state after ``done`` iterations and end the run."""
        checkpoint = self._save(runner, done)
        raise TrainingPreempted(signal.Signals(signum).name, done, checkpoint)

    def _checkpoint_folder(self, runner) -> str:
        for hook in runner.hooks:
            if isinstance(hook, CheckpointHook) and getattr(hook, 'out_dir',
                                                            None):
                return hook.out_dir
        return runner.work_dir

    def _save(self, runner, done: int) -> str:
        # the running epoch (not the next, as by_epoch=True would say)
        meta = dict(epoch=runner.epoch, iter=done)
        if isinstance(runner.train_loop, EpochBasedTrainLoop):
            meta[BATCHES_DONE_KEY] = done - self._epoch_start_iter
        folder = self._checkpoint_folder(runner)
        filename = f'{PREEMPTED_PREFIX}{done}.pth'
        path = osp.join(folder, filename)
        runner.save_checkpoint(folder, partial_name(filename), meta=meta,
                               by_epoch=False)
        if is_main_process():
            partial = osp.join(folder, partial_name(filename))
            flush_to_disk(partial)
            os.replace(partial, path)
            write_text_atomically(osp.join(runner.work_dir, 'last_checkpoint'),
                                  path)
            for earlier in glob.glob(osp.join(folder, f'{PREEMPTED_PREFIX}*.pth')):
                if earlier != path:
                    os.remove(earlier)
        return path
