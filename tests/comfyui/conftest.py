from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


@pytest.fixture(autouse=True)
def _kdiffusion_draws_from_torch(request):
    """The WebUI fake (tests/contract) points k-diffusion's ``torch`` at a job's RNG, as the
    WebUI does (sd_samplers_common.py:205-226) and never undoes; ComfyUI's samplers draw
    from torch itself. Both fakes share the one k-diffusion module. Not for the live suite
    (live/), which runs from a Python without torch."""
    if "live" in request.node.path.relative_to(HERE).parts:
        yield
        return
    import torch

    import fake_comfy

    saved = fake_comfy.K.torch
    fake_comfy.K.torch = torch
    yield
    fake_comfy.K.torch = saved
