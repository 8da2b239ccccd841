"""The extension inside a real WebUI v1.10.x with sd-webui-animatediff (CPU, random weights).

The API's ``infotext`` field is read through the UI's paste fields, which the API
builds even on an API-only server (modules/api/api.py:259-260 calls ui.create_ui()).

Random weights make pictures meaningless, but the method's promises are exact
(docs: design.md): these checks hold for any model. 8-frame 64×64 videos, 6 steps.
"""

from __future__ import annotations

import pytest

from webui_client import (
    TITLE,
    WebUI,
    assert_error_names,
    assert_moving,
    assert_same_images,
    assert_still,
    max_frame_difference,
    request,
    xyz_request,
)

STILL = {"enabled": True, "omega": "still", "tau": [0.0, 1.0]}


@pytest.fixture(scope="module")
def plain(webui: WebUI):
    """The reference: AnimateDiff img2img without our script (DDIM, the fastest sampler)."""
    webui.img2img(request(sampler="DDIM"))  # settle the host's global RNG state
    result = webui.img2img(request(sampler="DDIM"))
    assert result.status == 200, result.message
    return result


# 1. a still window pins every frame to the picture, for both sampler families
@pytest.mark.parametrize("sampler", ["Euler", "DPM++ 2M", "DDIM", "UniPC", "Euler a"])
def test_still_window_gives_identical_frames(webui: WebUI, sampler: str):
    result = webui.img2img(request(STILL, sampler=sampler))
    assert_still(result)
    if sampler == "Euler a":  # fresh noise every step: per-step pivot, said in the infotext
        assert "NR pivot" in result.infotext and "ancestral sampler" in result.infotext
    else:
        assert "NR pivot" not in result.infotext


def test_batch_count_two_gives_two_still_videos(webui: WebUI):
    result = webui.img2img(request(STILL, sampler="DDIM", n_iter=2))
    assert result.status == 200, result.message
    videos = [f for f in result.frames if f.shape[:2] == (64, 64)]
    assert len(videos) >= 16, len(videos)
    for start in (0, 8):
        assert max_frame_difference(videos[start : start + 8]) <= 2


def test_freeinit_is_refused_with_a_message(webui: WebUI, plain):
    result = webui.img2img(request(STILL, sampler="DDIM", animatediff={"freeinit_enable": True}))
    assert_error_names(result, "FreeInit", "turn FreeInit off")
    assert_same_images(plain, webui.img2img(request(sampler="DDIM")))


def test_without_rectification_frames_differ(plain):
    assert_moving(plain)


# 2. disabled / empty window: bit-identical to the WebUI without the extension's args
@pytest.mark.parametrize(
    "args",
    [
        {"enabled": False},
        [False, "still", "", 0, 100, 0],
        {"enabled": True, "tau": [0.3, 0.3]},
    ],
    ids=["disabled-dict", "disabled-positional", "empty-window"],
)
def test_disabled_or_empty_window_is_bit_identical(webui: WebUI, plain, args):
    assert_same_images(plain, webui.img2img(request(args, sampler="DDIM")))


# 3. bad requests fail naming the field; the next good request is unaffected
@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        ({"enabled": True, "omega": "wobbly"}, ["omega", "wobbly", "preset"]),
        ({"enabled": True, "omega": [0.5, 2.0]}, ["omega", "[0, 1]"]),
        ({"enabled": True, "tau": [0.8, 0.2]}, ["tau", "start is after end"]),
        ({"enabled": True, "tau": 60}, ["tau", "[start, end]"]),
        ({"enabled": "yes"}, ["enabled", "true or false"]),
        ({"enabled": True, "speed": 3}, ["speed", "allowed keys"]),
        ({"enabled": True, "reference_frame": 8}, ["reference_frame", "8 frames"]),
        ([True, "custom", "1, 0.5, x"], ["omega_custom", "not a number"]),
    ],
    ids=[
        "preset",
        "omega-range",
        "tau-order",
        "tau-type",
        "enabled-type",
        "unknown-key",
        "reference",
        "custom",
    ],
)
def test_bad_request_names_the_field_and_leaves_no_state(webui: WebUI, plain, args, fragments):
    assert_error_names(webui.img2img(request(args, sampler="DDIM")), *fragments)
    assert_same_images(plain, webui.img2img(request(sampler="DDIM")))


def test_enabled_without_animatediff_runs_unchanged_with_a_warning(webui: WebUI):
    payload = request(STILL, sampler="DDIM", steps=2, animatediff={"enable": False})
    result = webui.img2img(payload)
    assert result.status == 200, result.message
    assert "NR skipped" in result.infotext and "AnimateDiff is not enabled" in result.infotext


# 4. the infotext of a result reproduces it
def test_infotext_reproduces_the_images(webui: WebUI):
    settings = {"enabled": True, "omega": [1.0, 0.3], "tau": [0.0, 0.5], "reference_frame": -1}
    # Settle first: the first AnimateDiff request after one with AnimateDiff off differs by
    # up to 1/255 from the next identical one, with or without this extension (host state).
    webui.img2img(request(settings, sampler="DDIM"))
    original = webui.img2img(request(settings, sampler="DDIM"))
    assert original.status == 200, original.message
    for key in ('NR omega: "[1.0, 0.3]"', 'NR tau: "[0.0, 0.5]"', "NR reference frame: -1"):
        assert key in original.infotext
    # Our settings and the seed come only from the infotext. WebUI v1.10.1 maps no img2img
    # prompt/size/CFG paste field to the API (modules/ui.py:841-853 have no api= names), so
    # those stay in the request.
    replay = request(None, sampler="DDIM")
    replay.pop("seed")
    replay["infotext"] = original.infotext
    assert_same_images(original, webui.img2img(replay))


# 5. an XYZ plot over one of our axes returns a grid
def test_xyz_plot_over_the_window_end_returns_a_grid(webui: WebUI):
    payload = request({"enabled": True, "omega": "still"}, sampler="DDIM", steps=4)
    result = webui.img2img(xyz_request(webui, payload, "[Noise Rectification] τ end %", "0, 100"))
    assert result.status == 200, result.message
    assert "[Noise Rectification] τ end %" in result.infotext or "NR tau" in result.infotext
    grid = result.frames[0]
    assert grid.shape[1] > grid.shape[0], f"expected a one-row grid of two cells, got {grid.shape}"


def test_xyz_bad_value_is_refused_before_the_grid(webui: WebUI):
    payload = request({"enabled": True}, sampler="DDIM", steps=2)
    result = webui.img2img(xyz_request(webui, payload, "[Noise Rectification] τ end %", "50, 150"))
    assert_error_names(result, "τ end %", "150")


# 6. videos longer than AnimateDiff's context keep the promise
def test_longer_than_context_still_gives_identical_frames(webui: WebUI):
    result = webui.img2img(request(STILL, sampler="Euler", frames=12, context=8))
    assert len(result.frames) >= 12, len(result.frames)
    assert_still(result)


def test_reference_frame_last_is_the_picture_end(webui: WebUI):
    """With the paper's ω and τ = [0, 100 %], the last frame is the picture, the first is not."""
    ref_last = webui.img2img(
        request({"enabled": True, "tau": [0, 1], "reference_frame": -1}, sampler="DDIM")
    )
    still = webui.img2img(request(STILL, sampler="DDIM"))
    assert ref_last.status == 200 and still.status == 200
    import numpy as np

    last_gap = np.abs(ref_last.frames[-1].astype(int) - still.frames[0]).max()
    first_gap = np.abs(ref_last.frames[0].astype(int) - still.frames[0]).max()
    assert last_gap <= 2 < first_gap, (last_gap, first_gap)


def test_title_is_listed(webui: WebUI):
    assert TITLE.lower() in webui.get("/sdapi/v1/scripts")["img2img"]
