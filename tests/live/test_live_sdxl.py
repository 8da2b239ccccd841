"""SDXL video models in the real WebUI: AnimateDiff-SDXL (beta) and HotShot-XL.

Opt-in: ``SD_WEBUI_SDXL_URL`` names a WebUI started with a random SDXL checkpoint and
both SDXL motion modules (tests/live/tools/SETUP.md, section 7), e.g.
``launch_webui.sh --port 7862 --ui --ckpt random-sdxl-slim.safetensors``. The same
promises as on SD1.5, through SDXL's own conditioning, ᾱ schedule and AnimateDiff's
SDXL injection (HotShot-XL's GroupNorm hack included).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from webui_client import (
    WebUI,
    assert_error_names,
    assert_same_images,
    assert_still,
    max_frame_difference,
    request,
)

URL = os.environ.get("SD_WEBUI_SDXL_URL", "")
MODULES = {
    "AnimateDiff-SDXL": "mm_sdxl_v10_beta.safetensors",
    "HotShot-XL": "hsxl_temporal_layers.safetensors",
}
STILL = {"enabled": True, "omega": "still", "tau": [0.0, 1.0]}
pytestmark = pytest.mark.skipif(
    not URL, reason="set SD_WEBUI_SDXL_URL to a WebUI started with an SDXL checkpoint (SETUP.md §7)"
)


@pytest.fixture(scope="module")
def sdxl() -> WebUI:
    client = WebUI(URL)
    checkpoint = client.get("/sdapi/v1/options")["sd_model_checkpoint"]
    if "xl" not in checkpoint.lower():
        pytest.skip(f"the WebUI at {URL} runs {checkpoint}, not an SDXL checkpoint")
    return client


def video(rectification, module: str, **kwargs):
    kwargs.setdefault("steps", 4)
    animatediff = {"model": MODULES[module], **kwargs.pop("animatediff", {})}
    return request(rectification, animatediff=animatediff, **kwargs)


@pytest.fixture(scope="module", params=list(MODULES))
def module(request, sdxl: WebUI) -> str:
    probe = sdxl.img2img(video({"enabled": False}, request.param, steps=1, sampler="Euler"))
    if probe.status != 200 and "download" in probe.message.lower():
        pytest.skip(f"{MODULES[request.param]} is not installed (SETUP.md §7)")
    return request.param


@pytest.mark.parametrize("sampler", ["Euler", "DPM++ 2M", "DDIM"])
def test_still_window_gives_identical_frames(sdxl: WebUI, module: str, sampler: str):
    result = sdxl.img2img(video(STILL, module, sampler=sampler))
    assert_still(result)
    assert "NR steps" in result.infotext


def test_a_partial_window_rectifies_exactly_the_steps_it_covers(sdxl: WebUI, module: str):
    """Step labels on SDXL's schedule: [0, 0.5] and [0, 0.4] cover the same two of four
    DPM++ 2M steps and give the same video; [0, 0.75] covers three and does not."""

    def run(tau):
        return sdxl.img2img(
            video({"enabled": True, "omega": "paper", "tau": tau}, module, sampler="DPM++ 2M")
        )

    run([0.0, 0.5])  # settle the host's RNG state
    a, b, c = run([0.0, 0.5]), run([0.0, 0.4]), run([0.0, 0.75])
    assert_same_images(a, b)
    assert "NR steps: 0-1 of 4" in a.infotext, a.infotext
    assert c.status == 200, c.message
    assert "NR steps: 0-2 of 4" in c.infotext, c.infotext
    assert max(np.abs(x.astype(int) - y).max() for x, y in zip(a.frames, c.frames, strict=True)) > 0


@pytest.mark.parametrize("reference", [0, -1])
def test_free_omega_keeps_the_reference_frame_exact(sdxl: WebUI, module: str, reference: int):
    still = sdxl.img2img(video(STILL, module, sampler="Euler"))
    free = sdxl.img2img(
        video(
            {"enabled": True, "omega": "free", "tau": [0, 1], "reference_frame": reference},
            module,
            sampler="Euler",
        )
    )
    assert still.status == 200 and free.status == 200, (still.message, free.message)
    assert np.abs(free.frames[reference].astype(int) - still.frames[0]).max() <= 2
    assert max_frame_difference(free.frames) > 2


def test_disabled_is_bit_identical(sdxl: WebUI, module: str):
    sdxl.img2img(video(None, module, sampler="DDIM"))  # settle the host's RNG state
    reference = sdxl.img2img(video(None, module, sampler="DDIM"))
    assert_same_images(reference, sdxl.img2img(video({"enabled": False}, module, sampler="DDIM")))


def test_infotext_round_trip_restores_our_settings(sdxl: WebUI, module: str):
    settings = {"enabled": True, "omega": [1.0, 0.3], "tau": [0.0, 0.5], "reference_frame": -1}
    sdxl.img2img(video(settings, module, sampler="DDIM"))  # settle
    original = sdxl.img2img(video(settings, module, sampler="DDIM"))
    assert original.status == 200, original.message
    replay = video(None, module, sampler="DDIM")
    replay.pop("seed")
    replay["infotext"] = original.infotext
    assert_same_images(original, sdxl.img2img(replay))


def test_a_refiner_switch_is_refused(sdxl: WebUI):
    checkpoint = sdxl.get("/sdapi/v1/options")["sd_model_checkpoint"]
    payload = video(STILL, "HotShot-XL", sampler="Euler")
    payload.update(refiner_checkpoint=checkpoint, refiner_switch_at=0.5)
    assert_error_names(sdxl.img2img(payload), "refiner", "no motion module")
