"""Claim the work dir before a run writes into it.

Two runs writing into one work dir overwrite each other's checkpoints and
``last_checkpoint`` pointer without a word, and a work dir that cannot be
written ends in an ``OSError`` traceback from deep inside mmengine.
:func:`claim_work_dir` creates the folder, holds an exclusive ``flock`` on
``<work_dir>/.spark_mm.lock`` for the life of the process (the system drops
it when the process ends, however it ends, so a killed run leaves no stale
lock) and refuses, in one line naming the other process, when another run
holds it. A group that torchrun restarts may find the lock still held for a
moment: the stopped group's data-loader workers inherited the open lock file
and end a little after their parent; ``wait_s`` gives them that time.
"""
import datetime
import fcntl
import os
import os.path as osp
import socket
import time
from typing import IO

from ..errors import SparKInputError

LOCK_NAME = '.spark_mm.lock'


def claim_work_dir(work_dir: str, wait_s: float = 0.0) -> IO:
    """Create ``work_dir`` and lock it, waiting up to ``wait_s`` seconds for
    another holder to let go; keep the returned file open while the run
    lasts."""
    path = osp.join(work_dir, LOCK_NAME)
    try:
        os.makedirs(work_dir, exist_ok=True)
        lock = open(path, 'a+')
    except OSError as error:
        raise SparKInputError(
            f'cannot write to the work dir {work_dir!r} ({error.strerror}); '
            'pass a writable folder with --work-dir') from None
    deadline = time.monotonic() + wait_s
    while not _try_lock(lock):
        if time.monotonic() >= deadline:
            lock.seek(0)
            holder = lock.read().strip() or 'another process'
            lock.close()
            raise SparKInputError(
                f'work dir {work_dir!r} is in use by {holder}; two runs in one '
                'work dir overwrite each other\'s checkpoints: wait for it to '
                'end or pass another --work-dir')
        time.sleep(0.1)
    lock.seek(0)
    lock.truncate()
    started = datetime.datetime.now().isoformat(timespec='seconds')
    lock.write(f'process {os.getpid()} on {socket.gethostname()} '
               f'(started {started})\n')
    lock.flush()
    return lock


def _try_lock(lock: IO) -> bool:
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
