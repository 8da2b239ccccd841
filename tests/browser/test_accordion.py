"""The Noise Rectification accordion in a real browser against a real WebUI (opt-in).

Checks what a user meets in the img2img tab: the accordion beside AnimateDiff, every control
with its hover hint, the ω curve redrawn when the settings change, a clear message for an
invalid custom ω before Generate, a generation started from the page (frames + our infotext),
and PNG Info → "Send to img2img" restoring every control. Writes the README's pictures
(docs/images/accordion.png, docs/images/infotext.png) on the way.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from webui_page import (
    CONTROLS,
    MOTION_MODULE,
    PREFIX,
    TITLE,
    controls_state,
    init_png,
    nr,
    omega_numbers,
    open_accordion,
    open_img2img,
    open_webui,
    preview_html,
    set_number,
    switch_tab,
    wait_preview_change,
)

pytestmark = pytest.mark.browser
GENERATION_TIMEOUT_MS = int(float(os.environ.get("NR_BROWSER_GENERATION_TIMEOUT", "1200")) * 1000)
LABELS = {
    "enabled": TITLE,
    "omega_preset": "ω (per-frame weight)",
    "omega_custom": "Custom ω list",
    "tau_start": "Window τ start (% of steps)",
    "tau_end": "Window τ end (% of steps)",
    "reference_choice": "Reference frame",
    "reference_frame": "Reference frame index",
    "end_anchor": "End on the end picture",
    "end_picture": "End picture (optional)",
}


# ----------------------------------------------------------------------------- helpers


def shot(locator: Any, path: Path) -> Image.Image:
    locator.scroll_into_view_if_needed()
    data = locator.screenshot(path=str(path), animations="disabled")
    return Image.open(io.BytesIO(data)).convert("RGB")


def differing_pixels(a: Image.Image, b: Image.Image) -> int:
    if a.size != b.size:
        return max(a.size[0] * a.size[1], b.size[0] * b.size[1])
    return int(np.any(np.asarray(a) != np.asarray(b), axis=-1).sum())


def hints_block(page: Any) -> dict[str, str]:
    return json.loads(page.locator(f"#{PREFIX}hints script.nr-hints").first.text_content())


def label_of(page: Any, name: str) -> Any:
    if name == "enabled":
        return nr(page, "enabled").locator(":scope > .label-wrap > span").first
    if name == "end_anchor":  # a checkbox: its label is the text beside the box
        return nr(page, name).locator("label span").first
    if name == "end_picture":  # an image: its label sits on the frame
        return nr(page, name).locator("[data-testid=block-label]").first
    return nr(page, name).locator("[data-testid=block-info]").first


def hovered_hint(page: Any, target: Any) -> str:
    """The tooltip the browser shows: the `title` of the innermost hovered element or its nearest ancestor."""
    target.hover()
    return page.evaluate(
        """() => { const h = document.querySelectorAll(':hover'); const e = h[h.length - 1];
                   const t = e && e.closest('[title]'); return t ? t.title : ''; }"""
    )


def redraw_check(page: Any, artifacts: Path, name: str, change) -> int:
    preview = nr(page, "preview")
    before_html = preview_html(page)
    before = shot(preview, artifacts / f"{name}-before.png")
    change()
    wait_preview_change(page, before_html)
    page.wait_for_timeout(300)  # let the browser paint the new SVG
    after = shot(preview, artifacts / f"{name}-after.png")
    return differing_pixels(before, after)


# ----------------------------------------------------------------------------- the panel


@pytest.fixture(scope="module")
def page(browser_context, ui_url):
    page = open_img2img(browser_context, ui_url)
    yield page
    page.close()


@pytest.fixture()
def artifacts(tmp_path: Path) -> Path:
    return tmp_path


def test_accordion_sits_next_to_animatediff(page):
    headers = page.evaluate(
        """() => Array.from(document.querySelectorAll('#img2img_script_container .gradio-accordion'))
                 .filter(a => !a.parentElement.closest('.gradio-accordion'))
                 .map(a => a.querySelector(':scope > .label-wrap').textContent.replace('▼', '').trim())"""
    )
    assert TITLE in headers and "AnimateDiff" in headers, headers
    assert abs(headers.index(TITLE) - headers.index("AnimateDiff")) == 1, headers
    assert nr(page, "enabled").is_visible()
    assert controls_state(page)["enabled"] is False  # off until the user opens/ticks it


def test_every_control_is_there_with_its_hint(page, screenshot_dir):
    accordion = nr(page, "enabled")
    open_accordion(page, accordion)
    hints = hints_block(page)
    assert set(hints) == {PREFIX + name for name in CONTROLS}
    for name in CONTROLS:
        control = nr(page, name)
        assert control.is_visible(), name
        assert label_of(page, name).inner_text().strip() == LABELS[name]
        hint = hints[PREFIX + name]
        assert len(hint) > 20, (name, hint)
        assert control.get_attribute("title") == hint, (
            name
        )  # set by javascript/noise_rectification.js
    assert [i.get_attribute("value") for i in nr(page, "omega_preset").locator("input").all()] == [
        "paper",
        "still",
        "free",
        "custom",
    ]
    assert [
        i.get_attribute("value") for i in nr(page, "reference_choice").locator("input").all()
    ] == ["first", "last", "index"]
    assert nr(page, "preview").locator("svg.nr-curve rect.nr-bar").count() == 16
    assert "16 frames" in nr(page, "preview").inner_text()
    # The README's picture of the panel: the open accordion with the default (paper) curve.
    shot(accordion, screenshot_dir / "accordion.png")


def test_hovering_a_control_label_shows_its_own_hint(page):
    open_accordion(page, nr(page, "enabled"))
    hints = hints_block(page)
    wrong = {}
    for name in CONTROLS:
        # the image's label lies under its drop zone, which takes the pointer: hover that
        target = nr(page, name) if name == "end_picture" else label_of(page, name)
        shown = hovered_hint(page, target)
        if shown != hints[PREFIX + name]:
            wrong[name] = shown[:60]
    assert not wrong, wrong


def test_hovering_the_accordion_header_shows_its_hint(page):
    assert hovered_hint(page, label_of(page, "enabled")) == hints_block(page)[PREFIX + "enabled"]


def test_preset_change_redraws_the_curve(page, artifacts):
    open_accordion(page, nr(page, "enabled"))
    changed = redraw_check(
        page,
        artifacts,
        "preset",
        lambda: nr(page, "omega_preset").locator("label", has_text="still").click(),
    )
    assert changed > 50, changed
    page.wait_for_timeout(200)
    assert nr(page, "preview").locator("svg.nr-curve").count() == 1
    # back to the default; the picture is redrawn again
    changed = redraw_check(
        page,
        artifacts,
        "preset-back",
        lambda: nr(page, "omega_preset").locator("label", has_text="paper").click(),
    )
    assert changed > 50, changed


def test_custom_omega_redraws_the_curve_and_selects_custom(page, artifacts):
    open_accordion(page, nr(page, "enabled"))
    box = nr(page, "omega_custom").locator("input")
    changed = redraw_check(page, artifacts, "custom", lambda: box.fill("1, 0.2"))
    assert changed > 50, changed
    page.wait_for_function(
        f"() => document.querySelector('#{PREFIX}omega_preset input:checked').value === 'custom'"
    )
    changed = redraw_check(page, artifacts, "custom-2", lambda: box.fill("0.3"))
    assert changed > 50, changed


def test_an_end_picture_marks_both_ends_in_the_curve(page, artifacts):
    """Two anchors drawn (docs/two-anchors.md): the first and the last bar, and the caption."""
    open_accordion(page, nr(page, "enabled"))
    nr(page, "omega_preset").locator("label", has_text="paper").click()
    nr(page, "reference_choice").locator("label", has_text="first").click()
    assert nr(page, "preview").locator("rect.nr-ref").count() == 1
    changed = redraw_check(
        page,
        artifacts,
        "end-picture",
        lambda: (
            nr(page, "end_picture")
            .locator("input[type=file]")
            .set_input_files(
                files=[{"name": "end.png", "mimeType": "image/png", "buffer": init_png(64)}]
            )
        ),
    )
    assert changed > 50, changed
    bars = nr(page, "preview").locator("svg.nr-curve rect.nr-bar")
    marked = [
        i for i in range(bars.count()) if "nr-ref" in (bars.nth(i).get_attribute("class") or "")
    ]
    assert marked == [0, bars.count() - 1], marked
    assert "ends on the end picture" in nr(page, "preview").inner_text()
    # unticking the option goes back to one anchor
    nr(page, "end_anchor").locator("input[type=checkbox]").uncheck()
    page.wait_for_function(
        f"() => document.querySelectorAll('#{PREFIX}preview rect.nr-ref').length === 1"
    )
    nr(page, "end_anchor").locator("input[type=checkbox]").check()
    page.wait_for_function(
        f"() => document.querySelectorAll('#{PREFIX}preview rect.nr-ref').length === 2"
    )
    nr(page, "end_picture").locator(
        "button[aria-label='Clear'], button[title='Clear']"
    ).first.click()
    page.wait_for_function(
        f"() => document.querySelectorAll('#{PREFIX}preview rect.nr-ref').length === 1"
    )


def test_video_length_redraws_the_curve(page, artifacts):
    open_accordion(page, nr(page, "enabled"))
    open_accordion(
        page,
        page.locator("#img2img_script_container .gradio-accordion", has_text="AnimateDiff").first,
    )
    length = page.locator("#img2img-ad-video-length")
    changed = redraw_check(page, artifacts, "video-length", lambda: set_number(length, 24))
    assert changed > 50, changed
    assert nr(page, "preview").locator("svg.nr-curve rect.nr-bar").count() == 24
    assert "24 frames" in nr(page, "preview").inner_text()
    set_number(length, 16)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1, 2", r"\[0, 1\]|between 0 and 1|0 and 1"), ("1, abc", r"abc|number")],
    ids=["out-of-range", "not-a-number"],
)
def test_invalid_custom_omega_shows_a_clear_message_before_generate(page, text, expected):
    open_accordion(page, nr(page, "enabled"))
    box = nr(page, "omega_custom").locator("input")
    box.fill(text)
    error = nr(page, "preview").locator(".nr-error")
    error.wait_for(state="visible", timeout=30_000)
    message = error.inner_text()
    assert error.get_attribute("role") == "alert"
    assert "ω" in message or "omega" in message.lower(), message
    assert re.search(expected, message), message
    assert nr(page, "preview").locator("svg.nr-curve").count() == 0
    # a valid list brings the curve back
    box.fill("1, 0.5")
    nr(page, "preview").locator("svg.nr-curve").wait_for(state="visible", timeout=30_000)


# ----------------------------------------------------------------------------- generation from the page


@pytest.fixture(scope="module")
def generation(browser_context, ui_url, tmp_path_factory):
    """One AnimateDiff img2img generation started from the page with rectification on."""
    page = open_img2img(browser_context, ui_url)
    out = tmp_path_factory.mktemp("generation")
    page.locator("#img2img_prompt textarea").fill("a photo of a cat")
    page.locator("#img2img_image input[type=file]").set_input_files(
        files=[{"name": "init.png", "mimeType": "image/png", "buffer": init_png(64)}]
    )
    page.locator("#img2img_image img").first.wait_for(state="visible")
    for elem, value in (
        ("img2img_width", 64),
        ("img2img_height", 64),
        ("img2img_steps", 6),
        ("img2img_denoising_strength", 1.0),
    ):
        set_number(page.locator(f"#{elem}"), value)
    page.locator("#img2img_seed input").fill("1234")
    page.locator("#img2img_seed input").press("Tab")

    # AnimateDiff: 8 frames, context 8, our test motion module, PNG frames only (shown in the gallery).
    open_accordion(
        page,
        page.locator("#img2img_script_container .gradio-accordion", has_text="AnimateDiff").first,
    )
    page.locator("#img2img-ad-enable input[type=checkbox]").check()
    set_number(page.locator("#img2img-ad-video-length"), 8)
    set_number(page.locator("#img2img-ad-batch-size"), 8)
    module = page.locator("#img2img-ad-motion-module input")
    if module.input_value() != MOTION_MODULE:
        module.click()
        page.locator("ul.options li", has_text=MOTION_MODULE).first.click()
    assert module.input_value() == MOTION_MODULE
    formats = page.locator("#img2img-ad-save-format")
    for fmt in ("GIF", "MP4", "WEBP", "WEBM", "TXT"):
        formats.locator("label", has_text=re.compile(rf"^\s*{fmt}\s*$")).locator("input").uncheck()
    formats.locator("label", has_text=re.compile(r"^\s*PNG\s*$")).locator("input").check()

    # Noise rectification: non-default everything, so that the restore below means something.
    open_accordion(page, nr(page, "enabled"))
    nr(page, "omega_custom").locator("input").fill("1, 0.4")
    set_number(nr(page, "tau_start"), 10)
    set_number(nr(page, "tau_end"), 80)
    nr(page, "reference_choice").locator("label", has_text="last").click()
    page.wait_for_function(
        f"() => document.querySelector('#{PREFIX}reference_frame input').value === '-1'"
    )
    nr(page, "end_anchor").locator("input[type=checkbox]").uncheck()
    page.wait_for_timeout(500)
    settings = controls_state(page)
    assert settings["enabled"] and settings["enabled_hidden"], settings
    assert (
        settings["omega_preset"] == "custom"
        and settings["tau_start"] == 10
        and settings["tau_end"] == 80
    )
    assert "8 frames" in nr(page, "preview").inner_text()

    started = time.time()
    page.locator("#img2img_generate").click()
    page.wait_for_function(
        "() => { const t = document.querySelector('#html_info_img2img'); return t && t.innerText.includes('Noise rectification'); }",
        timeout=GENERATION_TIMEOUT_MS,
        polling=1000,
    )
    seconds = time.time() - started
    sources = page.evaluate(
        """() => [...new Set(Array.from(document.querySelectorAll('#img2img_gallery .thumbnails img, #img2img_gallery .grid-wrap img'))
                  .map(i => i.getAttribute('src')))]"""
    )
    frames = []
    for i, src in enumerate(sources):
        body = page.request.get(
            src if src.startswith("http") else ui_url + "/" + src.lstrip("/")
        ).body()
        path = out / f"frame-{i:02}.png"
        path.write_bytes(body)
        frames.append(path)
    infotext_el = page.locator("#html_info_img2img").first
    result = {
        "page": page,
        "seconds": seconds,
        "settings": settings,
        "frames": frames,
        "infotext": infotext_el.inner_text(),
        "log": page.locator("#html_log_img2img").first.inner_text(),
    }
    print(f"\ngeneration from the page: {seconds:.1f} s, {len(frames)} frames")
    yield result
    page.close()


def test_generation_from_the_page_returns_frames(generation):
    # The gallery holds the WebUI's grid of the batch (when "return grid" is on) and the 8 frames.
    frames = [p for p in generation["frames"] if Image.open(p).size == (64, 64)]
    assert len(frames) == 8, (generation["frames"], generation["log"])
    assert len(generation["frames"]) - len(frames) <= 1  # at most the grid besides
    for path in frames:
        with Image.open(path) as image:
            assert "Noise rectification: True" in image.info.get("parameters", "")


def test_infotext_shows_our_settings(generation, screenshot_dir):
    text = generation["infotext"]
    assert "Noise rectification: True" in text, text
    omega = re.search(r'NR omega: (?:"([^"]*)"|([^,\n]*))', text)
    assert omega, text
    assert omega_numbers(re.sub(r"[\[\],]", " ", omega.group(1) or omega.group(2))) == [1.0, 0.4], (
        text
    )
    assert re.search(r'NR tau: "?\[0\.1, 0\.8\]"?', text), text
    assert re.search(r"NR reference frame: -1\b", text), text
    assert re.search(r"NR version: \S+", text), text
    assert "NR init:" in text, text
    assert "AnimateDiff" in text, text
    page = generation["page"]
    infotext = page.locator("#html_info_img2img").first
    # The README's picture of the result: the infotext as the WebUI shows it.
    shot(infotext, screenshot_dir / "infotext.png")


def test_png_info_send_to_img2img_restores_every_control(generation, browser_context, ui_url):
    page = open_webui(browser_context, ui_url)  # a fresh page: every control at its default
    try:
        switch_tab(page, "img2img")
        defaults = controls_state(page)
        assert defaults == {
            "enabled": False,
            "enabled_hidden": False,
            "omega_preset": "paper",
            "omega_custom": "",
            "tau_start": 0,
            "tau_end": 60,
            "reference_choice": "first",
            "reference_frame": 0,
            "end_anchor": True,
        }, defaults
        switch_tab(page, "PNG Info")
        page.locator("#pnginfo_image input[type=file]").set_input_files(
            str(next(p for p in generation["frames"] if Image.open(p).size == (64, 64)))
        )
        page.wait_for_function(
            "() => { const t = document.querySelector('#pnginfo_generation_info textarea'); return t && t.value.includes('NR omega'); }",
            timeout=60_000,
        )
        page.locator("#tab_pnginfo #img2img_tab").click()
        nr(page, "enabled").wait_for(state="visible")
        page.wait_for_function(
            f"() => document.querySelector('#{PREFIX}tau_end input[type=number]').value === '80'",
            timeout=60_000,
        )
        page.wait_for_timeout(1000)
        restored = controls_state(page)
        expected = generation["settings"]
        assert omega_numbers(restored.pop("omega_custom").replace(",", " ")) == omega_numbers(
            expected["omega_custom"].replace(",", " ")
        )
        expected = {k: v for k, v in expected.items() if k != "omega_custom"}
        assert restored == expected, restored
        assert expected["reference_frame"] == -1 and expected["reference_choice"] == "last"
        # the picture follows the restored settings (and AnimateDiff's restored 8 frames)
        preview = nr(page, "preview")
        assert preview.locator(".nr-error").count() == 0, preview.inner_text()
        page.wait_for_function(
            f"() => document.querySelector('#{PREFIX}preview').innerText.includes('10–80')",
            timeout=30_000,
        )
        assert "8 frames" in preview.inner_text(), preview.inner_text()
    finally:
        page.close()
