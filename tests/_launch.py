"""Launch a training command and leave nothing behind, whatever happens.

torchrun starts each worker in a session of its own, so killing the launcher's
process group does not reach the workers (nor their data-loader workers), and
workers whose launcher died belong to nobody. Every process of a launch
inherits a tag in its environment; on leaving, each process that carries the
tag is killed.
"""
import contextlib
import os
import signal
import subprocess
import uuid

TAG = 'SPARK_MM_TEST_LAUNCH'


def _tagged(tag: str) -> list:
    marker = f'{TAG}={tag}'.encode()
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/environ', 'rb') as file:
                environ = file.read().split(b'\0')
        except OSError:  # ended while we looked
            continue
        if marker in environ:
            found.append(int(entry))
    return found


@contextlib.contextmanager
def launched(command, env: dict, **popen_kwargs):
    """``subprocess.Popen(command, env=env)``; on leaving, every process it
    started (however deep, however orphaned) is killed."""
    tag = uuid.uuid4().hex
    process = subprocess.Popen(command, env=dict(env, **{TAG: tag}),
                               **popen_kwargs)
    try:
        yield process
    finally:
        for pid in _tagged(tag):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()


def run_to_end(command, env: dict, timeout: float, **popen_kwargs):
    """Run ``command`` to its end (stdout and stderr together, as text);
    everything it started is killed if it outlives ``timeout`` or the test
    fails meanwhile. Returns (exit status, output)."""
    with launched(command, env, stdout=subprocess.PIPE,
                  stderr=subprocess.STDOUT, text=True,
                  **popen_kwargs) as process:
        output, _ = process.communicate(timeout=timeout)
        return process.returncode, output
