"""Load mmengine checkpoints with ``torch.load(weights_only=True)`` (torch >= 2.6).

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; since torch 2.6
that means the restricted unpickler, which refuses the few non-tensor objects
an mmengine checkpoint holds. :func:`allow_mmengine_checkpoints` allow-lists
exactly those (found by ``torch.serialization.get_unsafe_globals_in_checkpoint``
on checkpoints written by our runs), instead of switching the protection off:

- ``mmengine.logging.HistoryBuffer`` (the message hub's logged scalars), whose
  state holds its statistic methods, pickled as ``getattr(HistoryBuffer, name)``;
  ``builtins.getattr`` is therefore mapped to a lookup that only resolves
  methods of ``HistoryBuffer``, never an arbitrary attribute;
- numpy arrays, scalars and the dtypes of numbers (logged values, ETA).

The same module turns a missing, truncated or mismatching checkpoint into a
:class:`~spark_mm.errors.CheckpointError` naming the file and the keys
(:mod:`.key_report`).
"""
import os
import pickle
import warnings
from typing import List, Mapping

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

from ..errors import CheckpointError
from .key_report import compare_keys
from .unreadable import unreadable_message

# Number dtypes only: an object array would smuggle arbitrary pickles.
_NUMPY_DTYPE_NAMES = ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8',
                      'uint16', 'uint32', 'uint64', 'float16', 'float32',
                      'float64', 'longlong', 'ulonglong')


def _history_buffer_method(owner, name: str):
    """``getattr`` restricted to the statistic methods of ``HistoryBuffer``."""
    member = vars(HistoryBuffer).get(name) if owner is HistoryBuffer else None
    if not callable(member) or name.startswith('__'):
        raise pickle.UnpicklingError(
            f'checkpoint asks for getattr({owner!r}, {name!r}); only methods '
            'of mmengine HistoryBuffer are allowed')
    return member


def _numpy_globals() -> List:
    try:
        from numpy._core.multiarray import _reconstruct, scalar  # numpy >= 2
    except ImportError:
        from numpy.core.multiarray import _reconstruct, scalar
    dtype_classes = {type(np.dtype(name)) for name in _NUMPY_DTYPE_NAMES}
    found = [np.ndarray, np.dtype, _reconstruct, scalar, *dtype_classes]
    # numpy 1.x pickles these under numpy.core, numpy 2.x under numpy._core;
    # a checkpoint written with the other major version names the other one.
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        found += [(_reconstruct, f'{module}._reconstruct'),
                  (scalar, f'{module}.scalar')]
    return found


def mmengine_safe_globals() -> List:
    """What ``add_safe_globals`` needs for mmengine's own checkpoints."""
    return [HistoryBuffer, (_history_buffer_method, 'builtins.getattr'),
            *_numpy_globals()]


def allow_mmengine_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` read mmengine checkpoints.

    Idempotent; a no-op on torch versions without ``add_safe_globals``.
    """
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is not None:
        add_safe_globals(mmengine_safe_globals())


def load_checkpoint_safely(path: str, mmap: bool = False) -> dict:
    """``torch.load`` with ``weights_only=True``; CheckpointError when it fails."""
    if not os.path.isfile(path):
        raise CheckpointError(
            f'checkpoint {path!r} does not exist; pass the path of a .pth file '
            'written by tools/train.py (e.g. work_dirs/<name>/epoch_N.pth)')
    allow_mmengine_checkpoints()
    try:
        with warnings.catch_warnings():
            # a raw pickle: torch warns about its protocol, then refuses it
            warnings.filterwarnings('ignore', 'Detected pickle protocol')
            try:
                return torch.load(path, map_location='cpu', weights_only=True,
                                  mmap=mmap)
            except RuntimeError as error:  # legacy files cannot be mapped
                if not (mmap and 'mmap' in str(error)):
                    raise
                return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # truncated, not a torch file, unsafe content
        raise CheckpointError(unreadable_message(path, error)) from error


def state_dict_of(checkpoint: Mapping) -> Mapping:
    """The weights of an mmengine checkpoint, or the mapping itself."""
    if 'state_dict' in checkpoint:
        return checkpoint['state_dict']
    if 'model' in checkpoint and isinstance(checkpoint['model'], Mapping):
        return checkpoint['model']
    return checkpoint


def check_checkpoint_matches(model: torch.nn.Module, path: str,
                             strict: bool = True) -> None:
    """Raise CheckpointError if ``path``'s weights do not fit ``model``.

    ``strict`` (resuming): every key and shape must match. Otherwise
    (``load_from``): at least one key must match; partial matches are left to
    mmengine, which loads what fits and logs the rest.
    """
    weights = state_dict_of(load_checkpoint_safely(path, mmap=True))
    if not isinstance(weights, Mapping):
        raise CheckpointError(f'checkpoint {path!r} holds no state dict')
    report = compare_keys(model.state_dict(), weights)
    if report.fits:
        return
    if not strict and (len(report.missing) + len(report.reshaped)
                       < report.expected_count):
        return
    raise CheckpointError(
        f'checkpoint {path!r} does not fit the model of this config ('
        + report.problems() + '); pass a checkpoint written with this config')
