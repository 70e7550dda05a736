"""The errors that mean "your input is wrong", not "spark_mm has a bug".

Every check of a user's config, sizes, ratios, data or checkpoint raises a
:class:`SparKInputError` (a ``ValueError``) or one of its subclasses. The
tools print such an error as one line and exit; anything else is a bug and
keeps its traceback (:func:`one_line_message`).
"""
import re
from typing import Optional

# mmengine's registry, for a type nobody registered (a KeyError, re-raised
# with "class `Outer` in path.py: " in front by each enclosing build)
_UNREGISTERED = re.compile(r'([\w.]+) is not in the ([\w:.]+) registry')


class SparKInputError(ValueError):
    """A config, argument, image, dataset or checkpoint that cannot be used."""


class CheckpointError(SparKInputError, RuntimeError):
    """A checkpoint that is missing, unreadable or holds the wrong keys."""


class UnsupportedLayerError(SparKInputError, TypeError):
    """The backbone holds layers that cannot be made sparse."""


class NonFiniteLossError(SparKInputError, RuntimeError):
    """The loss became NaN or infinite (data, learning rate or precision)."""


class DataNotFoundError(SparKInputError, FileNotFoundError):
    """A dataset folder, annotation file or image that does not exist."""


def one_line_message(error: BaseException) -> Optional[str]:
    """``error`` as one line if it is the user's input, else None (a bug).

    The user's input: :class:`SparKInputError`, ``FileNotFoundError``
    (a path the user gave that the operating system cannot open), and the
    ``KeyError`` of mmengine's registry for a type the config names but
    nothing registered.
    """
    if isinstance(error, (SparKInputError, FileNotFoundError)):
        return ' '.join(str(error).split())
    unregistered = _UNREGISTERED.search(str(error))
    if isinstance(error, KeyError) and unregistered:
        name, registry = unregistered.groups()
        return (f'unknown type {name!r} in the config (not in the {registry} '
                'registry): check its spelling, or add the package that '
                "registers it to custom_imports = dict(imports=[...])")
    return None
