"""The real WebUI v1.10.1 + AnimateDiff: samplers with tricks, partial windows, failure paths.

Settings here are chosen so that the bug each test guards against would show: partial
windows whose edges fall between steps, the samplers that re-noise or step along a
second prediction, a plain job right after a refused one, XYZ cells that differ.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from webui_client import (
    WebUI,
    assert_error_names,
    assert_same_images,
    assert_still,
    request,
    xyz_request,
)

STILL = {"enabled": True, "omega": "still", "tau": [0.0, 1.0]}


# 1. samplers that add fresh noise or step along a saved prediction
def test_lcm_still_window_gives_identical_frames_and_says_why(webui: WebUI):
    result = webui.img2img(request(STILL, sampler="LCM"))
    assert_still(result)
    assert "NR pivot" in result.infotext and "LCM adds fresh noise" in result.infotext


def test_ddim_cfgpp_still_window_gives_identical_frames(webui: WebUI):
    result = webui.img2img(request(STILL, sampler="DDIM CFG++"))
    assert_still(result)
    assert "NR pivot" not in result.infotext  # η = 0: deterministic


# 2. partial windows: the same steps give the same video, other steps another
@pytest.mark.parametrize(
    ("sampler", "window", "equivalent", "different", "steps"),
    [
        # 6 steps at strength 1: Heun makes 6 steps (two calls each but the last),
        # UniPC 5 (one call each, the corrector before the previous step's callback)
        ("Heun", [0.0, 0.5], [0.0, 0.45], [0.0, 0.67], "0-2 of 6"),
        ("UniPC", [0.0, 0.5], [0.0, 0.45], [0.0, 0.8], "0-2 of 5"),
    ],
)
def test_partial_window_depends_only_on_the_steps_it_covers(
    webui: WebUI, sampler, window, equivalent, different, steps
):
    def run(tau):
        return webui.img2img(
            request({"enabled": True, "omega": "paper", "tau": tau}, sampler=sampler)
        )

    run(window)  # settle the host's RNG state
    a, b, c = run(window), run(equivalent), run(different)
    assert_same_images(a, b)
    assert f"NR steps: {steps}" in a.infotext
    assert c.status == 200, c.message
    assert max(np.abs(x.astype(int) - y).max() for x, y in zip(a.frames, c.frames, strict=True)) > 0


# 3. a refused job leaves the WebUI as it was (AnimateDiff's motion module taken out)
def _txt2img(webui: WebUI) -> list[str]:
    payload = {
        "prompt": "a photo of a cat",
        "seed": 77,
        "steps": 3,
        "sampler_name": "Euler",
        "width": 64,
        "height": 64,
        "batch_size": 2,
    }
    status, body = webui.post("/sdapi/v1/txt2img", payload)
    assert status == 200, body
    return body["images"]


def _plain_img2img(webui: WebUI):
    return webui.img2img(request(None, sampler="Euler", steps=3, animatediff={"enable": False}))


REFINER = {"refiner_checkpoint": "random-sd15.safetensors", "refiner_switch_at": 0.5}


@pytest.mark.parametrize(
    ("args", "animatediff", "extra", "fragments"),
    [
        (STILL, {"freeinit_enable": True}, {}, ["FreeInit"]),
        ({"enabled": True, "reference_frame": 8}, None, {}, ["reference_frame", "8 frames"]),
        (STILL, None, REFINER, ["refiner", "no motion module"]),
    ],
    ids=["freeinit", "frame-index", "refiner"],
)
def test_after_a_refused_job_txt2img_and_img2img_are_bit_identical(
    webui: WebUI, args, animatediff, extra, fragments
):
    _txt2img(webui)
    _plain_img2img(webui)  # settle
    before_txt, before_img = _txt2img(webui), _plain_img2img(webui)
    refused = webui.img2img(request(args, sampler="DDIM", animatediff=animatediff, **extra))
    assert_error_names(refused, *fragments)
    assert _txt2img(webui) == before_txt
    assert_same_images(before_img, _plain_img2img(webui))


# 4. XYZ cells are independent
def test_xyz_cell_with_rectification_off_has_no_nr_keys(webui: WebUI):
    payload = request({"enabled": False, "omega": "still", "tau": [0, 1]}, sampler="DDIM", steps=4)
    result = webui.img2img(
        xyz_request(webui, payload, "[Noise Rectification] Enable", "True, False")
    )
    assert result.status == 200, result.message
    cells = result.info["infotexts"][1:]
    assert len(cells) == 2, result.info["infotexts"]
    assert "NR tau" in cells[0] and "NR steps" in cells[0]
    assert "NR " not in cells[1] and "Noise rectification" not in cells[1], cells[1]


def test_xyz_window_end_cells_differ(webui: WebUI):
    """An ignored override would give two equal cells."""
    payload = request({"enabled": True, "omega": "still"}, sampler="DDIM", steps=4)
    result = webui.img2img(xyz_request(webui, payload, "[Noise Rectification] τ end %", "0, 100"))
    assert result.status == 200, result.message
    grid = result.frames[0]
    half = grid.shape[1] // 2
    left, right = grid[:, :half].astype(int), grid[:, half:].astype(int)
    assert np.abs(left - right[:, : left.shape[1]]).max() > 8
    cells = result.info["infotexts"][1:]
    assert 'NR tau: "[0.0, 0.0]"' in cells[0] and 'NR tau: "[0.0, 1.0]"' in cells[1]


# 5. inpainting keeps the host's mask blend
def test_inpainting_still_window_gives_identical_frames(webui: WebUI):
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[:, :32] = 255  # repaint the left half
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, "PNG")
    payload = request(STILL, sampler="DDIM", mask=base64.b64encode(buffer.getvalue()).decode())
    result = webui.img2img(payload)
    assert_still(result)
    assert "NR steps: 0-3 of 4" in result.infotext
