"""Checkpoints that are either complete or absent, never truncated.

mmengine's ``CheckpointHook`` writes ``epoch_N.pth`` in place, then overwrites
``last_checkpoint`` in place, and deletes the oldest kept checkpoint *before*
saving the new one. A crash (SIGKILL, full disk, preemption) at the wrong
moment leaves a truncated file, an empty pointer, or no checkpoint at all.
:class:`AtomicCheckpointHook` writes each file under a temporary name, flushes
it to disk and renames it into place (``os.replace`` is atomic), moves the
``last_checkpoint`` pointer the same way only after that, and deletes outdated
checkpoints last.
"""
import os
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook

from ..checkpoint.saving import flush_to_disk, write_text_atomically
from ..registry import HOOKS


def partial_name(filename: str) -> str:
    """Where a checkpoint is written before it is complete (hidden, not *.pth)."""
    return f'.{filename}.partial'


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` (same arguments) whose files are replaced atomically.

    Applies to local folders; other storage backends (which have no rename)
    keep mmengine's behaviour.
    """

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not isinstance(self.file_backend, LocalBackend):
            return super()._save_checkpoint_with_step(runner, step, meta)
        outdated = []
        if self.max_keep_ckpts > 0 and not (
                self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))

        filename = self.filename_tmpl.format(step)
        self.last_ckpt = osp.join(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        partial = partial_name(filename)
        runner.save_checkpoint(
            self.out_dir,
            partial,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return
        partial_path = osp.join(self.out_dir, partial)
        flush_to_disk(partial_path)
        os.replace(partial_path, self.last_ckpt)
        write_text_atomically(osp.join(runner.work_dir, 'last_checkpoint'),
                              self.last_ckpt)
        for old_step in outdated:
            old_path = osp.join(self.out_dir, self.filename_tmpl.format(old_step))
            if osp.isfile(old_path):
                os.remove(old_path)
