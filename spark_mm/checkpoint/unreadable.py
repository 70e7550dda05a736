"""Why a checkpoint could not be read, in one line that gives a safe fix.

torch's own message for a refused file advises re-running ``torch.load``
with ``weights_only=False``: for a malicious file that advice is the attack.
The line built here never repeats it; a forbidden object is called what it
is, refused for safety (nothing of it ran).
"""
import re
import zipfile

_FORBIDDEN = re.compile(r'GLOBAL ([\w.]+)')
# pickle's PROTO opcode (0x80) and a protocol number: a raw pickle file
_RAW_PICKLE = re.compile(rb'^\x80[\x02-\x05]')
# sentences of torch's text that are advice, not a reason
_ADVICE = ('weights_only', 'Weights only load failed', 'file an issue',
           'Check the documentation', 'WeightsUnpickler error')


def _reason(error: BaseException) -> str:
    """The first sentence of ``error`` that is not torch's advice."""
    sentences = re.split(r'(?<=\.)\s+|\n+', str(error))
    kept = [sentence.strip() for sentence in sentences if sentence.strip()
            and not any(advice in sentence for advice in _ADVICE)]
    return kept[0] if kept else ''


def _is_raw_pickle(path: str) -> bool:
    with open(path, 'rb') as file:
        head = file.read(2)
    return bool(_RAW_PICKLE.match(head)) and not zipfile.is_zipfile(path)


def unreadable_message(path: str, error: BaseException) -> str:
    """One line for a checkpoint ``torch.load(weights_only=True)`` refused."""
    forbidden = _FORBIDDEN.search(str(error))
    if forbidden:
        return (f'checkpoint {path!r} was refused for safety: it asks to '
                f'load {forbidden.group(1)}, which weights never need '
                '(nothing of it was run); use a checkpoint from a source you '
                'trust (your own training runs, the official releases)')
    if _is_raw_pickle(path):
        return (f'checkpoint {path!r} is a plain pickle, not a PyTorch '
                'checkpoint (torch.save), and plain pickles are not read: '
                'they can run code; save its weights with torch.save where '
                'the file was made, or use the .pth release')
    reason = _reason(error)
    detail = f'{type(error).__name__}: {reason}' if reason else type(
        error).__name__
    return (f'checkpoint {path!r} cannot be read ({detail}); the file is '
            'truncated or not a PyTorch checkpoint: use an earlier checkpoint '
            'or re-download it')
