"""The ComfyUI nodes: settings in, a patched MODEL clone and the LATENT to sample out.

Classic node definitions (``INPUT_TYPES``, ``RETURN_TYPES``, ``FUNCTION``), which every
ComfyUI of the last years loads (ComfyUI v0.12.1: nodes.py, comfy_execution/validation.py);
``VALIDATE_INPUTS`` refuses bad widget values when the prompt is queued, before anything
runs, and the node's function checks the same values again for inputs fed by links.
Labels, hints and allowed values come from the core's single settings table
(``lib_rectify.params.FIELDS``), as on the WebUI's surfaces. Nothing here imports ComfyUI:
the node only calls methods of the objects it is given.
"""

from __future__ import annotations

from typing import Any

import torch

from lib_rectify import (
    FIELDS_BY_NAME,
    OMEGA_PRESETS,
    RectifyError,
    RectifyParams,
    omega_weights,
    parse_omega_text,
    parse_percent,
    resolve_reference_frame,
)
from lib_rectify.anchors import DEFAULT_BLEND, end_anchored_clean
from lib_rectify.params import MAX_REFERENCE_FRAME

from .patch import NodeError, Rectification, patch_model

CATEGORY = "animatediff/noise rectification"
APPLY_TITLE = "Noise Rectification (image to video)"
PREVIEW_TITLE = "Noise Rectification ω preview"
MAX_FRAMES = 4096


def _hint(name: str, extra: str = "") -> str:
    spec = FIELDS_BY_NAME[name]
    return f"{spec.hint} Allowed: {spec.allowed}.{extra}"


def settings_inputs() -> dict[str, tuple]:
    """The settings widgets, shared by both nodes."""
    return {
        "frames": (
            "INT",
            {
                "default": 16,
                "min": 1,
                "max": MAX_FRAMES,
                "tooltip": "Frames of the video: the picture is repeated this many times. Use the "
                "motion module's length (16 for SD1.5 v2/v3, 8 for HotShot-XL) or more with "
                "AnimateDiff-Evolved context options.",
            },
        ),
        "omega": (
            "STRING",
            {
                "default": "paper",
                "tooltip": _hint("omega"),
            },
        ),
        "tau_start_percent": (
            "FLOAT",
            {
                "default": 0.0,
                "min": 0.0,
                "max": 100.0,
                "step": 1.0,
                "tooltip": "Start of the window τ, in percent of the steps this sampling "
                "runs. " + _hint("tau"),
            },
        ),
        "tau_end_percent": (
            "FLOAT",
            {
                "default": 60.0,
                "min": 0.0,
                "max": 100.0,
                "step": 1.0,
                "tooltip": "End of the window τ, in percent of the steps this sampling runs "
                "(the paper: 60). 100 makes the reference frame exact.",
            },
        ),
        "reference_frame": (
            "INT",
            {
                "default": 0,
                "min": -MAX_REFERENCE_FRAME,
                "max": MAX_REFERENCE_FRAME - 1,
                "tooltip": _hint("reference_frame"),
            },
        ),
    }


def read_settings(
    *,
    frames: Any,
    omega: Any,
    tau_start_percent: Any,
    tau_end_percent: Any,
    reference_frame: Any,
    enabled: Any = True,
    end_picture: bool = False,
) -> RectifyParams:
    """The widgets' values as settings, or a :class:`RectifyError` naming the field."""
    if isinstance(frames, bool) or not isinstance(frames, int) or not 1 <= frames <= MAX_FRAMES:
        raise RectifyError("frames", frames, f"a whole number from 1 to {MAX_FRAMES}")
    start = parse_percent("tau_start_percent", tau_start_percent)
    end = parse_percent("tau_end_percent", tau_end_percent)
    if start > end:
        raise RectifyError(
            "tau_start_percent",
            tau_start_percent,
            f"at most tau_end_percent ({tau_end_percent}): the window starts before it ends",
        )
    params = RectifyParams(
        enabled=bool(enabled),
        omega=parse_omega_text(omega, field_name="omega"),
        tau=(start, end),
        reference_frame=reference_frame,
    )
    reference = resolve_reference_frame(params.reference_frame, frames)
    if end_picture and (frames < 2 or reference not in (0, frames - 1)):
        raise RectifyError(
            "reference_frame",
            reference_frame,
            "0 or -1 with an end picture: the end picture goes to the other end of the video",
        )
    return params


def _latent(value: Any, name: str) -> torch.Tensor:
    if not isinstance(value, dict) or not isinstance(value.get("samples"), torch.Tensor):
        raise RectifyError(name, type(value).__name__, "a LATENT (from VAE Encode)")
    samples = value["samples"]
    if samples.ndim != 4 or samples.shape[0] != 1:
        raise RectifyError(
            f"{name} batch",
            tuple(samples.shape),
            "one picture: a LATENT of batch 1 [1, C, h, w] (VAE Encode of one image)",
        )
    if not bool(torch.isfinite(samples).all()):
        raise RectifyError(name, "contains NaN or inf", "finite values (check the VAE)")
    return samples


def _node_name(unique_id: Any) -> str:
    return f"{APPLY_TITLE} (node {unique_id})" if unique_id is not None else APPLY_TITLE


class NoiseRectification:
    """Animate one picture with AnimateDiff and keep it: the paper's noise rectification."""

    DESCRIPTION = (
        "Image to video that keeps the picture (Li et al., tuning-free noise rectification). "
        "Put it after the AnimateDiff-Evolved loader, feed the picture's LATENT (VAE Encode), "
        "and sample its LATENT output with denoise 1.0: during the window τ the predicted "
        "noise of every frame is pulled back toward the noise the sampler added, weighted "
        "per frame by ω; the reference frame becomes exactly the picture. Optional end "
        "picture: the video also ends on it."
    )
    CATEGORY = CATEGORY
    FUNCTION = "apply"
    RETURN_TYPES = ("MODEL", "LATENT")
    RETURN_NAMES = ("model", "latent")
    OUTPUT_TOOLTIPS = (
        "A clone of the MODEL that rectifies every sampling of the LATENT below (the input "
        "MODEL is not changed).",
        "The picture repeated over the frames (blended toward the end picture when one is "
        "connected): sample from it at denoise 1.0.",
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The model with AnimateDiff applied."}),
                "picture": (
                    "LATENT",
                    {
                        "tooltip": "The picture to animate: VAE Encode of one image, at the "
                        "video's size."
                    },
                ),
                **settings_inputs(),
                "enabled": (
                    "BOOLEAN",
                    {
                        "default": True,
                        "tooltip": "Off: the MODEL passes through unchanged (the LATENT is "
                        "still the repeated picture).",
                    },
                ),
            },
            "optional": {
                "end_picture": (
                    "LATENT",
                    {
                        "tooltip": _hint("end_anchor").replace(
                            "When the host has an end picture, hold", "Hold"
                        )
                        + " Same size as the picture; the reference frame must be 0 or -1.",
                    },
                ),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    @classmethod
    def VALIDATE_INPUTS(
        cls,
        frames: Any = None,
        omega: Any = None,
        tau_start_percent: Any = None,
        tau_end_percent: Any = None,
        reference_frame: Any = None,
    ) -> bool | str:
        """The settings widgets, checked when the prompt is queued (comfy_execution: an
        error string fails the prompt with HTTP 400 and marks the node). ComfyUI passes only
        the inputs named here, and None for one fed by a link, checked when the node runs."""
        values = {
            "frames": frames,
            "omega": omega,
            "tau_start_percent": tau_start_percent,
            "tau_end_percent": tau_end_percent,
            "reference_frame": reference_frame,
        }
        given = {k: v for k, v in values.items() if v is not None}
        try:
            if len(given) == len(values):
                read_settings(**given)
            else:
                if "omega" in given:
                    parse_omega_text(given["omega"], field_name="omega")
                for name in ("tau_start_percent", "tau_end_percent"):
                    if name in given:
                        parse_percent(name, given[name])
        except RectifyError as error:
            return str(error)
        return True

    def apply(
        self,
        model: Any,
        picture: Any,
        frames: int,
        omega: str,
        tau_start_percent: float,
        tau_end_percent: float,
        reference_frame: int,
        enabled: bool = True,
        end_picture: Any = None,
        unique_id: Any = None,
    ) -> tuple[Any, dict]:
        node = _node_name(unique_id)
        try:
            params = read_settings(
                frames=frames,
                omega=omega,
                tau_start_percent=tau_start_percent,
                tau_end_percent=tau_end_percent,
                reference_frame=reference_frame,
                enabled=enabled,
                end_picture=end_picture is not None,
            )
            latent = _latent(picture, "picture")
            anchors = None
            if end_picture is None:
                clean = latent.to(torch.float32).expand(frames, *latent.shape[1:]).clone()
            else:
                end = _latent(end_picture, "end_picture")
                rows, anchors = end_anchored_clean(
                    latent.to(torch.float32),
                    end.to(torch.float32),
                    frames,
                    params.reference_frame,
                    DEFAULT_BLEND,
                )
                clean = rows[0]
        except RectifyError as error:
            raise NodeError(f"{node}: {str(error).removeprefix('Noise Rectification: ')}") from None
        clean = clean.to(latent.dtype)
        out_latent = {"samples": clean}
        if not params.active:
            return (model, out_latent)
        rectification = Rectification(params, clean, anchors=anchors, node=node)
        return (patch_model(model, rectification), out_latent)


class NoiseRectificationPreview:
    """ω per frame as a picture, so the trade-off is seen rather than read."""

    DESCRIPTION = (
        "Draws ω for each frame: low bars stay close to the picture, high bars move more. "
        "The reference frame (and the end frame with an end picture) is marked: it is "
        "exactly the picture."
    )
    CATEGORY = CATEGORY
    FUNCTION = "preview"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("omega_curve",)
    OUTPUT_TOOLTIPS = ("ω per frame as an image; connect it to Preview Image.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                **settings_inputs(),
                "end_picture": (
                    "BOOLEAN",
                    {"default": False, "tooltip": "Draw it as with an end picture (two anchors)."},
                ),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(
        cls,
        frames: Any = None,
        omega: Any = None,
        tau_start_percent: Any = None,
        tau_end_percent: Any = None,
        reference_frame: Any = None,
    ) -> bool | str:
        return NoiseRectification.VALIDATE_INPUTS(
            frames, omega, tau_start_percent, tau_end_percent, reference_frame
        )

    def preview(
        self,
        frames: int,
        omega: str,
        tau_start_percent: float,
        tau_end_percent: float,
        reference_frame: int,
        end_picture: bool = False,
    ) -> tuple[torch.Tensor]:
        try:
            params = read_settings(
                frames=frames,
                omega=omega,
                tau_start_percent=tau_start_percent,
                tau_end_percent=tau_end_percent,
                reference_frame=reference_frame,
                end_picture=end_picture,
            )
        except RectifyError as error:
            raise NodeError(
                f"{PREVIEW_TITLE}: {str(error).removeprefix('Noise Rectification: ')}"
            ) from None
        reference = resolve_reference_frame(params.reference_frame, frames)
        anchors = (reference,)
        if end_picture:
            anchors = (reference, frames - 1 - reference)
        weights = omega_weights(params.omega, frames, params.reference_frame, anchors)
        return (omega_picture(weights, anchors),)


def omega_picture(
    weights: torch.Tensor, anchors: tuple[int, ...], height: int = 128
) -> torch.Tensor:
    """Bars of ω on a dark background, anchors in orange: ``[1, H, W, 3]`` in [0, 1]."""
    frames = weights.numel()
    slot = max(4, min(32, 512 // max(frames, 1)))
    width = frames * slot
    image = torch.full((height, width, 3), 0.12)
    image[-1, :, :] = 0.6  # baseline
    for i, w in enumerate(weights.tolist()):
        bar = max(1, round(float(w) * (height - 8)))
        color = torch.tensor([1.0, 0.55, 0.1]) if i in anchors else torch.tensor([0.35, 0.65, 1.0])
        left, right = i * slot + 1, (i + 1) * slot - 1
        if i in anchors:
            bar = max(bar, 3)
        image[height - 1 - bar : height - 1, left:right, :] = color
    return image[None]


NODE_CLASS_MAPPINGS = {
    "NoiseRectification": NoiseRectification,
    "NoiseRectificationPreview": NoiseRectificationPreview,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "NoiseRectification": APPLY_TITLE,
    "NoiseRectificationPreview": PREVIEW_TITLE,
}
__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "OMEGA_PRESETS"]
