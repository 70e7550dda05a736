"""Mixed precision by autocast alone, for devices without a loss scaler (CPU)."""
from contextlib import contextmanager

import torch
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper

from ..registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """Runs the forward under ``torch.autocast`` (bf16 by default).

    bf16 keeps fp32's exponent range, so no loss scaling is needed; that makes
    it the mixed precision of CPUs (mmengine's AmpOptimWrapper is GPU-only).
    """

    def __init__(self, *args, dtype: str = 'bfloat16', device_type: str = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.dtype = getattr(torch, dtype)
        self.device_type = device_type or ('cuda' if torch.cuda.is_available()
                                           else 'cpu')
        if (self.device_type == 'cpu' and self.dtype == torch.bfloat16
                and not cpu_has_native_bf16()):
            print_log('bf16 autocast on a CPU without native bf16 (avx512_bf16 '
                      'or AMX): oneDNN emulates it and training gets much '
                      'slower; drop --amp here', logger='current', level=30)

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model), torch.autocast(
                device_type=self.device_type, dtype=self.dtype):
            yield


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively here (else it emulates it, slowly)."""
    check = getattr(torch.ops.mkldnn, '_is_mkldnn_bf16_supported', None)
    return bool(check is not None and check())
