"""The real k-diffusion sampling loops, from PyPI ``k-diffusion==0.0.16``.

That release is the commit WebUI v1.10.1 pins (crowsonkb/k-diffusion ab527a9,
modules/launch_utils.py); its ``sampling.py`` and ``external.py`` are byte-identical.
The package's ``__init__`` imports training code (torchvision, kornia, wandb, …) that
the samplers never use, so only ``utils``, ``sampling`` and ``external`` are loaded, with
torchvision's names held by placeholders while ``utils`` imports (utils only uses it
for image helpers). Installed by the README's test command (``--no-deps``).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

from bench._torchvision_shim import _placeholder_torchvision

PYPI_VERSION = "0.0.16"


def load() -> tuple[types.ModuleType, types.ModuleType]:
    """``(k_diffusion.sampling, k_diffusion.external)``; ImportError when not installed."""
    if "k_diffusion.sampling" in sys.modules:
        return sys.modules["k_diffusion.sampling"], sys.modules["k_diffusion.external"]
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "k-diffusion is not installed (pip install --no-deps k-diffusion==0.0.16)"
        )
    from importlib.metadata import version

    installed = version("k-diffusion")
    if installed != PYPI_VERSION:
        raise ImportError(f"k-diffusion {installed} installed; the WebUI pins {PYPI_VERSION}")
    package = types.ModuleType("k_diffusion")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["k_diffusion"] = package
    try:
        import torchvision  # noqa: F401  (a working one is used as it is)
    except Exception:
        with _placeholder_torchvision():
            importlib.import_module("k_diffusion.utils")
    sampling = importlib.import_module("k_diffusion.sampling")
    external = importlib.import_module("k_diffusion.external")
    return sampling, external
