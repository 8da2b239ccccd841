"""Start on one picture, end on another, in the real WebUI (docs/two-anchors.md).

The end picture comes from AnimateDiff's own ``last_frame`` (its API dict) or from this
extension's ``end_picture``. With τ over all steps, the still window puts every frame on
its blend of the two pictures, so its first and last frames are the two pictures as the
VAE gives them back; ω ``free`` must give exactly those two frames while the middle moves.
Samplers: Euler, DDIM (which AnimateDiff gives its own ᾱ table and which lands short of
clean) and Euler a (fresh noise every step: per-step pivot).
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
    request,
    xyz_request,
)

WHOLE = [0.0, 1.0]


def end_png(size: int = 64) -> str:
    """A second picture, unlike the init image: diagonal stripes on blue."""
    y, x = np.mgrid[0:size, 0:size]
    stripes = (((x + y) // 8) % 2 * 180 + 40).astype(np.uint8)
    rgb = np.stack([stripes, stripes // 2, np.full_like(stripes, 200)], axis=-1)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def run(webui: WebUI, omega: str, source: str, sampler: str, **rect):
    settings = {"enabled": True, "omega": omega, "tau": WHOLE, **rect}
    animatediff = {}
    if source == "animatediff":
        animatediff["last_frame"] = end_png()
    elif source == "ours":
        settings["end_picture"] = end_png()
    return webui.img2img(request(settings, sampler=sampler, animatediff=animatediff))


def difference(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


@pytest.mark.parametrize("sampler", ["Euler", "DDIM", "Euler a"])
@pytest.mark.parametrize("source", ["animatediff", "ours"])
def test_both_ends_are_exact_and_the_middle_moves(webui: WebUI, source: str, sampler: str):
    still = run(webui, "still", source, sampler)
    free = run(webui, "free", source, sampler)
    one = run(webui, "still", "none", sampler)
    for result in (still, free, one):
        assert result.status == 200, result.message
    assert "NR end picture" in still.infotext and "NR end anchor: True" in still.infotext
    # still: the video goes from the picture to the end picture
    assert difference(still.frames[0], one.frames[0]) <= 2  # the same first picture
    assert difference(still.frames[-1], one.frames[-1]) > 16  # a different last one
    # free: both ends exactly those of the still window, the middle frames elsewhere
    assert difference(free.frames[0], still.frames[0]) <= 2
    assert difference(free.frames[-1], still.frames[-1]) <= 2
    assert (
        max(difference(f, s) for f, s in zip(free.frames[1:-1], still.frames[1:-1], strict=True))
        > 2
    )


def test_end_anchor_off_refuses_animatediffs_last_frame(webui: WebUI):
    result = run(webui, "still", "animatediff", "Euler", end_anchor=False)
    assert_error_names(result, "end_anchor", "last frame")


def test_two_end_pictures_are_refused(webui: WebUI):
    settings = {"enabled": True, "omega": "still", "tau": WHOLE, "end_picture": end_png()}
    result = webui.img2img(request(settings, animatediff={"last_frame": end_png()}))
    assert_error_names(result, "end picture", "not both")


def test_xyz_end_anchor_axis(webui: WebUI):
    """True and False cells: only the True one uses the end picture (the grid shows each
    cell's first frame, the same picture in both, so the cells' infotexts say it)."""
    settings = {"enabled": True, "omega": "still", "tau": WHOLE, "end_picture": end_png()}
    payload = request(settings, sampler="DDIM", steps=4)
    result = webui.img2img(
        xyz_request(webui, payload, "[Noise Rectification] End on the end picture", "True, False")
    )
    assert result.status == 200, result.message
    cells = result.info["infotexts"][1:]
    assert "NR end anchor: True" in cells[0] and "NR end picture" in cells[0]
    assert "NR end anchor: False" in cells[1] and "NR end picture" not in cells[1]
    assert "repeated over the frames" in cells[1]
