"""Which errors are the user's input (shown as one line) and which are bugs."""
import os
from typing import Optional

from ..export import CheckpointError
from ..models.sparse import UnsupportedLayerError
from .nan_guard import NonFiniteLossError

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Raised only to describe a problem with the config, data or checkpoint.
INPUT_ERRORS = (CheckpointError, UnsupportedLayerError, NonFiniteLossError,
                FileNotFoundError)


def _raised_by_spark_mm(error: BaseException) -> bool:
    traceback = error.__traceback__
    last = None
    while traceback is not None:
        last, traceback = traceback, traceback.tb_next
    return last is not None and os.path.abspath(
        last.tb_frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep)


def input_error_message(error: BaseException) -> Optional[str]:
    """The error's message on one line if it describes bad input, else None.

    Bad input: the types above, and the ``ValueError``s our own checks raise
    (input size, mask ratio, backbone outputs). Anything else is a bug and
    keeps its traceback.
    """
    if isinstance(error, INPUT_ERRORS) or (
            isinstance(error, ValueError) and _raised_by_spark_mm(error)):
        return ' '.join(str(error).split())
    return None
