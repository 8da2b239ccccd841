"""Find the calls that would make the CPU wait for the GPU, on a machine without one.

On CUDA, reading a tensor's value on the host (``item()``, ``float(t)``, ``bool(t)``,
``tolist()``, a Python ``if`` on a tensor), ``nonzero()`` and friends, and copying host
data to the device with a blocking copy all stall the CPU until every queued kernel has
run, so the next step's work cannot be queued ahead. ``torch.cuda.set_sync_debug_mode``
reports them, but only on a GPU. :class:`SyncRecorder` records the same operations on
any device, with the line of project code that made them, while it is active; code that
is not ours (the host's own loop, a scheduler) runs with it paused (:meth:`paused`).

It catches, on every device:
- reads of a value: the ``aten::_local_scalar_dense`` op behind ``item``, ``float``,
  ``int``, ``bool`` and ``tolist`` (dispatch level, so C++ paths count too), and
  ``Tensor.tolist`` / ``numpy`` / ``cpu`` calls;
- data-dependent shapes: ``nonzero``, ``masked_select``, ``unique``, boolean-mask indexing;
- host data sent to a device: ``torch.tensor`` / ``as_tensor`` of Python data with an
  explicit ``device``, and ``Tensor.to`` / ``copy_`` without ``non_blocking`` across devices.

Device-to-device placement on a CPU-only machine is invisible (everything is on the CPU);
the GPU benchmark's sync count (``bench/gpu_cost.py``) covers that.
"""

from __future__ import annotations

import contextlib
import os
import traceback
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Only frames in these folders of the repository are "ours" (tests and bench excluded).
PROJECT_PACKAGES = (
    "lib_rectify",
    "lib_rectify_diffusers",
    "lib_rectify_webui",
    "lib_rectify_comfyui",
)

_READ_OPS = {"aten::_local_scalar_dense"}
_SHAPE_OPS = {
    "aten::nonzero",
    "aten::masked_select",
    "aten::_unique2",
    "aten::unique_dim",
    "aten::unique_consecutive",
    "aten::nonzero_static",
}
_METHODS = {
    torch.Tensor.tolist: "tolist()",
    torch.Tensor.numpy: "numpy()",
    torch.Tensor.cpu: "cpu()",
    torch.Tensor.item: "item()",
    torch.Tensor.__bool__: "bool(tensor)",
    torch.Tensor.__float__: "float(tensor)",
    torch.Tensor.__int__: "int(tensor)",
    torch.Tensor.__index__: "tensor used as an index",
    torch.Tensor.nonzero: "nonzero()",
    torch.nonzero: "torch.nonzero",
}
_FACTORIES = {torch.tensor, torch.as_tensor}


@dataclass(frozen=True)
class Site:
    what: str
    where: str  # "path:line in function" of the innermost project frame

    def __str__(self) -> str:
        return f"{self.what} at {self.where}"


def _project_frame() -> str | None:
    for frame in reversed(traceback.extract_stack()):
        path = os.path.abspath(frame.filename)
        if not path.startswith(_ROOT + os.sep):
            continue
        rel = os.path.relpath(path, _ROOT)
        if rel.split(os.sep)[0] in PROJECT_PACKAGES:
            return f"{rel}:{frame.lineno} in {frame.name}"
    return None


class _Functions(TorchFunctionMode):
    def __init__(self, recorder: SyncRecorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        what = _METHODS.get(func)
        if what is not None:
            self.recorder._record(what)
        elif func in _FACTORIES:
            data = args[0] if args else kwargs.get("data")
            if not isinstance(data, torch.Tensor) and kwargs.get("device") is not None:
                self.recorder._record(f"{func.__name__}(host data, device=...)")
        elif func in (torch.Tensor.to, torch.Tensor.copy_):
            self._check_copy(func, args, kwargs)
        elif func is torch.Tensor.__getitem__ and len(args) > 1:
            index = args[1]
            items = index if isinstance(index, tuple) else (index,)
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items):
                self.recorder._record("boolean-mask indexing")
        return func(*args, **kwargs)

    def _check_copy(self, func, args, kwargs) -> None:
        if kwargs.get("non_blocking") or (
            len(args) > 2 and args[2] is True and func is torch.Tensor.copy_
        ):
            return
        source = args[0] if func is torch.Tensor.to else (args[1] if len(args) > 1 else None)
        target_device = None
        if func is torch.Tensor.to:
            target = kwargs.get("device", args[1] if len(args) > 1 else None)
            if isinstance(target, (str, torch.device)):
                target_device = torch.device(target)
        else:
            target_device = args[0].device
        if (
            isinstance(source, torch.Tensor)
            and target_device is not None
            and target_device.type != source.device.type
        ):
            self.recorder._record(f"blocking copy {source.device.type} -> {target_device.type}")


class _Dispatch(TorchDispatchMode):
    def __init__(self, recorder: SyncRecorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        if name in _READ_OPS:
            self.recorder._record("a tensor's value read on the host")
        elif name in _SHAPE_OPS:
            self.recorder._record(f"{name} (data-dependent shape)")
        return func(*args, **(kwargs or {}))


class SyncRecorder:
    """Records synchronising operations made by project code while :meth:`watching`."""

    def __init__(self) -> None:
        self.sites: list[Site] = []
        self._active = False
        self._paused = 0

    def _record(self, what: str) -> None:
        if not self._active or self._paused:
            return
        where = _project_frame()
        if where is not None:
            self.sites.append(Site(what, where))

    @contextlib.contextmanager
    def watching(self) -> Iterator[SyncRecorder]:
        """Record inside this block (re-entrant: an inner block changes nothing)."""
        if self._active:
            yield self
            return
        self._active = True
        try:
            with _Functions(self), _Dispatch(self):
                yield self
        finally:
            self._active = False

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Host code called from ours (a scheduler's own step): not ours to judge."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    def unique(self) -> list[str]:
        seen: dict[str, None] = {}
        for site in self.sites:
            seen.setdefault(str(site))
        return list(seen)

    def report(self) -> str:
        return "\n".join(self.unique()) or "(none)"
