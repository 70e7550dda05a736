"""Continue a training group that torchrun restarted (``--max-restarts``).

When a worker dies, torchrun stops the other workers and starts the whole
group again with the same command line. The restarted workers must continue
from the work dir's last complete checkpoint (``AtomicCheckpointHook`` and
``PreemptionHook`` move the ``last_checkpoint`` pointer only after the file is
complete and renamed into place), while a first start resumes only with
``--resume``.

``TORCHELASTIC_RESTART_COUNT`` cannot tell the two apart on every node: it
counts the failures of this node's own workers, so a node restarted because
another node failed still reads 0 (pytorch/pytorch#108158). Each worker asks
instead whether the pointer was written after its torchrun agent (its parent
process) started. Only this launch can have written such a checkpoint, a first
start never finds one, and every rank gets the same answer (one shared work
dir, clocks in sync, as mmengine's resume already needs).

torchrun's static rendezvous (``--master-port``), and c10d's unless
``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``, give a restarted group the store of
the first start, where the dead group's addresses are still stored: the new
process group connects to them and fails or hangs. A restart there is refused
in one line (:func:`check_restart_store`).
"""
import os
import os.path as osp
import time

from spark_mm.errors import SparKInputError

# torchrun sets these for each worker it starts
RUN_ID = 'TORCHELASTIC_RUN_ID'
RESTART_COUNT = 'TORCHELASTIC_RESTART_COUNT'
USE_AGENT_STORE = 'TORCHELASTIC_USE_AGENT_STORE'
POINTER = 'last_checkpoint'


def launched_by_torchrun() -> bool:
    return RUN_ID in os.environ


def agent_start_time() -> float:
    """When this worker's parent (torchrun's agent) started, as a
    ``time.time()`` value (Linux ``/proc``; to about 20 ms)."""
    with open(f'/proc/{os.getppid()}/stat') as file:
        # after the command name, which may hold spaces and ')'
        fields = file.read().rsplit(')', 1)[1].split()
    started_ticks = int(fields[19])  # proc(5) field 22; fields[0] is field 3
    with open('/proc/uptime') as file:
        uptime = float(file.read().split()[0])
    age = uptime - started_ticks / os.sysconf('SC_CLK_TCK')
    return time.time() - age


def checkpoint_of_this_launch(work_dir: str):
    """The checkpoint ``last_checkpoint`` names if this torchrun launch wrote
    it (the group was restarted after it), else None."""
    pointer = osp.join(work_dir, POINTER)
    if not launched_by_torchrun() or not osp.isfile(pointer):
        return None
    try:
        written_before_launch = os.stat(pointer).st_mtime <= agent_start_time()
    except OSError:  # no /proc (macOS): only this node's restarts are known
        written_before_launch = int(os.environ.get(RESTART_COUNT, 0)) == 0
    if written_before_launch:
        return None
    with open(pointer) as file:
        return file.read().strip() or None


def check_restart_store() -> None:
    """Refuse a restarted group that shares its first start's store."""
    restarted = int(os.environ.get(RESTART_COUNT, 0)) > 0
    if restarted and os.environ.get(USE_AGENT_STORE) == 'True':
        raise SparKInputError(
            'torchrun restarted this group on the rendezvous store of its '
            'first start, which still holds the dead group\'s addresses (the '
            'process group would fail or hang): restart with tools/'
            'dist_train.sh and MAX_RESTARTS=N, or run torchrun with '
            '--rdzv-backend c10d and TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1')
