"""A small HTTP client for a running WebUI with AnimateDiff, and the method's checkable promises.

Standard library + numpy + Pillow only, so the live suite runs from any Python that
can reach the server. The properties are plain functions other checks can reuse.
"""

from __future__ import annotations

import base64
import io
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

TITLE = "Noise Rectification"
MOTION_MODULE = "mm_sd15_v2.safetensors"


def picture_png(size: int = 64) -> bytes:
    """A smooth, structured picture (PNG bytes): gradients plus a disc."""
    y, x = np.mgrid[0:size, 0:size]
    r = (x * 255 // (size - 1)).astype(np.uint8)
    g = (y * 255 // (size - 1)).astype(np.uint8)
    disc = ((x - size * 0.6) ** 2 + (y - size * 0.4) ** 2) < (size * 0.2) ** 2
    b = np.where(disc, 230, 60).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.stack([r, g, b], axis=-1)).save(buffer, "PNG")
    return buffer.getvalue()


@dataclass
class Result:
    status: int
    frames: list[np.ndarray] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def infotext(self) -> str:
        texts = self.info.get("infotexts") or [""]
        return texts[0]

    @property
    def message(self) -> str:
        return json.dumps(self.error, ensure_ascii=False)


class WebUI:
    def __init__(self, url: str, timeout: float = 1200.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=60) as response:
            return json.loads(response.read())

    def post(self, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            body = error.read()
            try:
                return error.code, json.loads(body)
            except ValueError:
                return error.code, {"raw": body.decode(errors="replace")}

    def img2img(self, payload: dict[str, Any]) -> Result:
        start = time.time()
        status, body = self.post("/sdapi/v1/img2img", payload)
        seconds = time.time() - start
        if status != 200:
            return Result(status, error=body, seconds=seconds)
        frames = [
            np.asarray(Image.open(io.BytesIO(base64.b64decode(b))).convert("RGB"))
            for b in body["images"]
        ]
        info = (
            json.loads(body["info"]) if isinstance(body.get("info"), str) else body.get("info", {})
        )
        return Result(status, frames, info, seconds=seconds)


def request(
    rectification: Any = None,
    *,
    sampler: str = "Euler",
    steps: int = 6,
    frames: int = 8,
    context: int | None = None,
    seed: int = 1234,
    size: int = 64,
    animatediff: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An AnimateDiff img2img request at denoising strength 1 (the paper's noising stage).

    ``rectification``: None (our script not mentioned), a dict (the API dict form) or
    a list (positional form).
    """
    ad = {
        "enable": True,
        "model": MOTION_MODULE,
        "video_length": frames,
        "batch_size": context or frames,
        "fps": 8,
        "format": ["PNG"],
    }
    ad.update(animatediff or {})
    payload: dict[str, Any] = {
        "prompt": "a photo of a cat",
        "negative_prompt": "",
        "seed": seed,
        "steps": steps,
        "sampler_name": sampler,
        "cfg_scale": 7,
        "width": size,
        "height": size,
        "denoising_strength": 1.0,
        "init_images": [base64.b64encode(picture_png(size)).decode()],
        "alwayson_scripts": {"AnimateDiff": {"args": [ad]}},
    }
    if rectification is not None:
        args = [rectification] if isinstance(rectification, dict) else list(rectification)
        payload["alwayson_scripts"][TITLE] = {"args": args}
    payload.update(extra)
    return payload


XYZ_TITLE = "x/y/z plot"


def xyz_request(
    webui: WebUI, payload: dict[str, Any], axis_label: str, values: str
) -> dict[str, Any]:
    """``payload`` as an X/Y/Z plot over one axis (WebUI v1.10.1 scripts/xyz_grid.py:536 arg order)."""
    scripts = {s["name"]: s for s in webui.get("/sdapi/v1/script-info") if s["is_img2img"]}
    labels = scripts[XYZ_TITLE]["args"][0]["choices"]  # x_type is an index into these
    nothing = labels.index("Nothing")
    payload = dict(payload, script_name=XYZ_TITLE)
    # Axes with choices (Enable, ω) read the dropdown list, the others the text
    # (scripts/xyz_grid.py:618-630): give both.
    dropdown = [v.strip() for v in values.split(",")]
    payload["script_args"] = [
        *(labels.index(axis_label), values, dropdown),  # x: type, values, dropdown values
        *(nothing, "", []),  # y
        *(nothing, "", []),  # z
        True,  # draw legend
        *(False, False, False),  # include lone images, include sub grids, no fixed seeds
        *(False, False, False),  # vary seeds x, y, z
        0,  # margin size
        False,  # csv mode
    ]
    return payload


# --------------------------------------------------------------------- properties
def max_frame_difference(frames: list[np.ndarray]) -> int:
    """Largest 8-bit difference between any frame and the first."""
    first = frames[0].astype(np.int16)
    return int(max(np.abs(f.astype(np.int16) - first).max() for f in frames))


def assert_still(result: Result, tolerance: int = 2) -> None:
    """Property 1: every frame is the same picture (8-bit, within ``tolerance``)."""
    assert result.status == 200, result.message
    assert len(result.frames) >= 2, f"expected frames, got {len(result.frames)}"
    difference = max_frame_difference(result.frames)
    assert difference <= tolerance, f"frames differ by up to {difference}/255"


def assert_moving(result: Result, at_least: int = 8) -> None:
    """The contrast case: without rectification the frames really differ."""
    assert result.status == 200, result.message
    difference = max_frame_difference(result.frames)
    assert difference >= at_least, f"frames differ by only {difference}/255"


def assert_same_images(a: Result, b: Result) -> None:
    """Property 2/3/4: the same frames, bit for bit."""
    assert a.status == 200, a.message
    assert b.status == 200, b.message
    assert len(a.frames) == len(b.frames), (len(a.frames), len(b.frames))
    for i, (x, y) in enumerate(zip(a.frames, b.frames, strict=True)):
        difference = int(np.abs(x.astype(int) - y).max()) if x.shape == y.shape else 255
        assert difference == 0, f"frame {i} differs by up to {difference}/255"


def assert_error_names(result: Result, *fragments: str) -> None:
    """Property 3: a bad request fails with a message naming the field."""
    assert result.status >= 400, f"expected an error, got {result.status}"
    text = result.message
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in error {text}"
