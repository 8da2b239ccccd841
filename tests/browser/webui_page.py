"""Small Playwright helpers for the WebUI's img2img page (Gradio 3.41, WebUI v1.10.1)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "live"))
import webui_client

#: The same init picture as the live suite's.
init_png = webui_client.picture_png

PREFIX = "script_img2img_noise_rectification_"
TITLE = "Noise Rectification"
MOTION_MODULE = "mm_sd15_v2.safetensors"
CONTROLS = (
    "enabled",
    "omega_preset",
    "omega_custom",
    "tau_start",
    "tau_end",
    "reference_choice",
    "reference_frame",
    "end_anchor",
    "end_picture",
)


def nr(page: Any, name: str) -> Any:
    """Our control by its WebUI elem_id (gr.HTML repeats the id on an inner div: take the block)."""
    return page.locator(f"#{PREFIX}{name}").first


def open_webui(context: Any, url: str) -> Any:
    page = context.new_page()
    page.goto(url + "/?__theme=light", wait_until="domcontentloaded", timeout=180_000)
    page.wait_for_selector("#tab_img2img", state="attached", timeout=180_000)
    # onUiLoaded has run once our hover hints are attached (javascript/noise_rectification.js).
    page.wait_for_function(
        f"() => {{ const e = document.getElementById('{PREFIX}enabled'); return e && e.title; }}",
        timeout=120_000,
    )
    return page


def switch_tab(page: Any, label: str) -> None:
    page.locator(
        "#tabs > .tab-nav > button", has_text=re.compile(rf"^\s*{re.escape(label)}\s*$")
    ).click()


def open_img2img(context: Any, url: str) -> Any:
    page = open_webui(context, url)
    switch_tab(page, "img2img")
    nr(page, "enabled").wait_for(state="visible")
    return page


def open_accordion(page: Any, accordion: Any) -> None:
    """Open a (closed) Gradio accordion by clicking its header, as a user does.

    Opening the WebUI's InputAccordion also ticks its checkbox (modules/ui_components.py)."""
    header = accordion.locator(":scope > .label-wrap")
    if "open" not in (header.get_attribute("class") or "").split():
        header.click()
    accordion.locator(":scope > .label-wrap.open").wait_for(state="attached")


def set_number(locator: Any, value: float | int) -> None:
    """Type into a Gradio number box (slider or gr.Number) and leave it, as a user does."""
    box = locator.locator("input[type=number]").first
    box.fill(str(value))
    box.press("Tab")


def preview_html(page: Any) -> str:
    return nr(page, "preview").inner_html()


def wait_preview_change(page: Any, before: str, timeout: float = 30_000) -> None:
    page.wait_for_function(
        "([id, before]) => document.getElementById(id).innerHTML !== before",
        arg=[PREFIX + "preview", before],
        timeout=timeout,
    )


def controls_state(page: Any) -> dict[str, Any]:
    """What the user sees in each of our controls."""
    return page.evaluate(
        """(p) => {
            const q = (s) => document.querySelector(s);
            const checked = (id) => { const e = q('#' + p + id + ' input:checked'); return e ? e.value : null; };
            return {
                enabled: q('#' + p + 'enabled-visible-checkbox').checked,
                enabled_hidden: q('#' + p + 'enabled-checkbox input').checked,
                omega_preset: checked('omega_preset'),
                omega_custom: q('#' + p + 'omega_custom input, #' + p + 'omega_custom textarea').value,
                tau_start: Number(q('#' + p + 'tau_start input[type=number]').value),
                tau_end: Number(q('#' + p + 'tau_end input[type=number]').value),
                reference_choice: checked('reference_choice'),
                reference_frame: Number(q('#' + p + 'reference_frame input').value),
                end_anchor: q('#' + p + 'end_anchor input[type=checkbox]').checked,
            };
        }""",
        PREFIX,
    )


def omega_numbers(text: str) -> list[float]:
    return [float(v) for v in re.split(r"[,\s\[\]]+", text.strip()) if v]
