"""Files that are either complete or absent, never truncated.

Each writer writes under a temporary name in the same folder, flushes the
file to disk and renames it into place (``os.replace`` is atomic), so a crash
or a full disk leaves the previous file, not half of a new one.
"""
import os
from typing import Callable

import torch


def flush_to_disk(path: str) -> None:
    """fsync ``path``'s contents."""
    with open(path, 'rb') as file:
        os.fsync(file.fileno())


def write_atomically(path: str, write: Callable[[str], None]) -> str:
    """Call ``write(tmp_path)``, then move the finished file to ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp_path = os.path.join(directory,
                            f'.{os.path.basename(path)}.tmp.{os.getpid()}')
    try:
        write(tmp_path)
        flush_to_disk(tmp_path)
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
    return path


def save_torch_atomically(obj, path: str) -> str:
    """``torch.save(obj, path)``, atomically."""
    return write_atomically(path, lambda tmp: torch.save(obj, tmp))


def write_text_atomically(path: str, text: str) -> str:
    """Replace ``path`` by a file holding ``text``, all at once."""
    def write(tmp):
        with open(tmp, 'w') as file:
            file.write(text)
    return write_atomically(path, write)
