"""Mixed precision by autocast alone, for devices without a loss scaler (CPU)."""
from contextlib import contextmanager

import torch
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

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model), torch.autocast(
                device_type=self.device_type, dtype=self.dtype):
            yield
