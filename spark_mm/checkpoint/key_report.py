"""One report of how a state dict fits a model: missing, unexpected and
reshaped keys, written as one line.

Used wherever weights meet a model: resuming and ``load_from``
(:func:`spark_mm.checkpoint.loading.check_checkpoint_matches`), exporting to
another toolbox (:mod:`spark_mm.checkpoint.load_checks`) and downstream
initialisation (``spark_mm.CheckedPretrained``).
"""
import re
from dataclasses import dataclass, field
from typing import Iterable, List, Mapping, Optional

NOTHING = re.compile(r'(?!)')


def listed(keys: Iterable[str], limit: int = 8) -> str:
    """``keys`` in their order (sets: sorted), at most ``limit`` of them, then
    how many more."""
    keys = sorted(keys) if isinstance(keys, (set, frozenset)) else list(keys)
    shown = ', '.join(keys[:limit])
    return shown + (f' (+{len(keys) - limit} more)' if len(keys) > limit else '')


@dataclass
class KeyReport:
    """How ``weights`` fit the ``expected`` state dict (see :func:`compare_keys`)."""

    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    reshaped: List[str] = field(default_factory=list)  # 'key (a, b) vs (c, d)'
    fresh: List[str] = field(default_factory=list)  # missing, but allowed
    expected_count: int = 0

    @property
    def fits(self) -> bool:
        """Nothing missing (beyond ``fresh``), unexpected or reshaped."""
        return not (self.missing or self.unexpected or self.reshaped)

    def problems(self, unexpected: bool = True, limit: int = 8) -> str:
        """'3 missing: a, b, c; 1 of another shape: k (2,) vs (3,)'."""
        parts = []
        if self.missing:
            parts.append(f'{len(self.missing)} missing: '
                         f'{listed(self.missing, limit)}')
        if unexpected and self.unexpected:
            parts.append(f'{len(self.unexpected)} unexpected: '
                         f'{listed(self.unexpected, limit)}')
        if self.reshaped:
            parts.append(f'{len(self.reshaped)} of another shape: '
                         f'{listed(self.reshaped, limit)}')
        return '; '.join(parts)


def compare_keys(expected: Mapping, weights: Mapping,
                 fresh: re.Pattern = NOTHING,
                 optional: Optional[re.Pattern] = None) -> KeyReport:
    """Compare ``weights`` with a model's ``expected`` state dict.

    Missing keys that match ``fresh`` (what the target initialises itself)
    are listed as ``fresh``, not ``missing``; keys matching ``optional`` are
    neither (e.g. ``num_batches_tracked``, which BN fills itself).
    """
    report = KeyReport(expected_count=len(expected))
    for key in expected:
        if key in weights:
            have, want = _shape(weights[key]), _shape(expected[key])
            if have is not None and want is not None and have != want:
                report.reshaped.append(f'{key} {have} vs {want}')
        elif optional is not None and optional.search(key):
            continue
        elif fresh.match(key):
            report.fresh.append(key)
        else:
            report.missing.append(key)
    report.unexpected = [key for key in weights if key not in expected]
    return report


def _shape(value):
    return tuple(value.shape) if hasattr(value, 'shape') else None
