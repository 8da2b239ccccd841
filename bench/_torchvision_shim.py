"""Import open_clip where torchvision cannot be installed (our CPU torch wheel).

`import open_clip` imports torchvision at module level (its PIL transforms and one
batch-norm helper), but the CLIP model itself is plain torch. We do the preprocessing
ourselves with torch ops, so while importing open_clip (and only then) we register
placeholder torchvision modules whose names exist but refuse to run. A real torchvision,
when present, is always used instead.
"""

from __future__ import annotations

import enum
import importlib
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

_NAMES = (
    "torchvision",
    "torchvision.transforms",
    "torchvision.transforms.functional",
    "torchvision.ops",
    "torchvision.ops.misc",
)


class _Unavailable:
    """Placeholder for a torchvision transform: open_clip's own preprocessing is not used."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(
            "torchvision is not installed; bench.clip_metrics preprocesses with torch ops instead"
        )


class _InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


class _FrozenBatchNorm2d(nn.Module):
    """Only referenced by open_clip for ResNet towers that freeze batch norm; never built here."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("torchvision is not installed: frozen batch norm is unavailable")


def _placeholder_module(name: str) -> types.ModuleType:
    module = types.ModuleType(name)

    def __getattr__(attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Unavailable

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    return module


@contextmanager
def _placeholder_torchvision() -> Iterator[None]:
    modules = {name: _placeholder_module(name) for name in _NAMES}
    modules["torchvision"].transforms = modules["torchvision.transforms"]  # type: ignore[attr-defined]
    modules["torchvision"].ops = modules["torchvision.ops"]  # type: ignore[attr-defined]
    modules["torchvision.transforms"].functional = modules["torchvision.transforms.functional"]  # type: ignore[attr-defined]
    modules["torchvision.transforms"].InterpolationMode = _InterpolationMode  # type: ignore[attr-defined]
    modules["torchvision.ops"].misc = modules["torchvision.ops.misc"]  # type: ignore[attr-defined]
    modules["torchvision.ops.misc"].FrozenBatchNorm2d = _FrozenBatchNorm2d  # type: ignore[attr-defined]
    saved = {name: sys.modules.get(name) for name in _NAMES}
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


def import_open_clip() -> types.ModuleType:
    """`open_clip`, importable with or without torchvision; ImportError if not installed."""
    try:
        return importlib.import_module("open_clip")
    except ModuleNotFoundError as error:
        if error.name is None or not error.name.startswith("torchvision"):
            raise
    for name in [n for n in sys.modules if n == "open_clip" or n.startswith("open_clip.")]:
        del sys.modules[name]  # half-imported by the failed attempt
    with _placeholder_torchvision():
        return importlib.import_module("open_clip")
