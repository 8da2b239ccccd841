"""Beside sd-webui-controlnet: IP-Adapter (the paper's best setting) and a tile ControlNet.

Needs the live WebUI with sd-webui-controlnet and the random ControlNet / IP-Adapter
models (tests/live/tools/SETUP.md, section 6); skipped with the reason otherwise.
Over the API, sd-webui-animatediff a88e889 half-fails on any ControlNet unit: the tests
check that a rectified job says so, still keeps the picture, and leaves no motion
module behind for the next job.
"""

from __future__ import annotations

import base64
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from webui_client import (
    WebUI,
    assert_error_names,
    assert_same_images,
    assert_still,
    max_frame_difference,
    picture_png,
    request,
)

STILL = {"enabled": True, "omega": "still", "tau": [0.0, 1.0]}
TILE_MODEL = "control_v11f1e_sd15_tile"
IP_MODEL = "ip-adapter_sd15"


@pytest.fixture(scope="module")
def controlnet(webui: WebUI) -> None:
    try:
        models = webui.get("/controlnet/model_list")["model_list"]
    except Exception as error:  # 404 without the extension
        pytest.skip(f"sd-webui-controlnet is not installed in the WebUI ({error}); see SETUP.md §6")
    names = " ".join(models)
    for model in (TILE_MODEL, IP_MODEL):
        if model not in names:
            pytest.skip(f"ControlNet model {model} is missing; run the model tool of SETUP.md §6")


def tile(**extra):
    unit = {"enabled": True, "module": "tile_resample", "model": TILE_MODEL, "weight": 1.0}
    return {**unit, "save_detected_map": False, **extra}


def ip_adapter(**extra):
    image = base64.b64encode(picture_png(64)).decode()
    unit = {"enabled": True, "module": "ip-adapter_clip_sd15", "model": IP_MODEL, "image": image}
    return {**unit, "weight": 0.8, "save_detected_map": False, **extra}


def with_units(rectification, units, **kwargs):
    payload = request(rectification, sampler="DDIM", **kwargs)
    payload["alwayson_scripts"]["ControlNet"] = {"args": units}
    return payload


def _txt2img_ok(webui: WebUI) -> None:
    payload = {"prompt": "a cat", "seed": 5, "steps": 2, "width": 64, "height": 64, "batch_size": 2}
    status, body = webui.post("/sdapi/v1/txt2img", payload)
    assert status == 200, body  # fails with an einops error if a motion module was left in


@pytest.mark.parametrize(
    "units", [[ip_adapter()], [tile()], [ip_adapter(), tile()]], ids=["ip-adapter", "tile", "both"]
)
def test_still_window_beside_controlnet_keeps_the_picture_and_says_why(
    webui: WebUI, controlnet, units
):
    result = webui.img2img(with_units(STILL, units))
    assert_still(result)
    assert len(result.frames) == 8
    assert "NR AnimateDiff: setup incomplete" in result.infotext
    _txt2img_ok(webui)


def test_reference_frame_is_exact_with_free_omega(webui: WebUI, controlnet):
    units = [ip_adapter(), tile()]
    still = webui.img2img(with_units(STILL, units))
    free = webui.img2img(with_units({"enabled": True, "omega": "free", "tau": [0, 1]}, units))
    assert still.status == 200 and free.status == 200, (still.message, free.message)
    assert np.abs(free.frames[0].astype(int) - still.frames[0]).max() <= 2
    assert max_frame_difference(free.frames) > 2


def test_controlnet_really_changes_the_video(webui: WebUI, controlnet):
    rect = {"enabled": True, "tau": [0, 0.6]}
    plain = webui.img2img(request(rect, sampler="DDIM"))
    controlled = webui.img2img(with_units(rect, [tile()]))
    assert plain.status == 200 and controlled.status == 200
    assert (
        max(
            np.abs(a.astype(int) - b).max()
            for a, b in zip(plain.frames, controlled.frames, strict=True)
        )
        > 0
    )


def test_disabled_is_bit_identical_to_the_request_without_our_arguments(webui: WebUI, controlnet):
    units = [ip_adapter(), tile()]
    webui.img2img(with_units(None, units))  # settle the host
    reference = webui.img2img(with_units(None, units))
    assert_same_images(reference, webui.img2img(with_units({"enabled": False}, units)))
    webui.img2img(request(None, sampler="DDIM", steps=2))  # AnimateDiff restores its own leak


@pytest.mark.parametrize(
    "extra",
    [{"control_mode": "ControlNet is more important"}, {"low_vram": True}, {"pixel_perfect": True}],
    ids=["controlnet-more-important", "low-vram", "pixel-perfect"],
)
def test_unit_settings_keep_a_still_window_still(webui: WebUI, controlnet, extra):
    assert_still(webui.img2img(with_units(STILL, [tile(**extra)])))


def test_a_batch_of_control_images_for_the_frames(webui: WebUI, controlnet):
    """One control image per frame (a server folder, AnimateDiff's batch path)."""
    folder = Path(tempfile.mkdtemp(prefix="nr-cn-batch-"))
    for i in range(8):
        (folder / f"{i:03d}.png").write_bytes(picture_png(64))
    unit = tile(input_mode="batch", batch_images=str(folder), animatediff_batch=True)
    result = webui.img2img(with_units(STILL, [unit]))
    if result.status != 200:  # refused or failed: it must say what, naming the setting
        assert_error_names(result, "batch")
    else:
        assert_still(result)
    for file in folder.iterdir():
        os.remove(file)
    folder.rmdir()
    _txt2img_ok(webui)


def test_context_windows_animatediff_did_not_set_up_are_refused(webui: WebUI, controlnet):
    payload = with_units(STILL, [tile()], frames=12, context=8)
    assert_error_names(
        webui.img2img(payload), "AnimateDiff setup", "context size (batch_size) to 12"
    )
    _txt2img_ok(webui)
