"""A torch function mode that fails on float64, which Apple MPS and Intel XPU lack."""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode


class NoFloat64(TorchFunctionMode):
    """Raises AssertionError on any operation that returns a float64 tensor."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if isinstance(result, torch.Tensor) and result.dtype == torch.float64:
            raise AssertionError(f"{getattr(func, '__name__', func)} made a float64 tensor")
        return result
